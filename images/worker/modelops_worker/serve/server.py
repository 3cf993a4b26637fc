"""The HTTP server of `modelops-worker serve`: the Open Inference Protocol v2 REST API on aiohttp.

Life of a process: listen at once (live answers, ready says 503 while loading), verify and load the
artifact on a thread, then serve. An artifact that is missing, has another sha256 or does not load
ends the process with exit 65 and its reason in the termination message; it is never ready.

Client mistakes are 4xx, never 500: the protocol layer refuses every malformed body with 400 naming
the field, a body whose `Content-Encoding` does not decode is 400 (gzip and deflate bodies are
accepted and inflated up to `maxBodyBytes`, beyond that 413), an unknown encoding 415, and aiohttp's
own parser refusals (bad request line, headers) are answered 400 and logged at INFO without a
traceback. A client that closes the connection before its request is read is counted under code 499
(nginx's "client closed request"), which the canary analysis and the alerts (5xx only) never count.
With auth configured every path but health and metrics answers 401 to a caller without a valid token,
before anything else (an unknown model's 404 would name the served one).

On SIGTERM the server drains: ready turns 503 (the endpoint leaves the Service), the listening socket
closes, every request already received is answered (a request on a kept-alive connection is still
served, with `Connection: close`), and the process exits 0 when none is left or after
`drainSeconds`, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from modelops import __version__
from modelops.api.serveconfig import CODE_CLIENT_CLOSED, PATH_LIVE, PATH_METRICS, PATH_READY, ServeConfig
from modelops_worker.errors import WorkerError
from modelops_worker.serve import protocol
from modelops_worker.serve.auth import TokenFile
from modelops_worker.serve.batching import QueueFull, ShuttingDown
from modelops_worker.serve.core import InferenceCore
from modelops_worker.serve.metrics import CONTENT_TYPE, ServeMetrics
from modelops_worker.serve.model import LoadedModel, configure_threads
from modelops_worker.serve.protocol import ProtocolError

log = logging.getLogger("modelops_worker.serve")

JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Fault injection for tests only: seconds each forward pass sleeps (a slow model, without one).
ENV_FAULT_FORWARD_DELAY = "MODELOPS_SERVE_FAULT_FORWARD_DELAY"
# Paths that answer without a token (probes and Prometheus); everything else needs one when auth is on.
OPEN_PATHS = frozenset({PATH_LIVE, PATH_READY, PATH_METRICS})
# Content codings aiohttp inflates (bounded per chunk; the body as a whole by maxBodyBytes).
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


class ClientClosed(Exception):
    """The client closed the connection before its request was read or answered."""


class _QuietParserErrors(logging.Filter):
    """aiohttp logs a request its parser refuses (bad request line, headers, body encoding) with a
    traceback at ERROR; that is a client's mistake, answered 400, so it becomes one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError) or (
            isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500
        ):
            what = " ".join(str(exc).split())[:200]
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg}: a malformed request, refused with 400: {what}"
            record.exc_info = record.exc_text = None
        elif isinstance(exc, ConnectionResetError | ClientClosed):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
        return True


http_log = logging.getLogger("modelops_worker.serve.http")
http_log.addFilter(_QuietParserErrors())


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(status, protocol.error_body(message), headers)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405/413 pages as protocol errors."""
    try:
        return await handler(request)
    except ClientClosed:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason
        if exc.status == 404:
            reason = (
                f"no such endpoint: {request.method} {request.path} (see GET /v2 and /v2/models/{{name}})"
            )
        elif exc.status == 405:
            reason = f"{request.method} is not allowed on {request.path}"
        return _error(exc.status, reason)


class Server:
    """One model served over OIP v2; `app` is the aiohttp application."""

    def __init__(self, cfg: ServeConfig, tokens: TokenFile | None = None) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self.metrics = ServeMetrics(cfg.model_name, cfg.model_version)
        self.model: LoadedModel | None = None
        self.core: InferenceCore | None = None
        self.state = "loading"  # loading -> ready -> draining
        self.inflight = 0
        self._last_full_log = 0.0
        self._idle = asyncio.Event()
        self._idle.set()
        self.app = web.Application(
            client_max_size=cfg.max_body_bytes, middlewares=[self._authenticate, _json_errors]
        )
        self._routes()

    def _routes(self) -> None:
        r = self.app.router
        r.add_get(PATH_LIVE, self.live)
        r.add_get(PATH_READY, self.ready)
        r.add_get("/v2", self.server_metadata)
        r.add_get(PATH_METRICS, self.prometheus)
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            r.add_get(base, self.model_metadata)
            r.add_get(base + "/ready", self.model_ready)
            r.add_post(base + "/infer", self.infer)

    # --- lifecycle -------------------------------------------------------------------------------

    def serve_model(self, model: LoadedModel) -> None:
        """Start serving a loaded model (on the event loop)."""
        self.model = model
        self.core = InferenceCore(
            model,
            self.cfg.batching,
            inflight=lambda: self.inflight,
            on_batch=self.metrics.batch_size.observe,
            on_queue=self.metrics.queue.set,
            thread_init=configure_threads,
            forward_delay=float(os.environ.get(ENV_FAULT_FORWARD_DELAY) or 0),
        )
        self.core.start()
        self.metrics.describe(
            model.sha256,
            model.format,
            self.cfg.quantization,
            model.placement.device,
            model.placement.precision,
        )
        self.state = "ready"

    async def drain(self, timeout: float) -> bool:
        """Stop taking work; True when every in-flight request was answered within `timeout`."""
        self.state = "draining"
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            done = True
        except TimeoutError:
            done = False
        if self.core is not None:
            await self.core.close(max(0.0, deadline - time.monotonic()))
        return done

    # --- health and metadata ---------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return _json(200, b'{"live":true}')

    async def ready(self, request: web.Request) -> web.Response:
        if self.state == "ready":
            return _json(200, b'{"ready":true}')
        why = "the model is loading" if self.state == "loading" else "the server is shutting down"
        return _json(503, protocol.dumps({"ready": False, "error": why}))

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """With auth on, every path but health and metrics needs a valid token, checked first: an
        unauthenticated caller learns nothing, not even which model is served."""
        if self.tokens is None or request.path in OPEN_PATHS:
            return await handler(request)
        if self.tokens.accepts(request.headers.get("Authorization")):
            return await handler(request)
        given = "Authorization" in request.headers
        resp = _error(
            401,
            "the bearer token is not accepted"
            if given
            else "this server needs a bearer token: send Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="modelops"'},
        )
        if request.method == "POST" and request.path.endswith("/infer"):
            self.metrics.observe(401, 0.0)
        return resp

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json(
            200,
            protocol.dumps(
                {"name": "modelops", "version": __version__, "extensions": ["binary_tensor_data"]}
            ),
        )

    def _unknown_model(self, request: web.Request) -> web.Response | None:
        name = request.match_info["name"]
        version = request.match_info.get("version")
        if name != self.cfg.model_name:
            return _error(
                404,
                f"model {name!r} is not served here; this server serves {self.cfg.model_name!r} "
                f"(POST /v2/models/{self.cfg.model_name}/infer)",
            )
        if version is not None and version != self.cfg.model_version:
            return _error(
                404,
                f"model {name!r} has version {self.cfg.model_version} here, not {version!r}; "
                f"use /v2/models/{name}/versions/{self.cfg.model_version} or leave the version out",
            )
        return None

    async def model_metadata(self, request: web.Request) -> web.Response:
        if (err := self._unknown_model(request)) is not None:
            return err
        if self.core is None:
            return _error(503, "the model is loading; retry when GET /v2/health/ready answers 200")
        meta = self.core.metadata(self.cfg.model_name, self.cfg.model_version)
        return _json(200, protocol.dumps(meta))

    async def model_ready(self, request: web.Request) -> web.Response:
        if (err := self._unknown_model(request)) is not None:
            return err
        ready = self.state == "ready"
        return _json(200 if ready else 503, protocol.dumps({"name": self.cfg.model_name, "ready": ready}))

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # --- inference -------------------------------------------------------------------------------

    async def infer(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        self.inflight += 1
        self._idle.clear()
        self.metrics.inflight.inc()
        try:
            resp = await self._infer(request)
        except ClientClosed:
            resp = _error(CODE_CLIENT_CLOSED, "the client closed the connection")
        except Exception:
            log.exception("inference request failed")
            resp = _error(500, "internal error while serving the request; see the server log")
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()
            if self.inflight == 0:
                self._idle.set()
        if self.state == "draining":
            resp.force_close()  # the client reconnects, to another pod: this one no longer listens
        self.metrics.observe(resp.status, time.perf_counter() - started)
        if resp.status == CODE_CLIENT_CLOSED:
            # Nobody is there to answer: aiohttp drops the response of a closed connection.
            raise ClientClosed()
        return resp

    async def _read(self, request: web.Request) -> bytes | web.Response:
        """The body, inflated if it is gzip/deflate; the error response for a body that cannot be read."""
        limit = self.cfg.max_body_bytes
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ENCODINGS:
            return _error(
                415,
                f"Content-Encoding {encoding!r:.50} is not supported; send the body uncompressed, or "
                "gzip or deflate",
            )
        if request.content_length is not None and request.content_length > limit:
            return _error(
                413,
                f"the request body has {request.content_length} bytes, over the limit of "
                f"{limit} (maxBodyBytes); send fewer samples per request",
            )
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(
                413,
                f"the request body is over the limit of {limit} bytes (maxBodyBytes)"
                + (" once inflated" if encoding not in ("", "identity") else "")
                + "; send fewer samples per request",
            )
        except (BadHttpMessage, RequestPayloadError) as exc:  # a body that does not decode as it says
            cause = exc.__cause__ or exc
            resp = _error(
                400,
                f"the request body cannot be read: {' '.join(str(cause).split())[:200]}"
                + (
                    f"; it is sent with Content-Encoding {encoding}, so it must be {encoding}-compressed "
                    "(or drop the header)"
                    if encoding not in ("", "identity")
                    else ""
                ),
            )
            resp.force_close()  # the rest of the body cannot be read either: no keep-alive after it
            return resp
        except (ConnectionResetError, asyncio.IncompleteReadError, EOFError) as exc:
            raise ClientClosed() from exc
        except Exception as exc:
            if request.transport is None or request.transport.is_closing():
                raise ClientClosed() from exc
            raise

    async def _infer(self, request: web.Request) -> web.Response:
        if (err := self._unknown_model(request)) is not None:
            return err
        core = self.core
        if core is None:
            return _error(
                503, "the model is loading; retry when GET /v2/health/ready answers 200", {"Retry-After": "1"}
            )
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body
        header_length: int | None = None
        raw_len = request.headers.get(protocol.HEADER_LENGTH)
        if raw_len is not None:
            raw_len = raw_len.strip()
            if not (raw_len.isascii() and raw_len.isdigit()) or len(raw_len) > 18:
                return _error(
                    400, f"{protocol.HEADER_LENGTH} must be a non-negative integer; got {raw_len!r:.50}"
                )
            header_length = int(raw_len)
        try:
            req = protocol.parse_infer(body, header_length)
            prepared = core.check(req.inputs)
            names = core.outputs(req.outputs)
            outputs = await core.infer(prepared, names)
        except ProtocolError as exc:
            return _error(exc.status, exc.message)
        except QueueFull as exc:
            now = time.monotonic()
            if now - self._last_full_log > 10:  # a full queue is news, each refusal is not
                self._last_full_log = now
                log.warning("refusing requests: %s", exc)
            return _error(503, str(exc), {"Retry-After": "1"})
        except ShuttingDown:
            return _error(
                503, "the server is shutting down; retry (another replica will answer)", {"Retry-After": "1"}
            )
        body_out, head_len = protocol.encode_response(
            self.cfg.model_name, self.cfg.model_version, req, outputs, core.output_types
        )
        if head_len is None:
            return _json(200, body_out)
        # Binary outputs follow the JSON header; its length tells the client where they start.
        return web.Response(
            body=body_out,
            headers={protocol.HEADER_LENGTH: str(head_len), "Content-Type": "application/octet-stream"},
        )


async def run(
    cfg: ServeConfig, host: str, load: Callable[[ServeConfig], LoadedModel], tokens: TokenFile | None = None
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code. Raises WorkerError when the model cannot load."""
    server = Server(cfg, tokens)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False, logger=http_log)
    await runner.setup()
    from modelops_worker.serve.supervisor import is_child  # one of several processes sharing the port

    site = web.TCPSite(
        runner, host, cfg.port, reuse_address=True, reuse_port=is_child() or None, backlog=1024
    )
    await site.start()
    log.info("listening on %s:%d for model %s version %s", host, cfg.port, cfg.model_name, cfg.model_version)
    from modelops_worker.serve import grpc_server  # OIP v2 over gRPC on cfg.grpc_port, same Server

    try:
        grpc_front = await grpc_server.start(server, host)
    except BaseException:
        await runner.cleanup()
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loading = loop.run_in_executor(None, load, cfg)
        stopping = asyncio.ensure_future(stop.wait())
        either: list[asyncio.Future[Any]] = [loading, stopping]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            log.info("stopped while loading the model")
            stopping.cancel()
            return 0
        try:
            server.serve_model(loading.result())
        except WorkerError:
            stopping.cancel()
            raise
        log.info("ready: POST /v2/models/%s/infer", cfg.model_name)
        await stopping
        log.info(
            "SIGTERM: draining up to %.0fs (%d request(s) in flight)", cfg.drain_seconds, server.inflight
        )
        server.state = "draining"
        if grpc_front is not None:
            grpc_front.begin_drain(cfg.drain_seconds)
        await site.stop()
        drained = await server.drain(cfg.drain_seconds)
        if drained:
            log.info("drained; exiting")
        else:
            log.warning(
                "%d request(s) still in flight after %.0fs; exiting", server.inflight, cfg.drain_seconds
            )
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if grpc_front is not None:
            await grpc_front.stop()
        await runner.cleanup()
