"""OpenAI's API on the wire: parse and check completion, chat and embedding requests, build responses.

Pure functions over dicts, no HTTP and no engine, so every refusal a client can meet is tested without
a server. Every refusal is an `ApiError` that becomes OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}` with a 4xx status: nothing a client sends may surface
as a 5xx. Fields are read strictly (a string where a number belongs is refused, never coerced), and a
field we do not implement is refused by name rather than silently ignored, except the few every client
sends with a neutral value (`logprobs: false`, `presence_penalty: 0`, `user`, ...).

Parameters follow OpenAI's reference (and vLLM where OpenAI is silent): `max_tokens` (chat also
`max_completion_tokens`), `stop` (a string or up to 4 strings), `temperature` 0..2 (0 is greedy),
`top_p` (0, 1], `seed`, `n`, `stream`, `stream_options.include_usage`, `presence_penalty` and
`frequency_penalty` -2..2, `logit_bias`; for completions also `echo` and a prompt given as a string,
strings, token ids or lists of token ids.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

# OpenAI's error types by status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",  # as OpenAI answers a bad key (code invalid_api_key)
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    500: "server_error",
    503: "service_unavailable",
}
MAX_STOP = 4  # OpenAI's limit on stop sequences
MAX_STOP_CHARS = 512


class ApiError(Exception):
    """A refused request: HTTP status, message naming the field, and OpenAI's `param` and `code`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_payload(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def sse(obj: Any) -> bytes:
    """One server-sent event as OpenAI frames it."""
    return b"data: " + dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(obj, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(obj).__name__}")
    return obj


# --- field readers ---------------------------------------------------------------------------------


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", param=param)


def _number(
    body: dict[str, Any], name: str, default: float, lo: float, hi: float, lo_open: bool = False
) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _bad(name, f"must be a number, got {json.dumps(v)[:40]}")
    if v < lo or v > hi or (lo_open and v == lo):
        raise _bad(name, f"must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {v:g}")
    return float(v)


def _int(body: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise _bad(name, f"must be an integer, got {json.dumps(v)[:40]}")
    if v < lo or (hi is not None and v > hi):
        raise _bad(name, f"must be >= {lo}" + (f" and <= {hi}" if hi is not None else "") + f", got {v}")
    return int(v)


def _bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(name, f"must be true or false, got {json.dumps(v)[:40]}")
    return v


def _stop(body: dict[str, Any]) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise _bad("stop", "must be a string or a list of strings")
    if len(items) > MAX_STOP:
        raise _bad("stop", f"at most {MAX_STOP} stop sequences, got {len(items)}")
    if any(len(s) > MAX_STOP_CHARS for s in items):
        raise _bad("stop", f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
    return [s for s in items if s]


def _logit_bias(body: dict[str, Any]) -> dict[int, float]:
    v = body.get("logit_bias")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad("logit_bias", "must be an object mapping token ids to a bias in -100..100")
    out: dict[int, float] = {}
    for k, b in v.items():
        if not (isinstance(k, str) and k.lstrip("-").isdigit()):
            raise _bad("logit_bias", f"keys are token ids as strings, got {k!r:.40}")
        if isinstance(b, bool) or not isinstance(b, int | float) or not -100 <= b <= 100:
            raise _bad("logit_bias", f"the bias of token {k} must be a number in -100..100")
        out[int(k)] = float(b)
    return out


def _refuse_unsupported(body: dict[str, Any], neutral: dict[str, tuple[Any, ...]]) -> None:
    """Fields we do not implement: accepted only with the value that means 'off'."""
    for name, allowed in neutral.items():
        if name in body and body[name] not in allowed:
            raise _bad(name, f"is not supported by this server; leave it out (or send {allowed[0]!r})")


@dataclass
class Sampling:
    """What one request asks of the decoder (shared by all its choices)."""

    max_tokens: int | None  # None: the server's default, within the context
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False


@dataclass
class GenerationRequest:
    """A parsed /v1/completions or /v1/chat/completions request."""

    kind: str  # "completion" | "chat"
    model: str
    sampling: Sampling
    n: int
    stream: bool
    include_usage: bool
    prompts: list[str | list[int]] = field(default_factory=list)  # completion
    messages: list[dict[str, Any]] = field(default_factory=list)  # chat
    echo: bool = False
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


def _model(body: dict[str, Any]) -> str:
    m = body.get("model")
    if not isinstance(m, str) or not m:
        raise _bad("model", "is required: the name GET /v1/models lists")
    return m


def _common(body: dict[str, Any], max_n: int, chat: bool) -> tuple[Sampling, int, bool, bool]:
    max_tokens = _int(body, "max_tokens", 1)
    if chat:
        mct = _int(body, "max_completion_tokens", 1)
        if mct is not None:
            max_tokens = mct if max_tokens is None else min(max_tokens, mct)
    sampling = Sampling(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        seed=_int(body, "seed", -(2**63), 2**64 - 1),
        stop=_stop(body),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        logit_bias=_logit_bias(body),
        ignore_eos=_bool(body, "ignore_eos"),
    )
    n = _int(body, "n", 1, max_n)
    n = 1 if n is None else n
    best_of = _int(body, "best_of", 1)
    if best_of is not None and best_of != n:
        raise _bad("best_of", f"is not supported beyond n; leave it out or send n ({n})")
    stream = _bool(body, "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict):
            raise _bad("stream_options", 'must be an object such as {"include_usage": true}')
        if not stream:
            raise _bad("stream_options", "is only allowed when stream is true")
        include_usage = _bool(opts, "include_usage")
    return sampling, n, stream, include_usage


def parse_completion(body: dict[str, Any], max_n: int) -> GenerationRequest:
    model = _model(body)
    _refuse_unsupported(body, {"logprobs": (None, 0, False), "suffix": (None, "")})
    prompt = body.get("prompt")
    prompts: list[str | list[int]]
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    elif isinstance(prompt, list) and prompt and all(_is_token(t) for t in prompt):
        prompts = [list(prompt)]
    elif (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt)
    ):
        prompts = [list(p) for p in prompt]
    elif prompt is None:
        raise _bad("prompt", "is required: a string, a list of strings, or token ids")
    else:
        raise _bad(
            "prompt", "must be a non-empty string, list of strings, list of token ids or list of lists"
        )
    if len(prompts) > 64:
        raise _bad("prompt", f"at most 64 prompts per request, got {len(prompts)}")
    sampling, n, stream, usage = _common(body, max_n, chat=False)
    if len(prompts) * n > 128:
        raise _bad("n", f"{len(prompts)} prompts x n={n} is over 128 choices per request")
    return GenerationRequest(
        kind="completion",
        model=model,
        sampling=sampling,
        n=n,
        stream=stream,
        include_usage=usage,
        prompts=prompts,
        echo=_bool(body, "echo"),
    )


def _is_token(t: Any) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31


ROLES = ("system", "developer", "user", "assistant", "tool")


def _message_content(i: int, content: Any, role: str) -> str:
    if content is None:
        if role == "assistant":
            return ""
        raise _bad(f"messages[{i}].content", "is required")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            if not isinstance(part, dict):
                raise _bad(where, 'must be an object such as {"type": "text", "text": "..."}')
            kind = part.get("type")
            if kind != "text":
                raise _bad(
                    f"{where}.type", f"{json.dumps(kind)[:30]} is not supported: this model reads text only"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"{where}.text", "must be a string")
            parts.append(text)
        return "".join(parts)
    raise _bad(f"messages[{i}].content", "must be a string or a list of text parts")


def parse_chat(body: dict[str, Any], max_n: int) -> GenerationRequest:
    model = _model(body)
    _refuse_unsupported(
        body,
        {
            "logprobs": (None, False),
            "top_logprobs": (None, 0),
            "tools": (None, []),
            "functions": (None, []),
            "tool_choice": (None, "none", "auto"),
            "function_call": (None, "none", "auto"),
        },
    )
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type") != "text"):
        raise _bad("response_format", 'only {"type": "text"} is supported (no JSON mode or schema)')
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("messages", "is required: a non-empty list of {role, content}")
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}]", "must be an object with role and content")
        role = m.get("role")
        if role not in ROLES:
            raise _bad(
                f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, got {json.dumps(role)[:30]}"
            )
        msg: dict[str, Any] = {"role": role, "content": _message_content(i, m.get("content"), role)}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        messages.append(msg)
    sampling, n, stream, usage = _common(body, max_n, chat=True)
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise _bad("chat_template_kwargs", "must be an object")
    cont = _bool(body, "continue_final_message")
    if cont and messages[-1]["role"] != "assistant":
        raise _bad("continue_final_message", "needs the last message to be the assistant's")
    return GenerationRequest(
        kind="chat",
        model=model,
        sampling=sampling,
        n=n,
        stream=stream,
        include_usage=usage,
        messages=messages,
        add_generation_prompt=_bool(body, "add_generation_prompt", not cont),
        continue_final_message=cont,
        chat_template_kwargs=dict(kwargs or {}),
    )


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]
    base64: bool
    dimensions: int | None


def parse_embeddings(body: dict[str, Any]) -> EmbeddingRequest:
    model = _model(body)
    raw = body.get("input")
    inputs: list[str | list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(p, str) for p in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(_is_token(t) for t in raw):
        inputs = [list(raw)]
    elif (
        isinstance(raw, list)
        and raw
        and all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in raw)
    ):
        inputs = [list(p) for p in raw]
    else:
        raise _bad("input", "must be a non-empty string, list of strings, or token ids")
    if len(inputs) > 2048:
        raise _bad("input", f"at most 2048 inputs per request, got {len(inputs)}")
    fmt = body.get("encoding_format")
    if fmt not in (None, "float", "base64"):
        raise _bad("encoding_format", f"must be float or base64, got {json.dumps(fmt)[:30]}")
    return EmbeddingRequest(model, inputs, fmt == "base64", _int(body, "dimensions", 1))


# --- responses -------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
