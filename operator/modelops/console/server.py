"""The console's HTTP server: pages, their live updates (server-sent events), the command line.

Every page is rendered here on each request from what `reader` returns (cached for a second or two),
so its URL can be shared and it reads without JavaScript. `/stream?path=<page>` renders the same page
every `--interval` seconds and sends its `<main>` when it changed; the browser swaps it in. When the
API server does not answer, the stream says so and backs off (doubling up to 30 s) instead of
hammering it; the page keeps showing the last state it had.

Loopback by default. The Host header must name this server (a page elsewhere could otherwise
point a DNS name at 127.0.0.1 and read the cluster through the user's credentials); a strict
Content-Security-Policy allows only this server's own script and style.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web

from modelops.builders import inferenceservice as isvc_builders
from modelops.builders import trainingjob as tj_builders
from modelops.console import pages, views
from modelops.console.reader import Reader, ReadError
from modelops.controllers import login

STATIC = Path(__file__).parent / "static"
DEFAULT_PORT = 8765
MAX_BACKOFF = 30.0
KEEPALIVE = 15.0
SERIES_POINTS = 300
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Page = tuple[str, str, int]  # title, main HTML, HTTP status


class Console:
    """The pages, from a `Reader`."""

    def __init__(self, reader: Reader, *, context: str) -> None:
        self.reader = reader
        self.context = context
        self._looks: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        # Per track, the rates of recent looks (monotonic time, rates), for the charts: ~10 minutes.
        self._series: dict[tuple[str, str, str], collections.deque[tuple[float, dict[str, Any]]]] = {}
        self._routes: list[tuple[re.Pattern[str], Callable[..., Awaitable[Page]]]] = [
            (re.compile(r"^/$"), self.overview),
            (re.compile(r"^/backups$"), self.backups),
            (re.compile(rf"^/ns/(?P<ns>{DNS_LABEL})/trainingjobs/(?P<name>[-a-z0-9.]+)$"), self.training),
            (re.compile(rf"^/ns/(?P<ns>{DNS_LABEL})/models/(?P<name>[-a-z0-9.]+)$"), self.model),
            (
                re.compile(rf"^/ns/(?P<ns>{DNS_LABEL})/inferenceservices/(?P<name>[-a-z0-9.]+)$"),
                self.serving,
            ),
            (
                re.compile(rf"^/ns/(?P<ns>{DNS_LABEL})/(?P<plural>[a-z0-9]+)/(?P<name>[-a-z0-9.]+)$"),
                self.other,
            ),
        ]

    async def page(self, path: str, query: dict[str, list[str]]) -> Page:
        for pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                return await handler(query=query, **match.groupdict())
        return "Not found", pages.not_found(f"The page {path}"), 404

    # -- pages -------------------------------------------------------------------------------------

    async def overview(self, query: dict[str, list[str]]) -> Page:
        plurals = await self.reader.served_plurals()
        lists = await asyncio.gather(*(self.reader.modelops(p) for p in plurals))
        sections = views.overview(dict(zip(plurals, lists, strict=True)), _now())
        stale = self.reader.stale()
        errors = [f"Showing the last state seen; the watch failed: {stale}"] if stale else []
        return "Overview", pages.overview(sections, errors), 200

    async def backups(self, query: dict[str, list[str]]) -> Page:
        plurals = [p for p in await self.reader.served_plurals() if p in ("trainingjobs", "modelversions")]
        lists = await asyncio.gather(*(self.reader.modelops(p) for p in plurals))
        return "Backups", pages.backups(views.backups(dict(zip(plurals, lists, strict=True)), _now())), 200

    async def training(self, query: dict[str, list[str]], ns: str, name: str) -> Page:
        job = await self.reader.modelops_object("trainingjobs", ns, name)
        if job is None:
            return name, pages.not_found(f"TrainingJob {ns}/{name}"), 404
        pods, events = await asyncio.gather(
            self.reader.pods(ns, f"{tj_builders.LABEL_JOB}={name}"),
            self.reader.events(ns, name, "TrainingJob"),
        )
        ranked = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name")))
        rank0 = next(
            (p for p in ranked if (p["metadata"].get("labels") or {}).get(tj_builders.LABEL_RANK) == "0"),
            ranked[0] if ranked else None,
        )
        log, log_pod = "", ""
        if rank0 is not None:
            log_pod = str(rank0["metadata"]["name"])
            log = await self.reader.log_tail(ns, log_pod, tj_builders.CONTAINER)
        v = views.training(job, pods, events, _now())
        return f"TrainingJob {name}", pages.training(v, log, log_pod), 200

    async def model(self, query: dict[str, list[str]], ns: str, name: str) -> Page:
        versions, services = await asyncio.gather(
            self.reader.modelops("modelversions", ns), self.reader.modelops("inferenceservices", ns)
        )
        only = [x for value in query.get("v", []) for x in value.split(",") if x]
        v = views.model(name, versions, services, _now(), only=only)
        if not v["versions"] and not only:
            return name, pages.not_found(f"Model {ns}/{name}"), 404
        return f"Model {name}", pages.model(v, ns, f"/ns/{ns}/models/{name}"), 200

    async def serving(self, query: dict[str, list[str]], ns: str, name: str) -> Page:
        isvc = await self.reader.modelops_object("inferenceservices", ns, name)
        if isvc is None:
            return name, pages.not_found(f"InferenceService {ns}/{name}"), 404
        pods, events = await asyncio.gather(
            self.reader.pods(ns, f"{isvc_builders.LABEL_ISVC}={name}"),
            self.reader.events(ns, name, "InferenceService"),
        )
        rates = await self._rates(ns, name, pods)
        v = views.serving(isvc, pods, events, rates, _now())
        return f"InferenceService {name}", pages.serving(v), 200

    async def _rates(self, ns: str, name: str, pods: list[dict[str, Any]]) -> dict[str, Any]:
        """Per track: rates between this look at the pods' /metrics and the previous one (>= 1 s ago)."""
        out: dict[str, Any] = {}
        tracks: dict[str, list[tuple[str, int]]] = {}
        for pod in pods:
            st, labels = pod.get("status") or {}, (pod.get("metadata") or {}).get("labels") or {}
            if st.get("phase") != "Running" or not st.get("podIP"):
                continue
            port = next(
                (
                    int(p["containerPort"])
                    for c in (pod.get("spec") or {}).get("containers") or ()
                    for p in c.get("ports") or ()
                    if p.get("name") == "http"
                ),
                8080,
            )
            tracks.setdefault(str(labels.get(isvc_builders.LABEL_TRACK, "stable")), []).append(
                (str(st["podIP"]), port)
            )
        for track, targets in tracks.items():
            key = (ns, name, track)
            previous = self._looks.get(key)
            now = time.monotonic()
            if previous is not None and now - previous[0] < 1.0:
                out[track] = previous[1].get("rates")
                continue
            texts = await asyncio.gather(*(self.reader.scrape(ip, port) for ip, port in targets))
            total: dict[str, Any] = {"by_code": {}, "buckets": {}}
            for text in texts:
                if text is None:
                    continue
                c = views.counters(text)
                for k in ("by_code", "buckets"):
                    for label, value in c[k].items():
                        total[k][label] = total[k].get(label, 0.0) + value
            look_rates = views.rates(
                previous[1]["counters"] if previous else None, total, now - previous[0] if previous else 0
            )
            if look_rates is None and previous is not None:
                look_rates = previous[1].get("rates")
            fresh = (
                look_rates is not None and previous is not None and look_rates is not previous[1].get("rates")
            )
            self._looks[key] = (now, {"counters": total, "rates": look_rates})
            series = self._series.setdefault(key, collections.deque(maxlen=SERIES_POINTS))
            if fresh and look_rates is not None:
                series.append((now, look_rates))
            out[track] = look_rates
        result: dict[str, Any] = {k: v for k, v in out.items() if v}
        now = time.monotonic()
        result["series"] = {
            track: [(round(t - now, 1), r) for t, r in self._series.get((ns, name, track), ())]
            for track in tracks
        }
        return result

    async def other(self, query: dict[str, list[str]], ns: str, plural: str, name: str) -> Page:
        if plural == "modelversions":
            mv = await self.reader.modelops_object(plural, ns, name)
            if mv is None:
                return name, pages.not_found(f"ModelVersion {ns}/{name}"), 404
            raise web.HTTPFound(views.href(plural, mv))
        if plural not in await self.reader.served_plurals():
            return name, pages.not_found(f"The resource type {plural}"), 404
        obj = await self.reader.modelops_object(plural, ns, name)
        if obj is None:
            return name, pages.not_found(f"{views.KINDS.get(plural, plural)} {ns}/{name}"), 404
        if plural == "tuningjobs":
            return f"TuningJob {name}", pages.tuning(views.tuning(obj, _now())), 200
        return name, pages.generic(views.generic(plural, obj, _now())), 200


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- the aiohttp application ----------------------------------------------------------------------


def make_app(
    console: Console, *, interval: float = 2.0, allowed_hosts: tuple[str, ...] | None = None
) -> web.Application:
    """The application; `allowed_hosts` None accepts any Host (in-cluster, behind a proxy)."""

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # /healthz answers any Host: the kubelet probes by pod IP.
        if (
            allowed_hosts is not None
            and request.path != "/healthz"
            and _hostname(request.host or "") not in allowed_hosts
        ):
            return web.Response(
                status=421,
                text=f"Host {request.host!r} is not this console; open it by the address it printed.\n",
            )
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="The console is read-only.\n")
        response = await handler(request)
        for k, value in SECURITY_HEADERS.items():
            response.headers.setdefault(k, value)
        return response

    async def page(request: web.Request) -> web.Response:
        try:
            title, main, code = await console.page(request.path, _query(request))
        except ReadError as error:
            title, main, code = "Unavailable", _unavailable(error), 502
        return web.Response(
            text=pages.frame(title, main, context=console.context),
            status=code,
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        target = urllib.parse.urlsplit(request.query.get("path", "/"))
        query = urllib.parse.parse_qs(target.query)
        last = request.query.get("since", "")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        delay, quiet = interval, 0.0
        try:
            await response.write(f"retry: {int(interval * 1000)}\n\n".encode())
            while True:
                try:
                    title, main, _ = await console.page(target.path, query)
                except web.HTTPFound as moved:
                    await _send(response, "moved", {"location": moved.location})
                    return response
                except ReadError as error:
                    delay = min(MAX_BACKOFF, delay * 2)
                    await _send(
                        response, "status", {"ok": False, "text": f"{error}; retrying in {delay:.0f}s"}
                    )
                else:
                    if delay != interval:
                        await _send(response, "status", {"ok": True, "text": "Live updates: reconnected"})
                    delay = interval
                    digest = pages.digest(main)
                    if digest != last:
                        await _send(response, "main", {"title": title, "html": main, "digest": digest})
                        last, quiet = digest, 0.0
                    elif quiet >= KEEPALIVE:
                        await response.write(b": keepalive\n\n")
                        quiet = 0.0
                if request.transport is None or request.transport.is_closing():
                    break  # the browser went away
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                if stopping.is_set():
                    break
                quiet += delay
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    stopping = asyncio.Event()

    async def stop_streams(app: web.Application) -> None:
        stopping.set()

    app = web.Application(middlewares=[guard])
    app.on_shutdown.append(stop_streams)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stream", stream)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/{tail:.*}", page)
    return app


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0]


def _query(request: web.Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, value in request.query.items():
        out.setdefault(k, []).append(value)
    return out


def _unavailable(error: ReadError) -> str:
    return (
        '<h1>Cluster unavailable</h1><p class="error" role="alert">'
        + pages.e(str(error))
        + "</p><p>The console retries by itself; check the kubeconfig and that the API server is up.</p>"
    )


# -- the command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 in a pod behind a proxy)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig to read the cluster with (default: KUBECONFIG, ~/.kube/config or in-cluster)",
    )
    parser.add_argument(
        "--namespace",
        default=None,
        help="show only this namespace (for users who may list the modelops kinds in one namespace only)",
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between live updates of a page (default 2)"
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        help="a Host name the console answers to besides loopback (repeatable); '*' accepts any (in-cluster)",
    )


def allowed(args: argparse.Namespace) -> tuple[str, ...] | None:
    extra = list(args.allowed_host or ())
    if "*" in extra:
        return None
    return (*LOOPBACK_HOSTS, *extra, *([args.address] if args.address not in ("0.0.0.0", "::") else []))


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("modelops console: --interval must be a positive number of seconds", file=sys.stderr)
        return 2
    try:
        login.connection_info(args.kubeconfig)
    except kopf.LoginError as error:
        print(f"modelops console: {error}", file=sys.stderr)
        return 1
    reader = Reader(args.kubeconfig, namespace=args.namespace)
    context = f"kubeconfig {args.kubeconfig}" if args.kubeconfig else "current kubeconfig context"
    if args.namespace:
        context += f", namespace {args.namespace}"
    app = make_app(Console(reader, context=context), interval=args.interval, allowed_hosts=allowed(args))
    host = "localhost" if args.address in ("127.0.0.1", "::1") else args.address
    print(f"modelops console: http://{host}:{args.port}/ (read-only; Ctrl-C stops it)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app, host=args.address, port=args.port, print=None, access_log=None, shutdown_timeout=5)
    return 0
