"""The console's only way to the cluster: GET requests, a short cache, and nothing else.

Everything goes through `Cluster.request("GET", ...)` (the operator's own client, so the console logs
in exactly as the operator does: a kubeconfig, KUBECONFIG, or a pod's service account). No method
here writes, and none reads Secrets: the console must be safe to leave running as a cluster admin.

The modelops kinds are kept by informers (`Informer`: list once, then watch), so a page never waits
for a list of them. Everything else (pods, events, logs, discovery) is cached for `ttl` seconds, so
many open pages (and the event stream of each) share one request instead of hammering the API
server; concurrent misses of the same path wait for one request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes
import kubernetes.watch

from modelops import GROUP, VERSION
from modelops.controllers.cluster import Cluster

SCRAPE_TIMEOUT = 1.5
WATCH_SECONDS = 240  # each watch request ends after this; the informer watches again from where it was
MAX_BACKOFF = 30.0
LOG_LINES = 120
KNOWN_PLURALS = ("trainingjobs", "modelversions", "inferenceservices", "tuningjobs")


class ReadError(Exception):
    """The API server refused or could not be reached; `status` is the HTTP code (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class _Entry:
    at: float
    value: Any


class Informer:
    """All objects of one modelops kind, in every namespace: listed once, then kept by a watch.

    What Kubernetes controllers call an informer. Pages read from it without waiting on the API
    server (200 TrainingJobs with full histories are megabytes; listing them on every page view
    would make each view as slow as the list). A thread runs list-then-watch; an expired watch
    (410 Gone) lists again; a failure backs off, doubling up to 30 s, and says so in `error`.
    """

    def __init__(self, cluster: Cluster, plural: str, namespace: str | None = None) -> None:
        self._cluster, self.plural, self.namespace = cluster, plural, namespace
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self.error: ReadError | None = None
        self.last_used = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"informer-{plural}", daemon=True)
        self._thread.start()

    def items(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.last_used = time.monotonic()
        with self._lock:
            return [o for (ns, _), o in self._items.items() if namespace is None or ns == namespace]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.last_used = time.monotonic()
        with self._lock:
            return self._items.get((namespace, name))

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def _run(self) -> None:
        delay = 1.0
        while not self.stopped.is_set():
            try:
                where = f"/namespaces/{self.namespace}" if self.namespace else ""
                path = f"/apis/{GROUP}/{VERSION}{where}/{self.plural}"
                listed = self._cluster.request("GET", path) or {}
                with self._lock:
                    self._items = {self._key(o): o for o in listed.get("items") or ()}
                self.error, delay = None, 1.0
                self.synced.set()
                self._watch(str((listed.get("metadata") or {}).get("resourceVersion") or ""))
            except kubernetes.client.ApiException as error:
                if error.status == 410:
                    continue  # the watch expired: list again
                self.error = ReadError(
                    int(error.status or 0), f"watch {self.plural}: {error.status} {error.reason}"
                )
            except Exception as error:  # a dropped connection, a login that failed: say it, back off
                self.error = ReadError(0, f"watch {self.plural}: {type(error).__name__}: {error}")
            self.synced.set()
            self.stopped.wait(delay)
            delay = min(MAX_BACKOFF, delay * 2)

    def _watch(self, resource_version: str) -> None:
        custom = kubernetes.client.CustomObjectsApi(self._cluster._api())
        while not self.stopped.is_set():
            scope: tuple[Any, ...] = (
                (custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, self.plural)
                if self.namespace
                else (custom.list_cluster_custom_object, GROUP, VERSION, self.plural)
            )
            stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                *scope,
                resource_version=resource_version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                deserialize=False,
            )
            for event in stream:
                obj = event.get("object") or {}
                resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
                kind = event.get("type")
                with self._lock:
                    if kind in ("ADDED", "MODIFIED"):
                        self._items[self._key(obj)] = obj
                    elif kind == "DELETED":
                        self._items.pop(self._key(obj), None)


class Reader:
    """Cached, read-only access to the API server, for async callers (calls run in threads)."""

    def __init__(self, kubeconfig: str | None, *, ttl: float = 1.5, namespace: str | None = None) -> None:
        self.namespace = namespace
        self._cluster = Cluster(kubeconfig)
        self._ttl = ttl
        self._cache: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._informers: dict[str, Informer] = {}

    def _get_sync(self, path: str, query: Mapping[str, str] | None) -> Any:
        try:
            return self._cluster.request("GET", path, query=query)
        except kubernetes.client.ApiException as error:
            raise ReadError(int(error.status or 0), f"GET {path}: {error.status} {error.reason}") from error
        except (OSError, ValueError, kopf.LoginError) as error:
            raise ReadError(0, f"GET {path}: {error}") from error

    async def get(
        self, path: str, query: Mapping[str, str] | None = None, *, ttl: float | None = None
    ) -> Any:
        """The decoded answer of GET `path` (at most `ttl` seconds old)."""
        if "/secrets" in path:
            raise ReadError(403, "the console never reads Secrets")
        key = path + "?" + urllib.parse.urlencode(sorted((query or {}).items()))
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() - entry.at < (self._ttl if ttl is None else ttl):
            return entry.value
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await asyncio.to_thread(self._get_sync, path, query)
        except ReadError as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._pending.pop(key, None)
        if len(self._cache) > 1000:  # pages of deleted objects: forget what nobody asked for lately
            cutoff = time.monotonic() - 60
            self._cache = {k: v for k, v in self._cache.items() if v.at > cutoff}
        self._cache[key] = _Entry(time.monotonic(), value)
        future.set_result(value)
        return value

    async def items(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return list(((await self.get(path, query)) or {}).get("items") or [])

    async def object(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(await self.get(path))
        except ReadError as error:
            if error.status == 404:
                return None
            raise

    async def served_plurals(self) -> list[str]:
        """The modelops resources this API server serves (a kind being added shows up by itself)."""
        try:
            listing = await self.get(f"/apis/{GROUP}/{VERSION}", ttl=30)
        except ReadError as error:
            if error.status == 404:
                return []
            raise
        served = [
            str(r["name"]) for r in (listing or {}).get("resources") or () if "/" not in str(r.get("name"))
        ]
        known = [p for p in KNOWN_PLURALS if p in served]
        return known + sorted(p for p in served if p not in KNOWN_PLURALS)

    async def _informer(self, plural: str) -> Informer | None:
        """The synced informer of a served kind (None: the kind is not served)."""
        if plural not in await self.served_plurals():
            return None
        informer = self._informers.get(plural)
        if informer is None:
            informer = self._informers[plural] = Informer(self._cluster, plural, self.namespace)
        if not informer.synced.is_set():
            await asyncio.to_thread(informer.synced.wait, 30)
        if informer.error is not None and not informer.items():
            raise informer.error
        return informer

    async def modelops(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        informer = await self._informer(plural)
        return [] if informer is None else informer.items(namespace)

    async def modelops_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        informer = await self._informer(plural)
        return None if informer is None else informer.get(namespace, name)

    def close(self) -> None:
        """Stop the informers (each ends when its current watch request does)."""
        for informer in self._informers.values():
            informer.stopped.set()

    def stale(self) -> str | None:
        """Why what the pages show may be old (a watch that failed), or None."""
        errors = [str(i.error) for i in self._informers.values() if i.error is not None]
        return "; ".join(errors) or None

    async def events(self, namespace: str, name: str, kind: str) -> list[dict[str, Any]]:
        query = {"fieldSelector": f"involvedObject.name={name}"}
        answer = await self.get(f"/api/v1/namespaces/{namespace}/events", query)
        return [
            e
            for e in (answer or {}).get("items") or ()
            if (e.get("involvedObject") or {}).get("kind") in (kind, None)
        ]

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return await self.items(f"/api/v1/namespaces/{namespace}/pods", label_selector=selector)

    async def log_tail(self, namespace: str, pod: str, container: str | None) -> str:
        """The last lines of a container's log ('' when there is none yet)."""
        query = {"tailLines": str(LOG_LINES)}
        if container:
            query["container"] = container
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        key = f"log:{path}?{urllib.parse.urlencode(sorted(query.items()))}"
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() - entry.at < self._ttl:
            return str(entry.value)
        try:
            text = await asyncio.to_thread(self._log_sync, path, query)
        except ReadError as error:
            if error.status in (400, 404):  # not started yet, or gone
                return ""
            raise
        self._cache[key] = _Entry(time.monotonic(), text)
        return text

    def _log_sync(self, path: str, query: Mapping[str, str]) -> str:
        try:
            api = self._cluster._api()
        except kopf.LoginError as error:
            raise ReadError(0, f"GET {path}: {error}") from error
        config = api.configuration
        url = config.host + path + "?" + urllib.parse.urlencode(dict(query))
        headers = {"Accept": "text/plain", **api.default_headers}
        token = (config.api_key or {}).get("authorization")
        if token:
            headers["Authorization"] = token
        try:
            response = api.call_api("GET", url, header_params=headers)
            response.read()
            if not 200 <= response.status <= 299:
                raise kubernetes.client.ApiException(http_resp=response)
            data: bytes = response.data or b""
        except kubernetes.client.ApiException as error:
            raise ReadError(int(error.status or 0), f"GET {path}: {error.status}") from error
        except (OSError, ValueError) as error:
            raise ReadError(0, f"GET {path}: {error}") from error
        return data.decode("utf-8", "replace")

    async def scrape(self, ip: str, port: int) -> str | None:
        """A pod's /metrics text, or None when it does not answer (the console reaches pod IPs directly)."""
        return await asyncio.to_thread(_scrape, ip, port)


def _scrape(ip: str, port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=SCRAPE_TIMEOUT) as response:
            return str(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None
