"""`modelops-worker serve-llm` on the wire, with raw HTTP: OpenAI's error shape and status codes for
many malformed requests (a client's mistake is never 5xx), SSE framing byte for byte, bearer auth,
limits, a client leaving mid-stream, concurrent requests batched into one engine step, the metrics
contract, a full queue, a chat template override, SIGTERM draining a running stream, and an artifact
with another digest never served."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmhelpers import GEMMA, TOKEN, LLMServer, Model

from modelops.api.llmconfig import (
    METRIC_LLM_BATCH_SIZE,
    METRIC_LLM_E2E,
    METRIC_LLM_GENERATION_TOKENS,
    METRIC_LLM_ITL,
    METRIC_LLM_PROMPT_TOKENS,
    METRIC_LLM_REQUESTS,
    METRIC_LLM_RUNNING,
    METRIC_LLM_TTFT,
    METRIC_LLM_WAITING,
)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def assert_error(
    r: requests.Response, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


def msg(text: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


BAD_REQUESTS: list[tuple[str, str, Any, int, str | None, str | None]] = [
    ("not json", CHAT, b"{not json", 400, None, None),
    ("a json array", CHAT, [1, 2], 400, None, None),
    ("empty body", CHAT, b"", 400, None, None),
    ("no model", CHAT, {"messages": msg()}, 400, "model", None),
    ("unknown model", CHAT, {"model": "gpt-4", "messages": msg()}, 404, "model", "model_not_found"),
    ("no messages", CHAT, {"model": GEMMA}, 400, "messages", None),
    ("empty messages", CHAT, {"model": GEMMA, "messages": []}, 400, "messages", None),
    (
        "bad role",
        CHAT,
        {"model": GEMMA, "messages": [{"role": "robot", "content": "x"}]},
        400,
        "messages[0].role",
        None,
    ),
    (
        "content a number",
        CHAT,
        {"model": GEMMA, "messages": [{"role": "user", "content": 5}]},
        400,
        "messages[0].content",
        None,
    ),
    (
        "image part",
        CHAT,
        {
            "model": GEMMA,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        },
        400,
        "messages[0].content[0].type",
        None,
    ),
    (
        "temperature a string",
        CHAT,
        {"model": GEMMA, "messages": msg(), "temperature": "hot"},
        400,
        "temperature",
        None,
    ),
    (
        "temperature too high",
        CHAT,
        {"model": GEMMA, "messages": msg(), "temperature": 2.5},
        400,
        "temperature",
        None,
    ),
    ("top_p zero", CHAT, {"model": GEMMA, "messages": msg(), "top_p": 0}, 400, "top_p", None),
    ("n zero", CHAT, {"model": GEMMA, "messages": msg(), "n": 0}, 400, "n", None),
    ("n over maxN", CHAT, {"model": GEMMA, "messages": msg(), "n": 5}, 400, "n", None),
    ("max_tokens zero", CHAT, {"model": GEMMA, "messages": msg(), "max_tokens": 0}, 400, "max_tokens", None),
    (
        "max_tokens a bool",
        CHAT,
        {"model": GEMMA, "messages": msg(), "max_tokens": True},
        400,
        "max_tokens",
        None,
    ),
    (
        "max_tokens over the cap",
        CHAT,
        {"model": GEMMA, "messages": msg(), "max_tokens": 300},
        400,
        "max_tokens",
        None,
    ),
    ("stop of five", CHAT, {"model": GEMMA, "messages": msg(), "stop": list("abcde")}, 400, "stop", None),
    ("stop a number", CHAT, {"model": GEMMA, "messages": msg(), "stop": 3}, 400, "stop", None),
    ("seed a float", CHAT, {"model": GEMMA, "messages": msg(), "seed": 1.5}, 400, "seed", None),
    ("logprobs", CHAT, {"model": GEMMA, "messages": msg(), "logprobs": True}, 400, "logprobs", None),
    ("tools", CHAT, {"model": GEMMA, "messages": msg(), "tools": [{"type": "function"}]}, 400, "tools", None),
    (
        "json mode",
        CHAT,
        {"model": GEMMA, "messages": msg(), "response_format": {"type": "json_object"}},
        400,
        "response_format",
        None,
    ),
    (
        "stream_options without stream",
        CHAT,
        {"model": GEMMA, "messages": msg(), "stream_options": {"include_usage": True}},
        400,
        "stream_options",
        None,
    ),
    ("stream a string", CHAT, {"model": GEMMA, "messages": msg(), "stream": "yes"}, 400, "stream", None),
    (
        "prompt over maxPromptTokens",
        CHAT,
        {"model": GEMMA, "messages": msg("hello " * 500)},
        400,
        "messages",
        "context_length_exceeded",
    ),
    (
        "prompt + max_tokens over the context",
        COMPLETIONS,
        {"model": GEMMA, "prompt": "hello " * 350, "max_tokens": 200},
        400,
        "max_tokens",
        "context_length_exceeded",
    ),
    ("no prompt", COMPLETIONS, {"model": GEMMA}, 400, "prompt", None),
    ("prompt a dict", COMPLETIONS, {"model": GEMMA, "prompt": {"a": 1}}, 400, "prompt", None),
    (
        "token out of vocabulary",
        COMPLETIONS,
        {"model": GEMMA, "prompt": [1, 2, 999999999]},
        400,
        "prompt",
        None,
    ),
    ("suffix", COMPLETIONS, {"model": GEMMA, "prompt": "x", "suffix": "y"}, 400, "suffix", None),
    (
        "logit_bias bad key",
        COMPLETIONS,
        {"model": GEMMA, "prompt": "x", "logit_bias": {"abc": 1}},
        400,
        "logit_bias",
        None,
    ),
    ("embeddings on a generator", "/v1/embeddings", {"model": GEMMA, "input": "x"}, 400, "model", None),
]


@pytest.mark.parametrize(
    ("what", "path", "body", "status", "param", "code"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_get_openai_errors_naming_the_field(
    gemma_server: LLMServer, what: str, path: str, body: Any, status: int, param: str | None, code: str | None
) -> None:
    assert_error(gemma_server.post(path, body), status, param, code)


def test_http_level_mistakes_are_4xx_in_the_same_shape(gemma_server: LLMServer) -> None:
    assert_error(gemma_server.post(CHAT, b"x" * (65 * 1024)), 413)
    assert_error(requests.get(gemma_server.url(CHAT), headers=gemma_server.headers, timeout=10), 405)
    assert_error(requests.get(gemma_server.url("/v1/nothing"), headers=gemma_server.headers, timeout=10), 404)
    assert_error(
        requests.get(gemma_server.url("/v1/models/nope"), headers=gemma_server.headers, timeout=10),
        404,
        "model",
        "model_not_found",
    )


def test_bearer_auth_guards_the_api_but_not_probes_or_metrics(gemma_server: LLMServer) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        r = requests.post(
            gemma_server.url(CHAT), json={"model": GEMMA, "messages": msg()}, headers=headers, timeout=10
        )
        assert_error(r, 401, code="invalid_api_key")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(requests.get(gemma_server.url("/v1/models"), headers=headers, timeout=10), 401)
    for path in ("/v2/health/live", "/v2/health/ready", "/health", "/metrics"):
        assert requests.get(gemma_server.url(path), timeout=10).status_code == 200, path
    # The second token of the file works too.
    ok = requests.get(
        gemma_server.url("/v1/models"), headers={"Authorization": "Bearer other-token"}, timeout=10
    )
    assert ok.status_code == 200


_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=4),
    st.lists(st.integers(-1, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_messages = st.one_of(
    _value,
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "bot", 3]), "content": _value}
        ),
        max_size=2,
    ),
)
_chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([GEMMA, "gemma", "other", None, 7])},
    optional={
        "messages": _messages,
        "max_tokens": st.one_of(st.integers(-2, 3), _value),
        "temperature": _value,
        "top_p": _value,
        "n": st.one_of(st.integers(-1, 2), _value),
        "stop": _value,
        "seed": _value,
        "stream": st.booleans(),
        "logit_bias": _value,
        "presence_penalty": _value,
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=_chat_bodies)
def test_generated_malformed_chat_requests_never_get_a_5xx(
    gemma_server: LLMServer, body: dict[str, Any]
) -> None:
    r = gemma_server.post(CHAT, body)
    assert r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code >= 400:
        assert_error(r, r.status_code)


def _events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n"), raw[-50:]
    return raw[:-2].split(b"\n\n")


def test_sse_framing_is_openais_byte_for_byte(gemma_server: LLMServer) -> None:
    r = gemma_server.post(
        COMPLETIONS,
        {
            "model": GEMMA,
            "prompt": "One, two, three,",
            "max_tokens": 6,
            "temperature": 0,
            "stream": True,
            "n": 2,
        },
        stream=True,
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    raw = b"".join(r.iter_content(None))
    events = _events(raw)
    assert all(e.startswith(b"data: ") for e in events), events
    assert events[-1] == b"data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    finishes = {
        c["choices"][0]["index"]: c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"][0]["finish_reason"]
    }
    assert finishes == {0: "length", 1: "length"}
    texts = {
        i: "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == i) for i in (0, 1)
    }
    assert texts[0] == texts[1] != "", "greedy choices agree"
    assert "usage" not in chunks[0], "no usage key unless stream_options.include_usage"


def _metric(server: LLMServer, name: str, **labels: str) -> float:
    return server.value(name, model=GEMMA, **labels)


def test_a_client_leaving_mid_stream_cancels_its_generation(gemma_server: LLMServer) -> None:
    closed_before = _metric(gemma_server, METRIC_LLM_REQUESTS, code="499")
    body = json.dumps(
        {
            "model": GEMMA,
            "prompt": "Write a long story:",
            "max_tokens": 250,
            "stream": True,
            "ignore_eos": True,
            "temperature": 0.8,
        }
    ).encode()
    head = (
        f"POST {COMPLETIONS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gemma_server.port), timeout=60) as sock:
        sock.sendall(head + body)
        got = b""
        while got.count(b"data: ") < 3:
            got += sock.recv(4096)
    tokens_at_close = _metric(gemma_server, METRIC_LLM_GENERATION_TOKENS)
    deadline = time.monotonic() + 60
    while _metric(gemma_server, METRIC_LLM_REQUESTS, code="499") == closed_before:
        assert time.monotonic() < deadline, "the closed stream was never counted under 499"
        time.sleep(0.2)
    assert _metric(gemma_server, METRIC_LLM_RUNNING) == 0
    time.sleep(1.0)
    generated = _metric(gemma_server, METRIC_LLM_GENERATION_TOKENS) - tokens_at_close
    assert generated < 100, f"{generated} tokens generated after the client left: the generation went on"
    assert _metric(gemma_server, METRIC_LLM_REQUESTS, code="500") == 0


async def _concurrent_completions(server: LLMServer, count: int, max_tokens: int) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers=server.headers) as session:

        async def one(i: int) -> dict[str, Any]:
            body = {
                "model": GEMMA,
                "prompt": f"List {i}:",
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "temperature": 0,
            }
            async with session.post(server.url(COMPLETIONS), json=body) as r:
                assert r.status == 200, await r.text()
                return dict(await r.json())

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_concurrent_requests_are_decoded_together_and_counted(gemma_server: LLMServer) -> None:
    def batch_stats() -> tuple[float, float]:
        m = gemma_server.metrics()
        count = sum(v for lab, v in m.get(METRIC_LLM_BATCH_SIZE + "_count", []))
        total = sum(v for lab, v in m.get(METRIC_LLM_BATCH_SIZE + "_sum", []))
        return count, total

    steps0, seqs0 = batch_stats()
    prompt0 = _metric(gemma_server, METRIC_LLM_PROMPT_TOKENS)
    gen0 = _metric(gemma_server, METRIC_LLM_GENERATION_TOKENS)
    ttft0 = _metric(gemma_server, METRIC_LLM_TTFT + "_count")
    results = asyncio.run(_concurrent_completions(gemma_server, 6, 16))
    steps, seqs = batch_stats()
    mean_batch = (seqs - seqs0) / (steps - steps0)
    assert mean_batch > 2.5, f"6 concurrent requests decoded {mean_batch:.2f} sequences per step: serialised"
    assert all(r["usage"]["completion_tokens"] == 16 for r in results)
    assert _metric(gemma_server, METRIC_LLM_GENERATION_TOKENS) - gen0 == 6 * 16
    assert _metric(gemma_server, METRIC_LLM_PROMPT_TOKENS) - prompt0 == sum(
        r["usage"]["prompt_tokens"] for r in results
    )
    assert _metric(gemma_server, METRIC_LLM_TTFT + "_count") - ttft0 == 6
    for name in (
        METRIC_LLM_ITL + "_count",
        METRIC_LLM_E2E + "_count",
        METRIC_LLM_WAITING,
        METRIC_LLM_RUNNING,
    ):
        assert name.removesuffix("_count") in {n.removesuffix("_count") for n in gemma_server.metrics()}, name
    assert _metric(gemma_server, METRIC_LLM_REQUESTS, code="200", protocol="openai") > 6


def test_a_full_queue_is_429_a_template_override_is_used_and_sigterm_drains(start: Any, gemma: Model) -> None:
    override = "{{ bos_token }}The capital of France is"
    s = start(
        gemma, "gguf", parallel=1, maxWaiting=0, contextLength=256, chatTemplate=override, drainSeconds=60
    )
    chat = s.post(
        CHAT, {"model": GEMMA, "messages": msg("ignored by the template"), "max_tokens": 6, "temperature": 0}
    )
    plain = s.post(
        COMPLETIONS, {"model": GEMMA, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}
    )
    assert chat.json()["choices"][0]["message"]["content"] == plain.json()["choices"][0]["text"]

    async def scenario() -> tuple[int, bytes, int, int]:
        async with aiohttp.ClientSession() as session:
            long_body = {
                "model": GEMMA,
                "prompt": "Count:",
                "max_tokens": 60,
                "ignore_eos": True,
                "stream": True,
            }
            async with session.post(s.url(COMPLETIONS), json=long_body) as streaming:
                first = await streaming.content.readuntil(b"\n\n")
                async with session.post(
                    s.url(COMPLETIONS), json={"model": GEMMA, "prompt": "x", "max_tokens": 2}
                ) as full:
                    refused = full.status
                    assert full.headers.get("Retry-After") == "1"
                    assert (await full.json())["error"]["type"] == "rate_limit_error"
                s.proc.send_signal(15)
                await asyncio.sleep(0.5)
                try:  # the listening socket is closed at once (or, briefly, ready says 503)
                    ready = requests.get(s.url("/v2/health/ready"), timeout=5).status_code
                except requests.ConnectionError:
                    ready = 503
                rest = await streaming.content.read()
                return refused, first + rest, ready, streaming.status

    refused, raw, ready, status = asyncio.run(scenario())
    assert refused == 429
    assert status == 200 and ready == 503
    events = _events(raw)
    assert events[-1] == b"data: [DONE]", "the running stream finished during the drain"
    finish = [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-1]]
    assert finish[-1] == "length"
    assert s.proc.wait(timeout=60) == 0


def test_an_artifact_with_another_digest_is_never_served(start: Any, gemma: Model, tmp_path: Any) -> None:
    wrong = Model(gemma.path, "0" * 64)
    s = start(wrong, "gguf", ready=False)
    assert s.proc.wait(timeout=120) == 65
    result = s.result()
    assert result["reason"] == "ArtifactDigestMismatch" and gemma.digest in result["message"]
    missing = start(Model(tmp_path / "nope.gguf", gemma.digest), "gguf", ready=False)
    assert missing.proc.wait(timeout=60) == 65
    assert missing.result()["reason"] == "ArtifactNotFound"
    bad = start(gemma, "gguf", ready=False, engine="transformers")
    assert bad.proc.wait(timeout=60) == 64
    assert bad.result()["reason"] == "InvalidServeConfig" and "engine" in bad.result()["message"]
