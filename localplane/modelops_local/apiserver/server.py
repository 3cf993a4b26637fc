"""HTTP front of the API server: authentication, routing of Kubernetes REST paths, lists, watches."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import errors, logs, openapi, protobuf, selectors, streaming, tables
from .api import APPLY_PATCH, Api, Params, storage_key
from .errors import ApiError
from .gc import Collector
from .resources import Registry, ResourceDef
from .store import Store, Watcher, meta

log = logging.getLogger(__name__)

# Service accounts (admission, TokenRequest, token authentication) and the audit log live in their own
# modules; a broken checkout of either must not take the API server down, only those features.
try:
    from . import serviceaccounts as sa_hooks
except Exception:  # pragma: no cover - only when that module is broken
    log.warning("service accounts unavailable: only the kubeconfig token authenticates", exc_info=True)
    sa_hooks = None  # type: ignore[assignment]
try:
    from .audit import AuditLog
except Exception:  # pragma: no cover - only when that module is broken
    log.warning("audit log unavailable", exc_info=True)
    AuditLog = None  # type: ignore[assignment,misc]

KUBE_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-modelops-local",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
    "emulationMajor": "1",
    "emulationMinor": "33",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "32",
}
OPEN_PATHS = {"/healthz", "/readyz", "/livez", "/version"}
JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {}
    if warnings:
        # RFC 7234 warn-text is a quoted-string: quotes and backslashes inside are escaped.
        escaped = (w.replace("\\", "\\\\").replace('"', '\\"') for w in warnings)
        headers["Warning"] = ", ".join(f'299 - "{w}"' for w in escaped)
    return web.Response(body=dumps(obj), status=status, content_type=JSON, headers=headers)


def error_response(exc: ApiError) -> web.Response:
    return json_response(exc.status(), exc.code)


class Server:
    def __init__(
        self, data_dir: Path, token: str, history: int = 10000, bookmark_seconds: float = 60.0
    ) -> None:
        self.dir = data_dir
        self.token = token
        self.bookmark_seconds = bookmark_seconds
        self.store = Store(data_dir / "state.db", history)
        self.registry = Registry()
        self.api = Api(self.store, self.registry)
        self.collector = Collector(self.api)
        self.sa_key = sa_hooks.load_or_create_key(data_dir) if sa_hooks is not None else b""
        if sa_hooks is not None:
            self.api.pod_admission = self._admit_pod
        self.audit = AuditLog(data_dir / "audit.log") if AuditLog is not None else None
        self.openapi = openapi.OpenAPI(self.registry)
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.app.on_startup.append(self._start_background)
        self.app.on_shutdown.append(self._end_watches)
        self.app.on_cleanup.append(self._stop_background)
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()

    async def _start_background(self, app: web.Application) -> None:
        self._tasks.append(asyncio.create_task(self.collector.run()))

    async def _end_watches(self, app: web.Application) -> None:
        """Close open watches so shutdown does not wait for their timeouts; clients re-watch elsewhere."""
        for watchers in self.store.watchers.values():
            for w in watchers:
                w.queue.put_nowait(None)

    async def _stop_background(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.store.close()

    def _authenticate(self, request: web.Request) -> Any:
        """The caller's identity (the kubeconfig's admin, or a bound service-account token), or None."""
        auth = request.headers.get("Authorization", "")
        if sa_hooks is None:
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            ok = bool(given) and hmac.compare_digest(given.encode(), self.token.encode())
            return "admin" if ok else None
        identity = sa_hooks.authenticate(
            auth, admin_token=self.token, secret_key=self.sa_key, now=time.time()
        )
        if identity is not None and identity.service_account:
            account = self.store.get("/serviceaccounts", identity.namespace, identity.service_account)
            pod = (
                self.store.get("/pods", identity.namespace, identity.pod_name) if identity.pod_name else None
            )
            if not sa_hooks.still_bound(identity, account, pod, now=time.time()):
                return None
        return identity

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = None
        if request.path not in OPEN_PATHS:
            identity = self._authenticate(request)
            if identity is None:
                self._audit(request, None, 401)
                return error_response(errors.unauthorized())
            request["identity"] = identity
        response: web.StreamResponse | None = None
        try:
            response = await self._handle(request, handler)
            return response
        finally:
            # Also when the client went away mid-watch (the handler is cancelled then).
            started = request.get("audit_id")
            if identity is not None and (response is not None or started):
                code = response.status if response is not None else 200
                self._audit(request, identity, code, audit_id=started)

    def _audit(
        self,
        request: web.Request,
        identity: Any,
        code: int,
        stage: str = "ResponseComplete",
        audit_id: str | None = None,
    ) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(
                # exec and port-forward are `create` on their subresource, also as a WebSocket GET.
                "POST" if streaming.is_stream_path(request.path) else request.method,
                request.path,
                request.query,
                user=identity if not isinstance(identity, str) else None,
                code=code,
                request_uri=request.path_qs,
                source_ip=request.remote or "",
                user_agent=request.headers.get("User-Agent", ""),
                stage=stage,
                audit_id=audit_id,
            )
        except Exception:  # an audit failure must not fail the request
            log.warning("audit log write failed", exc_info=True)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path_qs)
            return error_response(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    # --- routing -------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return json_response(KUBE_VERSION)
        if parts and parts[0] == "openapi":
            return self.openapi.serve(request, parts)
        if path == "/api":
            host = request.host
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})  # fmt: skip
        if path == "/apis":
            return json_response(self.registry.api_group_list())
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = self.registry.api_group(parts[1])
                if doc is None:
                    raise _path_not_found(request)
                return json_response(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _path_not_found(request)
        if not rest:
            doc = self.registry.api_resource_list(group, version)
            if doc is None:
                raise _path_not_found(request)
            return json_response(doc)
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        ns = ""
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            ns, rest = rest[1], rest[2:]
        plural = rest[0] if rest else ""
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        rd = self.registry.get(group, version, plural)
        if rd is None or len(rest) > 3 or (sub and sub not in rd.subresources):
            raise _path_not_found(request)
        if ns and not rd.namespaced:
            raise _path_not_found(request)
        query = request.query
        method = request.method
        if rd.verbs == ("create",):
            if method != "POST" or name:
                raise errors.method_not_allowed()
            return await self._review(request, rd)
        if name is None:
            if method == "GET":
                if watch_path or query.get("watch") in ("1", "true", "True"):
                    return await self._watch(request, rd, ns)
                return self._list(request, rd, ns)
            if method == "POST":
                params = Params(query, request.headers.get("User-Agent", ""))
                body = await _body(request)
                obj = self.api.create(rd, ns, body, params)
                return json_response(obj, 201, params.warnings)
            if method == "DELETE":
                return await self._delete_collection(request, rd, ns)
            raise errors.method_not_allowed()
        if rd.namespaced and not ns:
            raise _path_not_found(request)
        if watch_path:
            return await self._watch(request, rd, ns, name)
        return await self._item(request, rd, ns, name, sub)

    async def _item(
        self, request: web.Request, rd: ResourceDef, ns: str, name: str, sub: str | None
    ) -> web.StreamResponse:
        method = request.method
        params = Params(request.query, request.headers.get("User-Agent", ""))
        if sub == "log":
            if method != "GET":
                raise errors.method_not_allowed()
            return await logs.serve(request, self.api, self.dir, ns, name)
        if rd.plural == "pods" and sub == "exec":
            return await streaming.serve_exec(request, self.store, self.dir, ns, name)
        if rd.plural == "pods" and sub == "portforward":
            return await streaming.serve_portforward(request, self.store, self.dir, ns, name)
        if sub == "token":
            if method != "POST" or sa_hooks is None:
                raise errors.method_not_allowed()
            return self._token_request(ns, name, await _body(request))
        if sub == "binding":
            if method != "POST":
                raise errors.method_not_allowed()
            return json_response(self._bind(rd, ns, name, await _body(request), params), 201)
        if sub == "eviction":
            if method != "POST":
                raise errors.method_not_allowed()
            return self._evict(rd, ns, name, await _body(request), params)
        if method == "GET":
            if sub == "scale":
                return json_response(self.api.get_scale(rd, ns, name))
            obj = self.api.get(rd, ns, name)
            if tables.wants_table(request):
                return json_response(tables.table(rd, [obj], self.store.rv, request.query))
            # The hot read path (clients without informers poll GETs): the cached encoding when `obj`
            # is the stored object itself, a fresh one for converted views.
            return web.Response(body=self.store.encoded(storage_key(rd), obj), content_type=JSON)
        if method == "PUT":
            obj = self.api.update(rd, ns, name, await _body(request), params, sub)
            return json_response(obj, 200, params.warnings)
        if method == "PATCH":
            ctype = request.content_type
            raw = await request.read()
            self.api.check_namespace(rd, ns, name, creating=False)
            existed = ctype != APPLY_PATCH or self.store.get(
                storage_key(rd), ns if rd.namespaced else "", name
            )
            obj = self.api.patch(rd, ns, name, raw, ctype, params, sub)
            return json_response(obj, 200 if existed else 201, params.warnings)
        if method == "DELETE":
            options = await _delete_options(request)
            params.dry_run = params.dry_run or "All" in (options.get("dryRun") or [])
            obj = self.api.delete(rd, ns, name, options, params)
            # As kube-apiserver: 202 only when the object is still there and the (deprecated)
            # orphanDependents=false asked for cascading deletion; 200 otherwise.
            still_there = self.store.get(storage_key(rd), ns if rd.namespaced else "", name) is not None
            code = 202 if still_there and options.get("orphanDependents") is False else 200
            return json_response(obj, code, params.warnings)
        raise errors.method_not_allowed()

    def _admit_pod(self, pod: dict[str, Any], ns: str) -> dict[str, Any]:
        """The ServiceAccount admission plugin: the account must exist; its token gets mounted."""
        assert sa_hooks is not None
        account = self.store.get("/serviceaccounts", ns, sa_hooks.service_account_name(pod))
        try:
            sa_hooks.require_service_account(pod, ns, account)
        except sa_hooks.AdmissionDenied as exc:
            status = exc.status()
            raise ApiError(403, "Forbidden", str(status.get("message", exc)), status.get("details")) from exc
        admitted: dict[str, Any] = sa_hooks.admit_pod(pod, namespace=ns, service_account=account)
        return admitted

    def _token_request(self, ns: str, name: str, body: Any) -> web.Response:
        """`serviceaccounts/{name}/token` (TokenRequest): a token bound to the account and maybe a pod."""
        assert sa_hooks is not None
        account = self.store.get("/serviceaccounts", ns, name)
        ref = ((body or {}).get("spec") or {}).get("boundObjectRef") if isinstance(body, dict) else None
        bound = node = None
        if isinstance(ref, dict):
            where = {"Pod": ("/pods", ns), "Secret": ("/secrets", ns), "Node": ("/nodes", "")}.get(
                str(ref.get("kind", ""))
            )
            if where is not None:
                bound = self.store.get(where[0], where[1], str(ref.get("name", "")))
            if bound is not None and ref.get("kind") == "Pod":
                node_name = (bound.get("spec") or {}).get("nodeName")
                node = self.store.get("/nodes", "", node_name) if node_name else None
        code, answer = sa_hooks.token_request(
            body, account, self.sa_key, time.time(), bound_object=bound, node=node, namespace=ns, name=name
        )
        return json_response(answer, code)

    def publish(self, host: str, port: int, ca_pem: str | None) -> None:
        """What kube-apiserver maintains about itself: `default/kubernetes` and `kube-root-ca.crt`."""
        if ca_pem is not None:
            self.api.publish_root_ca(ca_pem)
        if sa_hooks is None:
            return
        for obj in sa_hooks.kubernetes_service_objects(host, port):
            rd = self.registry.by_kind(str(obj["apiVersion"]), str(obj["kind"]))
            if rd is not None:
                self.api.upsert(rd, "default", obj, "kube-apiserver")

    def _evict(self, rd: ResourceDef, ns: str, name: str, body: Any, params: Params) -> web.Response:
        """The eviction API: a delete that a PodDisruptionBudget can refuse with 429."""
        pod = self.store.get("/pods", ns, name)
        if pod is None:
            raise errors.not_found("", "pods", name)
        phase = (pod.get("status") or {}).get("phase")
        labels = meta(pod).get("labels") or {}
        for pdb in self.store.list("policy/poddisruptionbudgets", ns):
            reqs = selectors.selector_from_label_selector((pdb.get("spec") or {}).get("selector"))
            if reqs is None or not all(r.matches(labels) for r in reqs) or phase in ("Succeeded", "Failed"):
                continue
            status = pdb.get("status") or {}
            if int(status.get("disruptionsAllowed") or 0) < 1:
                cause = (
                    f"The disruption budget {meta(pdb)['name']} needs {status.get('desiredHealthy', 0)} healthy "
                    f"pods and has {status.get('currentHealthy', 0)} currently"
                )
                raise ApiError(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
                )
        options = body.get("deleteOptions") or {} if isinstance(body, dict) else {}
        self.api.delete(rd, ns, name, options, params)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}, 201)

    def _bind(self, rd: ResourceDef, ns: str, name: str, body: Any, params: Params) -> dict[str, Any]:
        target = (body or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid(
                "Binding", "", name, [("FieldValueRequired", "target.name", "Required value")]
            )
        old = self.store.get("/pods", ns, name)
        if old is None:
            raise errors.not_found("", "pods", name)
        if (old.get("spec") or {}).get("nodeName"):
            raise errors.conflict("", "pods/binding", name, f"pod {name} is already assigned to node "
                                  f'"{old["spec"]["nodeName"]}"')  # fmt: skip
        new = json.loads(json.dumps(old))
        new["spec"]["nodeName"] = node
        conditions = [
            c for c in new.setdefault("status", {}).get("conditions") or [] if c.get("type") != "PodScheduled"
        ]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        new["status"]["conditions"] = conditions
        self.store.put("/pods", new)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    async def _review(self, request: web.Request, rd: ResourceDef) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be of type object)")
        body = dict(body)
        if rd.kind == "SelfSubjectReview":
            identity = request.get("identity")
            user = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}
            if identity is not None and not isinstance(identity, str):
                user = identity.user_info()
            body["status"] = {"userInfo": user}
        elif rd.kind == "SelfSubjectRulesReview":
            body["status"] = {
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": False,
            }
        else:
            # The local plane has one user, and it may do everything.
            body["status"] = {"allowed": True, "reason": "the local control plane has a single admin user"}
        body.setdefault("apiVersion", rd.api_version)
        body.setdefault("kind", rd.kind)
        body.setdefault("metadata", {})
        return json_response(body, 201)

    # --- lists ---------------------------------------------------------------------------------------

    def _selection(self, request: web.Request, rd: ResourceDef) -> selectors.Matcher:
        extra: tuple[str, ...] = ()
        if rd.is_custom:
            extra = tuple(
                str(f.get("jsonPath", "")).lstrip(".") for f in rd.crd_version().get("selectableFields") or []
            )
        selector_key = storage_key(rd) if rd.group != "events.k8s.io" else "events.k8s.io/events"
        labels = selectors.parse_label_selector(request.query.get("labelSelector"))
        fields = selectors.parse_field_selector(request.query.get("fieldSelector"), selector_key, extra)
        match = selectors.matcher(labels, fields)
        if rd.group == "events.k8s.io":
            from .events import from_core

            return lambda obj: match(from_core(obj))
        return match

    def _list(self, request: web.Request, rd: ResourceDef, ns: str) -> web.Response:
        query = request.query
        match = self._selection(request, rd)
        skey = storage_key(rd)
        rv_param = query.get("resourceVersion", "")
        if query.get("resourceVersionMatch") == "Exact" and rv_param and int(rv_param) != self.store.rv:
            raise errors.gone(f"too old resource version: {rv_param} ({self.store.rv})")
        items = self.store.list(skey, ns if ns else None)
        start: tuple[str, str] | None = None
        list_rv = self.store.rv
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start = (token["start"][0], token["start"][1])
                list_rv = int(token["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise errors.bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion "
                    "(version meta.k8s.io/v1)"
                ) from exc
        limit = int(query.get("limit") or 0)
        selected: list[dict[str, Any]] = []
        continue_token = ""
        remaining = 0
        for obj in items:
            m = meta(obj)
            position = (m.get("namespace") or "", m.get("name", ""))
            if start is not None and position <= start:
                continue
            if not match(obj):
                continue
            if limit and len(selected) >= limit:
                remaining += 1
                continue
            selected.append(obj)
        if remaining:
            last = meta(selected[-1])
            continue_token = base64.urlsafe_b64encode(dumps(
                {"rv": list_rv, "start": [last.get("namespace") or "", last.get("name", "")]})).decode()  # fmt: skip
        views = [self.api.view(rd, o) for o in selected]
        if tables.wants_table(request):
            table = tables.table(rd, views, list_rv, query)
            if continue_token:
                table["metadata"]["continue"] = continue_token
                table["metadata"]["remainingItemCount"] = remaining
            return json_response(table)
        list_meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if continue_token:
            list_meta["continue"] = continue_token
            list_meta["remainingItemCount"] = remaining
        list_kind = f"{rd.kind}List"
        if rd.crd is not None:
            list_kind = str(rd.crd["spec"]["names"].get("listKind") or list_kind)
        body = (
            b'{"kind":'
            + dumps(list_kind)
            + b',"apiVersion":'
            + dumps(rd.api_version)
            + b',"metadata":'
            + dumps(list_meta)
            + b',"items":['
            + b",".join(dumps(v) for v in views)
            + b"]}"
        )
        return web.Response(body=body, content_type=JSON)

    async def _delete_collection(self, request: web.Request, rd: ResourceDef, ns: str) -> web.Response:
        match = self._selection(request, rd)
        options = await _delete_options(request)
        params = Params(request.query, request.headers.get("User-Agent", ""))
        deleted = []
        for obj in self.store.list(storage_key(rd), ns if ns else None):
            if match(obj):
                with contextlib.suppress(ApiError):
                    deleted.append(self.api.delete(rd, ns or meta(obj).get("namespace") or "", meta(obj)["name"],
                                                   options, params))  # fmt: skip
        list_kind = f"{rd.kind}List"
        return json_response({"kind": list_kind, "apiVersion": rd.api_version,
                              "metadata": {"resourceVersion": str(self.store.rv)},
                              "items": [d for d in deleted if d.get("kind") != "Status"]})  # fmt: skip

    # --- watch ---------------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, rd: ResourceDef, ns: str, name: str | None = None
    ) -> web.StreamResponse:
        query = request.query
        base_match = self._selection(request, rd)
        match = base_match
        if name is not None:
            match = lambda obj: meta(obj).get("name") == name and base_match(obj)  # noqa: E731
        skey = storage_key(rd)
        rv_param = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents") == "true"
        as_table = tables.wants_table(request)
        watcher = Watcher(skey, ns if ns else None, match)
        initial: list[tuple[str, dict[str, Any]]] = []
        expired = False
        if rv_param in ("", "0") or send_initial:
            initial = [("ADDED", o) for o in self.store.list(skey, ns if ns else None) if match(o)]
        else:
            try:
                since = int(rv_param)
            except ValueError as exc:
                raise errors.bad_request(f'invalid resource version "{rv_param}"') from exc
            past = self.store.events_since(skey, since)
            if past is None:
                expired = True
            else:
                for event in past:
                    watcher.offer(event)
        start_rv = self.store.rv
        self.store.add_watcher(watcher)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        # A watch may run for the life of its client: audit it when it starts, then again when it ends.
        request["audit_id"] = str(uuid.uuid4())
        self._audit(request, request.get("identity"), 200, "ResponseStarted", request["audit_id"])
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        first_table = [True]

        def encode(kind: str, obj: dict[str, Any]) -> bytes:
            view = self.api.view(rd, obj)
            if as_table:
                view = tables.table(rd, [view], int(meta(obj).get("resourceVersion") or 0), query,
                                    with_columns=first_table[0])  # fmt: skip
                first_table[0] = False
            return dumps({"type": kind, "object": view}) + b"\n"

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            m: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                m["annotations"] = {"k8s.io/initial-events-end": "true"}
            return dumps({"type": "BOOKMARK", "object": {"kind": rd.kind, "apiVersion": rd.api_version,
                                                         "metadata": m}}) + b"\n"  # fmt: skip

        try:
            if expired:
                status = errors.gone(f"too old resource version: {rv_param} ({self.store.history_start})")
                await resp.write(dumps({"type": "ERROR", "object": status.status()}) + b"\n")
                return resp
            for kind, obj in initial:
                await resp.write(encode(kind, obj))
            if send_initial and bookmarks:
                await resp.write(bookmark(start_rv, initial_end=True))
            next_bookmark = time.monotonic() + self.bookmark_seconds
            while True:
                now_ = time.monotonic()
                wait = min(deadline, next_bookmark if bookmarks else deadline) - now_
                if wait <= 0:
                    if now_ >= deadline:
                        break
                    await resp.write(bookmark(self.store.rv))
                    next_bookmark = now_ + self.bookmark_seconds
                    continue
                try:
                    # Wake now and then: aiohttp does not cancel a handler whose client went away.
                    item = await asyncio.wait_for(watcher.queue.get(), min(wait, 2.0))
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                if item is None:
                    break
                chunk = [encode(*item)]
                while not watcher.queue.empty():
                    nxt = watcher.queue.get_nowait()
                    if nxt is None:
                        break
                    chunk.append(encode(*nxt))
                await resp.write(b"".join(chunk))
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.store.drop_watcher(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await resp.write_eof()
        return resp


def _path_not_found(request: web.Request) -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


async def _body(request: web.Request) -> Any:
    ctype = request.content_type
    if ctype == protobuf.CONTENT_TYPE:
        return protobuf.decode_object(await request.read())
    if ctype not in (
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "application/octet-stream",
        "",
    ):
        # client-go retries in JSON when a protobuf or CBOR body is answered with 415.
        raise errors.unsupported_media(["application/json", "application/yaml"])
    raw = await request.read()
    try:
        if ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
            return yaml.safe_load(raw.decode())
        return json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


async def _delete_options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.can_read_body:
        raw = await request.read()
        if request.content_type == protobuf.CONTENT_TYPE:
            options.update(protobuf.decode_object(raw))
        elif raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise errors.bad_request(f"error decoding DeleteOptions: {exc}") from exc
            if isinstance(body, dict):
                options.update(body)
    q = request.query
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "gracePeriodSeconds" in q:
        options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
    if "orphanDependents" in q:
        options["orphanDependents"] = q["orphanDependents"] == "true"
    if "dryRun" in q:
        options["dryRun"] = q.getall("dryRun")
    return options
