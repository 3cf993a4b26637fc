"""The Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`), beside the REST API.

One process, one event loop, one model: the gRPC server (`grpc.aio`) runs on the REST server's loop
and serves the same `Server` object, so both fronts share its batcher (requests of either protocol
share forward passes), its bearer tokens, its metrics and its lifecycle (loading, ready, draining).
KServe's `InferenceGRPCClient` and Triton's `tritonclient.grpc` call this service unchanged.

Statuses a client meets, in the order they are checked: UNAUTHENTICATED (with auth on, every call but
ServerLive and ServerReady needs the metadata entry `authorization: Bearer <token>`, checked first, as
REST does, so a caller without a token learns nothing about which models exist), NOT_FOUND (another
model or version), UNAVAILABLE (loading, draining or a full queue: retry, another replica may
answer), INVALID_ARGUMENT (a tensor the protocol or the model cannot take, named with the fix: the
checks are the serving core's, shared with REST), RESOURCE_EXHAUSTED (more samples than
`batching.maxQueueSize`, or a message over `maxBodyBytes`, which gRPC itself refuses before this code
sees it, so it is not counted), INTERNAL (a bug or a failed forward pass).

Metrics: every ModelInfer is counted in the same request counter and latency histogram as REST, with
`protocol="grpc"` and the gRPC status's HTTP equivalent as `code` (`HTTP_CODE`, Google's mapping,
as grpc-gateway uses), so canary analysis and alerts, which read `code=~"5.."` as the server's
fault, judge both protocols alike: a client's mistake (INVALID_ARGUMENT 400, UNAUTHENTICATED 401,
NOT_FOUND 404, CANCELLED 499) is never a server error, while UNAVAILABLE (503), INTERNAL (500) and
DEADLINE_EXCEEDED (504, the server too slow for the caller's deadline) are.

Drain: on SIGTERM the server stops taking calls at once (new calls fail with UNAVAILABLE, the
client's channel moves to another endpoint) and lets every call in progress finish within
`drainSeconds`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc

from modelops import __version__
from modelops.api.runconfig import EXIT_BAD_CONFIG
from modelops.api.serveconfig import REASON_INVALID_SERVE_CONFIG
from modelops_worker.errors import WorkerError
from modelops_worker.serve.batching import QueueFull, ShuttingDown
from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb
from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc
from modelops_worker.serve.grpc_tensors import (
    TensorError,
    decode_inputs,
    encode_response,
    requested_outputs,
)
from modelops_worker.serve.protocol import ProtocolError
from modelops_worker.serve.supervisor import is_child

if TYPE_CHECKING:
    from modelops_worker.serve.server import Server

log = logging.getLogger("modelops_worker.serve")

SC = grpc.StatusCode
# The generated service module leaves its functions unannotated (make grpc-stubs).
add_servicer: Callable[[pb_grpc.GRPCInferenceServiceServicer, grpc.aio.Server], None] = (
    pb_grpc.add_GRPCInferenceServiceServicer_to_server
)
# A gRPC status as the HTTP status the metrics count it under (google.rpc.Code's documented mapping;
# CANCELLED is 499 "client closed request").
HTTP_CODE: dict[grpc.StatusCode, int] = {
    SC.OK: 200,
    SC.CANCELLED: 499,
    SC.UNKNOWN: 500,
    SC.INVALID_ARGUMENT: 400,
    SC.DEADLINE_EXCEEDED: 504,
    SC.NOT_FOUND: 404,
    SC.ALREADY_EXISTS: 409,
    SC.PERMISSION_DENIED: 403,
    SC.UNAUTHENTICATED: 401,
    SC.RESOURCE_EXHAUSTED: 429,
    SC.FAILED_PRECONDITION: 400,
    SC.ABORTED: 409,
    SC.OUT_OF_RANGE: 400,
    SC.UNIMPLEMENTED: 501,
    SC.INTERNAL: 500,
    SC.UNAVAILABLE: 503,
    SC.DATA_LOSS: 500,
}
# The core's refusals (`ProtocolError.status`) as gRPC statuses.
_FROM_HTTP = {400: SC.INVALID_ARGUMENT, 413: SC.RESOURCE_EXHAUSTED}


class Refusal(Exception):
    """End the call with this status and message; `http` is the code the metrics count it under when
    REST would answer the same refusal otherwise than `HTTP_CODE` says (a 413 is RESOURCE_EXHAUSTED)."""

    def __init__(self, code: grpc.StatusCode, message: str, http: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http = http if http is not None else HTTP_CODE[code]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """`inference.GRPCInferenceService` over a REST `Server`'s model, batcher, tokens and metrics."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cfg = server.cfg

    # --- checks shared by the calls -------------------------------------------------------------

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        tokens = self.server.tokens
        if tokens is None:
            return
        given = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
                break
        if not tokens.accepts(given):
            raise Refusal(
                SC.UNAUTHENTICATED,
                "the bearer token is not accepted"
                if given
                else "this model needs a bearer token: send the metadata `authorization: Bearer <token>`",
            )

    def _model(self, name: str, version: str) -> None:
        cfg = self.cfg
        if name != cfg.model_name:
            raise Refusal(
                SC.NOT_FOUND, f"model {name!r} is not served here; this server serves {cfg.model_name!r}"
            )
        if version and version != cfg.model_version:
            raise Refusal(
                SC.NOT_FOUND,
                f"model {name!r} has version {cfg.model_version} here, not {version!r}; "
                f"ask for version {cfg.model_version!r} or leave the version empty",
            )

    # --- health and metadata -------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.server.state == "ready")

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        try:
            self._authenticate(context)
            self._model(request.name, request.version)
        except Refusal as r:
            await context.abort(r.code, r.message)
        return pb.ModelReadyResponse(ready=self.server.state == "ready")

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        try:
            self._authenticate(context)
        except Refusal as r:
            await context.abort(r.code, r.message)
        return pb.ServerMetadataResponse(name="modelops", version=__version__, extensions=[])

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        try:
            self._authenticate(context)
            self._model(request.name, request.version)
            core = self.server.core
            if core is None:
                raise Refusal(SC.UNAVAILABLE, "the model is loading; retry when ServerReady says ready")
        except Refusal as r:
            await context.abort(r.code, r.message)
            raise AssertionError("unreachable") from None  # abort raises
        meta = core.metadata(self.cfg.model_name, self.cfg.model_version)
        resp = pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for t in meta["inputs"]:
            resp.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        for t in meta["outputs"]:
            resp.outputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return resp

    # --- inference -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _counted(self) -> AsyncIterator[list[int]]:
        """Track one ModelInfer as in flight (the drain waits for it) and count it under the HTTP
        equivalent of its final status (the caller sets `[code]` for a refusal)."""
        s = self.server
        started = time.perf_counter()
        code = [HTTP_CODE[SC.OK]]
        s.inflight += 1
        s._idle.clear()
        s.metrics.inflight.inc()
        try:
            yield code
        except asyncio.CancelledError:
            code[0] = HTTP_CODE[SC.CANCELLED]
            raise
        except Exception:
            code[0] = HTTP_CODE[SC.INTERNAL]
            raise
        finally:
            s.inflight -= 1
            s.metrics.inflight.dec()
            if s.inflight == 0:
                s._idle.set()
            s.metrics.observe(code[0], time.perf_counter() - started, "grpc")

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        async with self._counted() as code:
            try:
                return await self._infer(request, context)
            except Refusal as r:
                refusal = r
            except Exception:
                log.exception("gRPC inference request failed")
                refusal = Refusal(SC.INTERNAL, "internal error while serving the request; see the server log")
            code[0] = refusal.http
        await context.abort(refusal.code, refusal.message)
        raise AssertionError("unreachable")  # abort raises

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        s = self.server
        self._authenticate(context)
        self._model(request.model_name, request.model_version)
        core = s.core
        if core is None:
            raise Refusal(SC.UNAVAILABLE, "the model is loading; retry when ServerReady says ready")
        if s.state == "draining":
            raise Refusal(SC.UNAVAILABLE, "the server is shutting down; retry (another replica will answer)")
        try:
            prepared = core.check(decode_inputs(request))
            names = core.outputs(requested_outputs(request) or None)
            outputs = await core.infer(prepared, names)
        except TensorError as exc:
            raise Refusal(SC.INVALID_ARGUMENT, str(exc)) from None
        except ProtocolError as exc:
            raise Refusal(_FROM_HTTP.get(exc.status, SC.INVALID_ARGUMENT), exc.message, exc.status) from None
        except QueueFull as exc:
            raise Refusal(SC.UNAVAILABLE, str(exc)) from None
        except ShuttingDown:
            raise Refusal(
                SC.UNAVAILABLE, "the server is shutting down; retry (another replica will answer)"
            ) from None
        return encode_response(
            self.cfg.model_name,
            self.cfg.model_version,
            request.id,
            outputs,
            core.output_types,
            raw=bool(request.raw_input_contents),
        )


def bind_address(host: str, port: int) -> str:
    """The address to bind, resolved by Python's resolver (gRPC binds in C, past any Python-level
    address mapping the platform installs, such as the local plane's per-pod loopback IPs)."""
    try:
        info = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        addr = str(info[0][4][0])
    except OSError:
        addr = host
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class GrpcFront:
    """The running gRPC server of one `Server`."""

    def __init__(self, server: Server, host: str, port: int) -> None:
        cfg = server.cfg
        self.address = bind_address(host, port)
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", cfg.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                # Two servers on one port would split the calls silently; a clash must be an error,
                # unless this is one of the supervisor's processes, which share the port on purpose.
                ("grpc.so_reuseport", 1 if is_child() else 0),
            ]
        )
        add_servicer(InferenceServicer(server), self.server)
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self.server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise WorkerError(
                REASON_INVALID_SERVE_CONFIG,
                f"grpcPort: cannot listen on {self.address} ({exc}); free the port, pick another grpcPort, "
                "or set grpcPort to null to serve REST only",
                EXIT_BAD_CONFIG,
            ) from None
        await self.server.start()
        log.info("gRPC (OIP v2, inference.GRPCInferenceService) listening on %s", self.address)

    def begin_drain(self, grace: float) -> None:
        """Stop taking calls now; the ones in progress get `grace` seconds (awaited by `stop`)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self.server.stop(grace))

    async def stop(self, grace: float = 0) -> None:
        self.begin_drain(grace)
        assert self._stopping is not None
        await self._stopping


async def start(server: Server, host: str) -> GrpcFront | None:
    """Start the gRPC front when `grpcPort` is set; None when it is not."""
    port = server.cfg.grpc_port
    if port is None:
        return None
    front = GrpcFront(server, host, port)
    await front.start()
    return front
