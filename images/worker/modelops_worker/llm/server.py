"""The HTTP server of `modelops-worker serve-llm`: OpenAI's API on aiohttp, over a batching engine.

Life of a process: listen at once (live answers, ready says 503 while loading), check the digest and
load the model on a thread, then serve. A model that is missing, has another digest or does not load
ends the process with exit 65 and its reason in the termination message; it is never ready.

Every request is parsed by `protocol` (refusals are 4xx in OpenAI's error shape naming the `param`),
its prompt rendered (chat template) and tokenized, checked against the limits of the config (prompt
tokens, `max_tokens`, the context: 400 `context_length_exceeded`; body size: 413), then each of its
choices becomes a `Sequence` the engine decodes together with every other request's. A full queue is
429 with Retry-After; a draining server 503. With `stream: true` the answer is server-sent events as
OpenAI sends them: one `data: {chunk}` per delta, a last chunk per choice carrying `finish_reason`,
the usage chunk when `stream_options.include_usage`, then `data: [DONE]`.

A client that goes away (mid-stream, or while a non-streamed answer is generated) cancels its
sequences at the engine's next step and is counted under code 499, never as a server error.

On SIGTERM the server drains: ready turns 503, the listening socket closes, every generation already
running (streams included) finishes, and the process exits 0 when none is left or after
`drainSeconds`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import signal
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from modelops.api.llmconfig import (
    CODE_CLIENT_CLOSED,
    ERROR_CONTEXT_LENGTH_EXCEEDED,
    ERROR_INVALID_API_KEY,
    ERROR_MODEL_NOT_FOUND,
    ERROR_OVERLOADED,
    ERROR_SHUTTING_DOWN,
    PATH_CHAT_COMPLETIONS,
    PATH_COMPLETIONS,
    PATH_EMBEDDINGS,
    PATH_LLM_HEALTH,
    PATH_LLM_LIVE,
    PATH_LLM_METRICS,
    PATH_LLM_READY,
    PATH_MODELS,
    LLMServeConfig,
)
from modelops_worker.errors import WorkerError
from modelops_worker.llm import protocol
from modelops_worker.llm.chat import TemplateError
from modelops_worker.llm.engine import (
    EngineStopped,
    FinishEvent,
    Overloaded,
    Sequence,
    TextStream,
    TokenEvent,
)
from modelops_worker.llm.load import Loaded
from modelops_worker.llm.metrics import CONTENT_TYPE, LLMMetrics
from modelops_worker.llm.protocol import ApiError, GenerationRequest
from modelops_worker.serve.auth import TokenFile

log = logging.getLogger("modelops_worker.llm")
http_log = logging.getLogger("modelops_worker.llm.http")


class _QuietDisconnects(logging.Filter):
    """aiohttp logs a handler that ends because its client left with a traceback at ERROR; that is
    the client's doing (counted under 499), so it becomes a DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ClientGone | ConnectionResetError):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = record.exc_text = None
        return True


JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({PATH_LLM_LIVE, PATH_LLM_READY, PATH_LLM_HEALTH, PATH_LLM_METRICS})
# How often a non-streamed generation checks that its client is still there.
_DISCONNECT_POLL = 0.1


class ClientGone(Exception):
    """The client closed the connection before its answer was complete."""


def _error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=protocol.dumps(protocol.error_payload(status, message, param, code)),
        content_type=JSON,
        headers=headers,
    )


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=protocol.dumps(obj), content_type=JSON)


http_log.addFilter(_QuietDisconnects())


class Server:
    def __init__(self, cfg: LLMServeConfig, tokens: TokenFile | None = None) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self.metrics = LLMMetrics(cfg.model_name, cfg.model_version)
        self.loaded: Loaded | None = None
        self.state = "loading"
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.created = protocol.now()
        self._embed_lock = asyncio.Lock()
        self.app = web.Application(
            client_max_size=cfg.max_body_bytes, middlewares=[self._authenticate, self._errors]
        )
        r = self.app.router
        r.add_get(PATH_LLM_LIVE, self.live)
        r.add_get(PATH_LLM_READY, self.ready)
        r.add_get(PATH_LLM_HEALTH, self.ready)
        r.add_get(PATH_LLM_METRICS, self.prometheus)
        r.add_get(PATH_MODELS, self.models)
        r.add_get(PATH_MODELS + "/{model:.+}", self.model)
        r.add_post(PATH_COMPLETIONS, self.completions)
        r.add_post(PATH_CHAT_COMPLETIONS, self.chat_completions)
        r.add_post(PATH_EMBEDDINGS, self.embeddings)
        self.app.on_response_prepare.append(self._sample_gauges)

    async def _sample_gauges(self, request: web.Request, response: web.StreamResponse) -> None:
        gen = self.loaded.generator if self.loaded else None
        if gen is not None:
            self.metrics.running.set(gen.running_count)
            self.metrics.waiting.set(gen.waiting_count)

    # --- lifecycle -------------------------------------------------------------------------------

    def serve_model(self, loaded: Loaded) -> None:
        self.loaded = loaded
        if loaded.generator is not None:
            loaded.generator.on_batch = self.metrics.batch_size.observe
            loaded.generator.start()
            ctx = loaded.generator.info.context_length
        else:
            ctx = loaded.embedder.info.context_length
        self.metrics.describe(loaded.digest, self.cfg.format, loaded.engine_name, ctx)
        self.state = "ready"

    async def drain(self, timeout: float) -> bool:
        self.state = "draining"
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        if self.loaded is not None and self.loaded.generator is not None:
            self.loaded.generator.stop()

    # --- middleware --------------------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.tokens is None or request.path in OPEN_PATHS:
            return await handler(request)
        if self.tokens.accepts(request.headers.get("Authorization")):
            return await handler(request)
        given = "Authorization" in request.headers
        if request.method == "POST":
            self.metrics.observe(401, 0.0)
        return _error(
            401,
            "the bearer token is not accepted"
            if given
            else "this server needs a bearer token: send Authorization: Bearer <token> (the openai client's api_key)",
            code=ERROR_INVALID_API_KEY,
            headers={"WWW-Authenticate": 'Bearer realm="modelops"'},
        )

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.reason
            if exc.status == 404:
                message = (
                    f"no such endpoint: {request.method} {request.path} (this server answers GET {PATH_MODELS}, "
                    f"POST {PATH_COMPLETIONS}, {PATH_CHAT_COMPLETIONS}, {PATH_EMBEDDINGS})"
                )
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            return _error(exc.status, message)

    # --- health, metadata --------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return _json({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        if self.state == "ready":
            return _json({"ready": True})
        why = "the model is loading" if self.state == "loading" else "the server is shutting down"
        return _json({"ready": False, "error": why}, 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        gen = self.loaded.generator if self.loaded else None
        if gen is not None:
            self.metrics.running.set(gen.running_count)
            self.metrics.waiting.set(gen.waiting_count)
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    def _model_card(self, name: str) -> dict[str, Any]:
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "modelops",
            "root": self.cfg.model_version_name or self.cfg.model_name,
            "parent": None,
        }
        if self.loaded is not None:
            info = (
                self.loaded.generator.info if self.loaded.generator is not None else self.loaded.embedder.info
            )
            card["max_model_len"] = info.context_length
        return card

    async def models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [self._model_card(n) for n in self.cfg.served_names]})

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self.cfg.served_names:
            return self._unknown_model(name)
        return _json(self._model_card(name))

    def _unknown_model(self, name: str) -> web.Response:
        return _error(
            404,
            f"the model {name!r:.100} does not exist here; this server serves "
            + ", ".join(repr(n) for n in self.cfg.served_names)
            + f" (GET {PATH_MODELS})",
            param="model",
            code=ERROR_MODEL_NOT_FOUND,
        )

    # --- requests ------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        limit = self.cfg.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(
                413,
                f"the request body has {request.content_length} bytes, over the limit of {limit} (maxBodyBytes)",
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                413, f"the request body is over the limit of {limit} bytes (maxBodyBytes)"
            ) from None
        except RequestPayloadError as exc:
            raise ApiError(400, f"the request body cannot be read: {exc}"[:300]) from None
        except (ConnectionResetError, asyncio.IncompleteReadError) as exc:
            raise ClientGone() from exc
        return protocol.parse_json(raw)

    def _ready_generator(self) -> Any:
        if self.state == "draining":
            raise ApiError(
                503,
                "the server is shutting down; retry (another replica will answer)",
                code=ERROR_SHUTTING_DOWN,
            )
        if self.loaded is None:
            raise ApiError(503, f"the model is loading; retry when GET {PATH_LLM_READY} answers 200")
        return self.loaded.generator

    async def _count(
        self, request: web.Request, handle: Callable[[web.Request, float], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        self.inflight += 1
        self._idle.clear()
        code = 500
        try:
            resp = await handle(request, started)
            code = resp.status
            if getattr(resp, "_modelops_code", None):
                code = resp._modelops_code  # type: ignore[attr-defined]
            return resp
        except ApiError as exc:
            code = exc.status
            headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
            return _error(exc.status, exc.message, exc.param, exc.code, headers)
        except ClientGone:
            code = CODE_CLIENT_CLOSED
            raise
        except Exception:
            log.exception("request failed")
            return _error(500, "internal error while serving the request; see the server log")
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()
            self.metrics.observe(code, time.perf_counter() - started)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._count(request, self._completions)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._count(request, self._chat)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._count(request, self._embeddings)

    async def _completions(self, request: web.Request, started: float) -> web.StreamResponse:
        gen = self._ready_generator()
        body = await self._body(request)
        req = protocol.parse_completion(body, self.cfg.max_n)
        if req.model not in self.cfg.served_names:
            return self._unknown_model(req.model)
        if gen is None:
            raise ApiError(
                400, "this server serves an embedding model: use POST /v1/embeddings", param="model"
            )
        prompts: list[list[int]] = []
        texts: list[str] = []
        for p in req.prompts:
            if isinstance(p, str):
                prompts.append(gen.tokenize(p, add_special=True))
                texts.append(p)
            else:
                bad = next((t for t in p if not gen.valid_token(t)), None)
                if bad is not None:
                    raise ApiError(
                        400,
                        f"prompt: token id {bad} is outside the vocabulary (0..{gen.info.vocab_size - 1})",
                        param="prompt",
                    )
                prompts.append(list(p))
                texts.append(
                    b"".join(gen.piece(t) for t in p).decode("utf-8", errors="replace") if req.echo else ""
                )
        return await self._generate(request, started, req, prompts, texts, [])

    async def _chat(self, request: web.Request, started: float) -> web.StreamResponse:
        gen = self._ready_generator()
        body = await self._body(request)
        req = protocol.parse_chat(body, self.cfg.max_n)
        if req.model not in self.cfg.served_names:
            return self._unknown_model(req.model)
        if gen is None:
            raise ApiError(
                400, "this server serves an embedding model: use POST /v1/embeddings", param="model"
            )
        template = gen.info.chat_template
        try:
            text = template.render(
                req.messages, req.add_generation_prompt, req.continue_final_message, req.chat_template_kwargs
            )
        except TemplateError as exc:
            raise ApiError(
                400, f"messages: the model's chat template refused them: {exc}", param="messages"
            ) from None
        prompt = gen.tokenize(text, add_special=False)
        return await self._generate(request, started, req, [prompt], [""], template.stops)

    def _limits(self, req: GenerationRequest, prompt: list[int], ctx: int) -> int:
        """The max_tokens of a sequence; raises 400 when the prompt or the request is over a limit."""
        cfg = self.cfg
        if not prompt:
            raise ApiError(400, "the prompt is empty after tokenization", param="prompt")
        max_prompt = min(cfg.max_prompt_tokens or ctx - 1, ctx - 1)
        if len(prompt) > max_prompt:
            raise ApiError(
                400,
                f"the prompt has {len(prompt)} tokens, over the limit of {max_prompt} "
                f"(this model's context is {ctx} tokens); shorten it",
                param="messages" if req.kind == "chat" else "prompt",
                code=ERROR_CONTEXT_LENGTH_EXCEEDED,
            )
        asked = req.sampling.max_tokens
        if asked is None:
            return max(1, min(cfg.default_max_tokens, ctx - len(prompt)))
        if asked > cfg.max_tokens_limit:
            raise ApiError(
                400,
                f"max_tokens: {asked} is over this server's limit of {cfg.max_tokens_limit}",
                param="max_tokens",
            )
        if len(prompt) + asked > ctx:
            raise ApiError(
                400,
                f"this model's maximum context length is {ctx} tokens; however you requested "
                f"{len(prompt) + asked} tokens ({len(prompt)} in the prompt, {asked} for the completion); "
                "reduce the prompt or max_tokens",
                param="max_tokens",
                code=ERROR_CONTEXT_LENGTH_EXCEEDED,
            )
        return asked

    async def _generate(
        self,
        request: web.Request,
        started: float,
        req: GenerationRequest,
        prompts: list[list[int]],
        echo_texts: list[str],
        extra_stops: list[str],
    ) -> web.StreamResponse:
        gen = self.loaded.generator  # type: ignore[union-attr]
        ctx = gen.info.context_length
        budgets = [self._limits(req, p, ctx) for p in prompts]
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[Sequence, TokenEvent | FinishEvent]] = asyncio.Queue()
        seqs: list[Sequence] = []
        base_seed = req.sampling.seed
        for pi, (p, budget) in enumerate(zip(prompts, budgets, strict=True)):
            for j in range(req.n):
                seed = (base_seed + j) % 2**32 if base_seed is not None else random.getrandbits(32)
                seqs.append(Sequence(loop, events, p, req.sampling, budget, seed, index=pi * req.n + j))
        try:
            gen.submit(seqs)
        except Overloaded as exc:
            raise ApiError(429, str(exc), code=ERROR_OVERLOADED) from None
        except EngineStopped:
            raise ApiError(503, "the server is shutting down; retry", code=ERROR_SHUTTING_DOWN) from None
        self.metrics.prompt_tokens.inc(sum(len(p) for p in prompts))
        stops = req.sampling.stop + [s for s in extra_stops if s not in req.sampling.stop]
        run = _Run(self, req, seqs, events, stops, started, echo_texts)
        try:
            if req.stream:
                return await run.stream(request)
            return await run.collect(request)
        finally:
            for s in seqs:
                s.cancel()

    async def _embeddings(self, request: web.Request, started: float) -> web.StreamResponse:
        if self.state == "draining":
            raise ApiError(503, "the server is shutting down; retry", code=ERROR_SHUTTING_DOWN)
        if self.loaded is None:
            raise ApiError(503, f"the model is loading; retry when GET {PATH_LLM_READY} answers 200")
        body = await self._body(request)
        req = protocol.parse_embeddings(body)
        if req.model not in self.cfg.served_names:
            return self._unknown_model(req.model)
        emb = self.loaded.embedder
        if emb is None:
            raise ApiError(
                400,
                "this server serves a generation model, not an embedding model: use /v1/completions or "
                "/v1/chat/completions (serve an embedding model with embeddings: true)",
                param="model",
            )
        if req.dimensions is not None and req.dimensions != emb.info.embedding_dimensions:
            raise ApiError(
                400,
                f"dimensions: this model's embeddings have {emb.info.embedding_dimensions} dimensions; "
                "leave dimensions out",
                param="dimensions",
            )
        try:
            batch = emb.prepare(req.inputs)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="input", code=ERROR_CONTEXT_LENGTH_EXCEEDED) from None
        async with self._embed_lock:
            vectors, tokens = await asyncio.get_running_loop().run_in_executor(None, emb.embed, batch)
        self.metrics.prompt_tokens.inc(tokens)
        data = []
        for i, vec in enumerate(vectors):
            value: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if req.base64 else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        return _json(
            {
                "object": "list",
                "data": data,
                "model": req.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


class _Run:
    """One generation request's choices, read from the engine and written to the client."""

    def __init__(
        self,
        server: Server,
        req: GenerationRequest,
        seqs: list[Sequence],
        events: asyncio.Queue[tuple[Sequence, TokenEvent | FinishEvent]],
        stops: list[str],
        started: float,
        echo_texts: list[str],
    ) -> None:
        self.server = server
        self.metrics = server.metrics
        self.req = req
        self.seqs = seqs
        self.events = events
        self.started = started
        self.texts = {s: TextStream(stops) for s in seqs}
        self.finish: dict[Sequence, str] = {}
        self.last_token: dict[Sequence, float] = {}
        self.counted: dict[Sequence, int] = {}
        self.echo = {s: echo_texts[s.index // req.n] for s in seqs} if req.echo else {}
        self.id = protocol.new_id("chatcmpl" if req.kind == "chat" else "cmpl")
        self.created = protocol.now()
        self.prompt_tokens = sum(len(seqs[i * req.n].prompt) for i in range(len(seqs) // req.n))

    async def _next(self, request: web.Request) -> tuple[Sequence, TokenEvent | FinishEvent]:
        while True:
            try:
                return await asyncio.wait_for(self.events.get(), _DISCONNECT_POLL)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    raise ClientGone() from None

    def _on_event(self, seq: Sequence, event: TokenEvent | FinishEvent) -> str:
        """Text to send for this event ('' if none); records finishes."""
        if isinstance(event, TokenEvent):
            now = time.perf_counter()
            last = self.last_token.get(seq)
            if last is None:
                self.metrics.ttft.observe(now - self.started)
            else:
                self.metrics.itl.observe(now - last)
            self.last_token[seq] = now
            self.metrics.generation_tokens.inc()
            stream = self.texts[seq]
            if not stream.stopped:  # usage counts the tokens up to the one that completed a stop string
                self.counted[seq] = self.counted.get(seq, 0) + 1
            delta = stream.push(event.piece)
            if stream.stopped and seq not in self.finish:
                self.finish[seq] = "stop"
                seq.cancel()
            return delta
        if seq not in self.finish:
            if event.reason == "error":
                raise RuntimeError(f"generation failed: {event.error}")
            self.finish[seq] = "stop" if event.reason in ("stop", "cancelled") else event.reason
        self.metrics.e2e.observe(time.perf_counter() - self.started)
        return self.texts[seq].flush()

    def _done(self, finished: set[Sequence]) -> bool:
        return len(finished) == len(self.seqs)

    def _usage(self) -> dict[str, int]:
        return protocol.usage(self.prompt_tokens, sum(self.counted.values()))

    async def collect(self, request: web.Request) -> web.Response:
        finished: set[Sequence] = set()
        parts: dict[Sequence, list[str]] = {s: [self.echo.get(s, "")] for s in self.seqs}
        while not self._done(finished):
            seq, event = await self._next(request)
            if seq in finished:
                continue
            parts[seq].append(self._on_event(seq, event))
            if isinstance(event, FinishEvent):
                finished.add(seq)
        choices = []
        for s in self.seqs:
            text = "".join(parts[s])
            if self.req.kind == "chat":
                choices.append(
                    {
                        "index": s.index,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": self.finish[s],
                    }
                )
            else:
                choices.append(
                    {"index": s.index, "text": text, "logprobs": None, "finish_reason": self.finish[s]}
                )
        return _json(
            {
                "id": self.id,
                "object": "chat.completion" if self.req.kind == "chat" else "text_completion",
                "created": self.created,
                "model": self.req.model,
                "choices": choices,
                "usage": self._usage(),
                "system_fingerprint": None,
            }
        )

    def _chunk(
        self, seq: Sequence | None, text: str | None, finish: str | None, first: bool = False
    ) -> dict[str, Any]:
        choices: list[dict[str, Any]] = []
        if seq is not None:
            if self.req.kind == "chat":
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                if text is not None:
                    delta["content"] = text
                choices.append(
                    {"index": seq.index, "delta": delta, "logprobs": None, "finish_reason": finish}
                )
            else:
                choices.append(
                    {"index": seq.index, "text": text or "", "logprobs": None, "finish_reason": finish}
                )
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.req.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.req.model,
            "choices": choices,
            "system_fingerprint": None,
        }
        if self.req.include_usage:
            chunk["usage"] = None
        return chunk

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        if self.server.state == "draining":
            resp.force_close()
        try:
            await resp.prepare(request)
            if self.req.kind == "chat":
                await resp.write(
                    b"".join(protocol.sse(self._chunk(s, "", None, first=True)) for s in self.seqs)
                )
            elif self.req.echo:
                await resp.write(
                    b"".join(protocol.sse(self._chunk(s, self.echo[s], None)) for s in self.seqs)
                )
            finished: set[Sequence] = set()
            while not self._done(finished):
                seq, event = await self._next(request)
                if seq in finished:
                    continue
                try:
                    text = self._on_event(seq, event)
                except RuntimeError as exc:
                    log.error("%s", exc)
                    err = protocol.error_payload(500, "generation failed on the server; see the server log")
                    await resp.write(protocol.sse(err) + protocol.SSE_DONE)
                    resp._modelops_code = 500  # type: ignore[attr-defined]
                    return resp
                out = b""
                if text:
                    out += protocol.sse(self._chunk(seq, text, None))
                ended = isinstance(event, FinishEvent) or (seq in self.finish and self.texts[seq].stopped)
                if ended and seq not in finished:
                    finished.add(seq)
                    out += protocol.sse(
                        self._chunk(seq, None if self.req.kind == "chat" else "", self.finish[seq])
                    )
                if out:
                    await resp.write(out)
            tail = b""
            if self.req.include_usage:
                usage_chunk = self._chunk(None, None, None)
                usage_chunk["usage"] = self._usage()
                tail += protocol.sse(usage_chunk)
            await resp.write(tail + protocol.SSE_DONE)
            await resp.write_eof()
        except (ConnectionResetError, ClientGone) as exc:
            raise ClientGone() from exc
        return resp


async def run(
    cfg: LLMServeConfig, host: str, load: Callable[[LLMServeConfig], Loaded], tokens: TokenFile | None = None
) -> int:
    """Serve until SIGTERM/SIGINT; the exit code. Raises WorkerError when the model cannot load."""
    server = Server(cfg, tokens)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False, logger=http_log)
    await runner.setup()
    site = web.TCPSite(runner, host, cfg.port, reuse_address=True, backlog=1024)
    await site.start()
    log.info("listening on %s:%d for model %s", host, cfg.port, cfg.model_name)
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
        log.info(
            "ready: %s and %s for %s", PATH_CHAT_COMPLETIONS, PATH_COMPLETIONS, ", ".join(cfg.served_names)
        )
        await stopping
        log.info(
            "SIGTERM: draining up to %.0fs (%d request(s) in flight)", cfg.drain_seconds, server.inflight
        )
        server.state = "draining"
        await site.stop()
        if await server.drain(cfg.drain_seconds):
            log.info("drained; exiting")
        else:
            log.warning(
                "%d request(s) still in flight after %.0fs; exiting", server.inflight, cfg.drain_seconds
            )
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        server.close()
        await runner.cleanup()
