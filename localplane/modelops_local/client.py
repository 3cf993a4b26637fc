"""A small typed asyncio Kubernetes client shared by the local control plane's components.

The local components (scheduler, kubelets, controllers) must talk to the API server only over HTTP with
a kubeconfig, exactly like real components, and they are asyncio programs. The official `kubernetes`
package is synchronous and kopf's client is private, so this module gives them a ~one-file client on
aiohttp with the few verbs they need. The API is stable; other helpers depend on it:

    async with Client.from_kubeconfig(path) as api:
        pod = await api.get("v1", "pods", "default", "web-0")
        pods = await api.list("v1", "pods", "default", label_selector="app=web")   # a PodList dict
        await api.create("v1", "pods", "default", body)
        await api.update("apps/v1", "deployments", "default", "web", body)          # PUT, needs rv
        await api.patch("v1", "pods", "default", "web-0", {"metadata": {...}})      # merge patch
        await api.patch(..., ops, patch_type="json")                                # RFC 6902 list
        await api.patch(..., body, patch_type="apply", field_manager="me", force=True)
        await api.update_status(...); await api.patch_status(...)
        await api.create("v1", "pods", "ns", binding, name="web-0", subresource="binding")
        await api.delete("v1", "pods", "default", "web-0", grace_period_seconds=0)
        async for kind, obj in api.watch("v1", "pods", None):                       # all namespaces
            ...

Resources are addressed by (api_version, plural, namespace, name); `namespace=None` means a
cluster-scoped resource, or all namespaces for `list`/`watch`. Every non-2xx answer raises
`ApiError(status, reason, message, body)` where `body` is the decoded `Status` object when the server
sent one.

`watch` hides the reconnect logic every consumer would otherwise repeat: without a resourceVersion it
lists first and yields an ADDED event per existing object; it resumes from the last seen
resourceVersion after a dropped connection or a server-side timeout; on 410 Gone (history compacted)
it re-lists and yields the difference against what it had delivered (ADDED/MODIFIED/DELETED), so a
consumer's view never silently diverges; 5xx/429 answers are retried. `Informer` builds a local cache
with callbacks on top of it.

A client made with `from_kubeconfig` follows its file: when a request cannot connect and the file has
changed (a restarted API server on a new port or with a new certificate), it re-reads it and retries.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import aiohttp
import yaml

log = logging.getLogger(__name__)

Obj: TypeAlias = dict[str, Any]
T = TypeVar("T")
PatchType = Literal["merge", "json", "strategic", "apply"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx answer of the API server.

    `status` is the HTTP status, `reason` the Status reason (`NotFound`, `AlreadyExists`, `Conflict`,
    `Invalid`, `Gone`, ...), `message` the server's human message, `body` the decoded Status object
    (or `{}` when the server sent something else).
    """

    def __init__(self, status: int, reason: str, message: str, body: Obj | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body: Obj = body or {}


@dataclass(frozen=True)
class KubeConfig:
    """The parts of a kubeconfig context that a client needs."""

    server: str
    token: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    namespace: str = "default"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], context: str | None = None) -> KubeConfig:
        """Read a kubeconfig file; `context` defaults to its `current-context`."""
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        base = os.path.dirname(os.path.abspath(path))
        ctx_name = context or doc.get("current-context")
        if not ctx_name:
            raise ValueError(f"{path}: no context given and no current-context set; pass context=")
        ctx = _named(doc.get("contexts"), ctx_name, "contexts", path)
        cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "clusters", path)
        user = _named(doc.get("users"), ctx.get("user", ""), "users", path) if ctx.get("user") else {}
        server = cluster.get("server")
        if not server:
            raise ValueError(
                f"{path}: cluster {ctx.get('cluster')!r} has no server; set clusters[].cluster.server"
            )

        def data(inline_key: str, file_key: str, section: Mapping[str, Any]) -> bytes | None:
            if section.get(inline_key):
                return base64.b64decode(section[inline_key])
            if section.get(file_key):
                with open(os.path.join(base, section[file_key]), "rb") as fh:
                    return fh.read()
            return None

        token = user.get("token")
        if not token and user.get("tokenFile"):
            with open(os.path.join(base, user["tokenFile"]), encoding="utf-8") as fh:
                token = fh.read().strip()
        return cls(
            server=str(server).rstrip("/"),
            token=token,
            ca_data=data("certificate-authority-data", "certificate-authority", cluster),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
            client_cert_data=data("client-certificate-data", "client-certificate", user),
            client_key_data=data("client-key-data", "client-key", user),
            namespace=str(ctx.get("namespace") or "default"),
        )


def _named(entries: Any, name: str, section: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            inner = entry.get(section[:-1], {})  # "clusters" -> "cluster"
            return dict(inner or {})
    raise ValueError(f"{path}: no entry named {name!r} in {section}; fix the context or add the entry")


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a resource, e.g. `/apis/apps/v1/namespaces/ns/deployments/web/status`."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [base]
    if namespace is not None:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource is not None:
        if name is None:
            raise ValueError(f"subresource {subresource!r} needs a name; pass name=")
        parts.append(subresource)
    return "/".join(parts)


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object; namespace is "" for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Client:
    """An asyncio client for one API server. Use as an async context manager, or call `close()`."""

    def __init__(self, config: KubeConfig, *, request_timeout: float = 30.0) -> None:
        self.config = config
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = self._ssl_context(config)
        self._source: tuple[str, str | None, float | None] | None = None
        # Sessions replaced after a kubeconfig change may still carry a running watch; closed at close().
        self._stale_sessions: list[aiohttp.ClientSession] = []

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None) -> Client:
        """A client that also follows the file: a restarted API server may write a new address."""
        client = cls(KubeConfig.from_file(path, context))
        client._source = (os.fspath(path), context, _mtime(path))
        return client

    def reload_if_changed(self) -> bool:
        """Re-read the kubeconfig if it changed on disk; True when the connection settings changed."""
        if self._source is None:
            return False
        path, context, mtime = self._source
        current = _mtime(path)
        if current is None or current == mtime:
            return False
        try:
            config = KubeConfig.from_file(path, context)
        except (OSError, ValueError, yaml.YAMLError):
            return False  # caught mid-write; the next failure tries again
        self._source = (path, context, current)
        if config == self.config:
            return False
        log.info("kubeconfig %s changed; now talking to %s", path, config.server)
        self.config = config
        self._ssl = self._ssl_context(config)
        if self._session is not None:
            self._stale_sessions.append(self._session)
        self._session = None
        return True

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for stale in self._stale_sessions:
            await stale.close()
        self._stale_sessions.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _ssl_context(config: KubeConfig) -> ssl.SSLContext | bool:
        if not config.server.startswith("https"):
            return False
        if config.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif config.ca_data:
            ctx = ssl.create_default_context(cadata=config.ca_data.decode("ascii", errors="replace"))
        else:
            ctx = ssl.create_default_context()
        if config.client_cert_data and config.client_key_data:
            # ssl only loads a cert chain from files; they live only as long as the load call.
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = os.path.join(tmp, "cert"), os.path.join(tmp, "key")
                with open(cert, "wb") as c, open(key, "wb") as k:
                    c.write(config.client_cert_data)
                    k.write(config.client_key_data)
                ctx.load_cert_chain(cert, key)
        return ctx

    def _sess(self) -> aiohttp.ClientSession:
        # Created lazily so a Client can be built outside of a running event loop.
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "modelops-local"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """Send one request and return the decoded JSON answer; raise `ApiError` on non-2xx."""
        try:
            return await self._request_once(method, path, params=params, body=body, content_type=content_type)
        except aiohttp.ClientConnectionError:
            if not self.reload_if_changed():
                raise
        return await self._request_once(method, path, params=params, body=body, content_type=content_type)

    async def _request_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        content_type: str,
    ) -> Obj:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        async with self._sess().request(
            method,
            self.config.server + path,
            params=dict(params or {}),
            data=data,
            headers=headers,
            timeout=timeout,
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise _api_error(resp.status, raw)
            if not raw:
                return {}
            decoded = json.loads(raw)
            return decoded if isinstance(decoded, dict) else {"items": decoded}

    async def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Obj:
        return await self.request("GET", resource_path(api_version, plural, namespace, name))

    async def list(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> Obj:
        """The List object (`items`, `metadata.resourceVersion`), following `continue` pages."""
        params = _selectors(label_selector, field_selector)
        if limit:
            params["limit"] = str(limit)
        path = resource_path(api_version, plural, namespace)
        result = await self.request("GET", path, params=params)
        items: builtins.list[Obj] = builtins.list(result.get("items") or [])
        while (result.get("metadata") or {}).get("continue"):
            params["continue"] = result["metadata"]["continue"]
            result = await self.request("GET", path, params=params)
            items.extend(result.get("items") or [])
        kind = str(result.get("kind") or "")
        item_kind = kind[:-4] if kind.endswith("List") else ""
        for item in items:
            # Real servers omit kind/apiVersion on list items; consumers compare kinds, so fill them in.
            if item_kind:
                item.setdefault("kind", item_kind)
            item.setdefault("apiVersion", api_version)
        result["items"] = items
        return result

    async def create(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        body: Obj,
        *,
        name: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> Obj:
        """POST an object, or with `name` and `subresource` a subresource (`pods/binding`, `eviction`)."""
        path = resource_path(api_version, plural, namespace, name, subresource)
        return await self.request("POST", path, params=_manager(field_manager), body=body)

    async def update(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> Obj:
        """PUT the whole object; fails with 409 Conflict when metadata.resourceVersion is stale."""
        path = resource_path(api_version, plural, namespace, name, subresource)
        return await self.request("PUT", path, params=_manager(field_manager), body=body)

    async def update_status(
        self, api_version: str, plural: str, namespace: str | None, name: str, body: Obj
    ) -> Obj:
        return await self.update(api_version, plural, namespace, name, body, subresource="status")

    async def patch(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        """PATCH an object. `patch_type="apply"` is server-side apply and needs a `field_manager`."""
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs field_manager=; pass the name of your component")
        params = _manager(field_manager)
        if force:
            params["force"] = "true"
        path = resource_path(api_version, plural, namespace, name, subresource)
        return await self.request(
            "PATCH", path, params=params, body=patch, content_type=_PATCH_CONTENT_TYPES[patch_type]
        )

    async def patch_status(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        return await self.patch(
            api_version, plural, namespace, name, patch, patch_type=patch_type, subresource="status"
        )

    async def delete(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        uid: str | None = None,
    ) -> Obj:
        """DELETE an object; `uid` adds a precondition so a newer object of the same name survives."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        path = resource_path(api_version, plural, namespace, name)
        return await self.request("DELETE", path, body=options)

    async def watch(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        retry_delay: float = 1.0,
        known: Mapping[tuple[str, str], Obj] | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """Yield `(type, obj)` forever: ADDED/MODIFIED/DELETED, never BOOKMARK or ERROR.

        Without `resource_version` it lists first and yields ADDED per object. Dropped connections and
        server timeouts resume from the last resourceVersion; 410 Gone re-lists and yields the
        difference. Other errors (403, 404 of an unknown resource) are raised as `ApiError`. When you
        pass `resource_version` from your own list, pass what that list held as `known`
        ({object_key(obj): obj}) so that a 410 re-list also reports objects deleted in between.
        """
        path = resource_path(api_version, plural, namespace)
        # What this watch has delivered, so a re-list after 410 can yield a faithful difference.
        delivered: dict[tuple[str, str], Obj] = dict(known or {})
        rv = resource_version
        if rv is None:
            rv, events = await self._relist(
                api_version, plural, namespace, label_selector, field_selector, delivered
            )
            for event in events:
                yield event
        while True:
            params = _selectors(label_selector, field_selector)
            params.update(
                watch="true",
                resourceVersion=rv,
                allowWatchBookmarks="true",
                timeoutSeconds=str(timeout_seconds),
            )
            gone = False
            try:
                async for kind, obj in self._stream(path, params, timeout_seconds):
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            gone = True
                            break
                        raise ApiError(
                            int(obj.get("code") or 500),
                            str(obj.get("reason", "")),
                            str(obj.get("message", "")),
                            obj,
                        )
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    if kind == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    if kind == "DELETED":
                        delivered.pop(key, None)
                    else:
                        delivered[key] = obj
                    yield kind, obj
            except ApiError as e:
                if e.status == 410:
                    gone = True
                elif _retryable(e):
                    log.debug("watch %s: server answered %s; retrying", path, e)
                    await asyncio.sleep(retry_delay)
                else:
                    raise
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
                log.debug("watch %s dropped (%s); resuming from %s", path, e, rv)
                self.reload_if_changed()
                await asyncio.sleep(retry_delay)
            if gone:
                log.debug("watch %s: resourceVersion %s is gone; re-listing", path, rv)
                relisted: tuple[str, builtins.list[tuple[str, Obj]]] = await self.retrying(
                    f"re-list of {path}",
                    lambda: self._relist(
                        api_version, plural, namespace, label_selector, field_selector, delivered
                    ),
                    retry_delay,
                )
                rv, events = relisted
                for event in events:
                    yield event

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]], delay: float = 1.0) -> T:
        """`await call()` until it answers, for the requests a consumer cannot do without (a list).

        Lost connections (following a rewritten kubeconfig) and retryable answers (5xx, 429) are
        retried every `delay` seconds; any other `ApiError` (403, 404 of an unknown resource) is raised.
        """
        while True:
            try:
                return await call()
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
                log.warning("%s failed (%s); retrying", what, e)
                self.reload_if_changed()
            except ApiError as e:
                if not _retryable(e):
                    raise
                log.warning("%s failed (%s); retrying", what, e)
            await asyncio.sleep(delay)

    async def _relist(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        known: dict[tuple[str, str], Obj],
    ) -> tuple[str, builtins.list[tuple[str, Obj]]]:
        result = await self.list(
            api_version, plural, namespace, label_selector=label_selector, field_selector=field_selector
        )
        events: builtins.list[tuple[str, Obj]] = []
        seen: set[tuple[str, str]] = set()
        for item in result.get("items") or []:
            key = object_key(item)
            seen.add(key)
            old = known.get(key)
            if old is None:
                events.append(("ADDED", item))
            elif (old.get("metadata") or {}).get("resourceVersion") != (item.get("metadata") or {}).get(
                "resourceVersion"
            ):
                events.append(("MODIFIED", item))
            known[key] = item
        for key in [k for k in known if k not in seen]:
            events.append(("DELETED", known.pop(key)))
        return str((result.get("metadata") or {}).get("resourceVersion") or ""), events

    async def _stream(
        self, path: str, params: Mapping[str, str], timeout_seconds: int
    ) -> AsyncIterator[tuple[str, Obj]]:
        # No total timeout: a watch is long-lived. The read timeout only catches a dead server.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        async with self._sess().get(self.config.server + path, params=dict(params), timeout=timeout) as resp:
            if resp.status >= 300:
                raise _api_error(resp.status, await resp.read())
            buf = b""
            # iter_any rather than readline: readline rejects lines above 128 KiB, and objects can be
            # bigger than that (CRDs with large schemas).
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type", "")), dict(event.get("object") or {})
            if buf.strip():
                event = json.loads(buf)
                yield str(event.get("type", "")), dict(event.get("object") or {})


def _retryable(error: ApiError) -> bool:
    """Server-side trouble that passes (overload, restart), as opposed to a wrong request."""
    return error.status >= 500 or error.status == 429


def _mtime(path: str | os.PathLike[str]) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _manager(field_manager: str | None) -> dict[str, str]:
    return {"fieldManager": field_manager} if field_manager else {}


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError(status, str(body.get("reason") or ""), str(body.get("message") or ""), body)
    text = raw.decode("utf-8", errors="replace").strip()
    return ApiError(status, _REASONS.get(status, "Unknown"), text or f"HTTP {status}", None)


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


Handler: TypeAlias = Callable[[str, Obj, Obj | None], Awaitable[None] | None]


class Informer:
    """A list+watch cache of one resource with a callback per change.

    `handler(type, obj, old)` is called for each ADDED/MODIFIED/DELETED after the cache is updated
    (`old` is the previous object or None); it may be a coroutine function. A failing handler is logged
    and does not stop the informer. `synced` is set once the initial list has been delivered.
    """

    def __init__(
        self,
        client: Client,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        handler: Handler | None = None,
    ) -> None:
        self.client = client
        self.api_version = api_version
        self.plural = plural
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.handler = handler
        self.cache: dict[tuple[str, str], Obj] = {}
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self.cache.get((namespace or "", name))

    def items(self) -> list[Obj]:
        return list(self.cache.values())

    def start(self) -> asyncio.Task[None]:
        """Run in a background task; `await informer.synced.wait()` for the initial list."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.plural}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        # The initial list is delivered as a batch of ADDED events; `synced` is set after the last of
        # them, which we detect by listing ourselves and then watching from that resourceVersion.
        listed = await self.client.retrying(
            f"informer {self.plural}: initial list",
            lambda: self.client.list(
                self.api_version,
                self.plural,
                self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
            ),
        )
        for item in listed.get("items") or []:
            await self._deliver("ADDED", item)
        self.synced.set()
        rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        watch = self.client.watch(
            self.api_version,
            self.plural,
            self.namespace,
            resource_version=rv,
            known=dict(self.cache),
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        async for kind, obj in watch:
            await self._deliver(kind, obj)

    async def _deliver(self, kind: str, obj: Obj) -> None:
        key = object_key(obj)
        old = self.cache.get(key)
        if kind == "DELETED":
            self.cache.pop(key, None)
        else:
            if kind == "ADDED" and old is not None:
                kind = "MODIFIED"
            self.cache[key] = obj
        if self.handler is None:
            return
        try:
            result = self.handler(kind, obj, old)
            if result is not None:
                await result
        except Exception:
            log.exception("informer %s: handler failed on %s %s", self.plural, kind, key)
