"""The official `openai` Python package against `modelops-worker serve-llm` serving real models:
Gemma 3 270M (GGUF, llama.cpp) for chat, streaming chat and completions; all-MiniLM-L6-v2
(transformers) for embeddings. What a user of the client notices: answers, streams, usage, seeds,
stop sequences, n choices, the errors it raises."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest
from llmhelpers import GEMMA, TOKEN, LLMServer
from openai import OpenAI


def client(server: LLMServer, key: str = TOKEN) -> OpenAI:
    return OpenAI(base_url=server.url("/v1"), api_key=key, max_retries=0, timeout=120)


def test_models_lists_the_served_name_and_its_alias(gemma_server: LLMServer) -> None:
    ids = [m.id for m in client(gemma_server).models.list()]
    assert ids == [GEMMA, "gemma"]
    assert client(gemma_server).models.retrieve("gemma").id == "gemma"


def test_chat_completion_answers_with_usage(gemma_server: LLMServer) -> None:
    r = client(gemma_server).chat.completions.create(
        model=GEMMA,
        messages=[
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "Name a color."},
        ],
        max_tokens=12,
        temperature=0,
    )
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == GEMMA and r.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 5
    assert 1 <= r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_chat_gives_the_same_text_as_the_plain_answer(gemma_server: LLMServer) -> None:
    c = client(gemma_server)
    ask = {
        "model": GEMMA,
        "messages": [{"role": "user", "content": "Tell me about Paris."}],
        "max_tokens": 20,
        "temperature": 0,
    }
    plain = c.chat.completions.create(**ask)
    chunks = list(c.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert text == plain.choices[0].message.content
    assert finishes == [plain.choices[0].finish_reason]
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) > 3, (
        "tokens arrive one by one"
    )
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None
    assert usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]
    assert all(ch.usage is None for ch in chunks[:-1])


def test_completions_are_deterministic_greedy_and_with_a_seed(gemma_server: LLMServer) -> None:
    c = client(gemma_server)
    greedy = [
        c.completions.create(model=GEMMA, prompt="The capital of France is", max_tokens=10, temperature=0)
        for _ in range(2)
    ]
    assert greedy[0].choices[0].text == greedy[1].choices[0].text
    assert "Paris" in greedy[0].choices[0].text or "France" in greedy[0].choices[0].text
    seeded = [
        c.completions.create(model="gemma", prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=s)
        .choices[0]
        .text
        for s in (42, 42, 7, 8)
    ]
    assert seeded[0] == seeded[1]
    assert len({seeded[0], seeded[2], seeded[3]}) > 1, "other seeds sample other texts"


def test_n_choices_max_tokens_and_stop(gemma_server: LLMServer) -> None:
    c = client(gemma_server)
    r = c.completions.create(
        model=GEMMA, prompt="Once upon a time", max_tokens=8, temperature=1.0, seed=3, n=3
    )
    assert sorted(ch.index for ch in r.choices) == [0, 1, 2]
    assert r.usage is not None and r.usage.completion_tokens <= 24
    assert all(ch.finish_reason in ("length", "stop") for ch in r.choices)
    full = c.completions.create(
        model=GEMMA, prompt="The capital of France is", max_tokens=16, temperature=0
    ).choices[0]
    assert full.finish_reason == "length"
    words = full.text.split()
    assert len(words) >= 3, full.text
    stop_word = words[2]
    cut = c.completions.create(
        model=GEMMA, prompt="The capital of France is", max_tokens=16, temperature=0, stop=[stop_word]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == full.text[: full.text.index(stop_word)]
    streamed = "".join(
        ch.choices[0].text
        for ch in c.completions.create(
            model=GEMMA,
            prompt="The capital of France is",
            max_tokens=16,
            temperature=0,
            stop=[stop_word],
            stream=True,
        )
        if ch.choices
    )
    assert streamed == cut.choices[0].text, "a stop sequence split across tokens is never streamed"


def test_client_errors_raise_the_openai_exceptions(gemma_server: LLMServer) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        client(gemma_server, key="wrong").models.list()
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client(gemma_server).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as long:
        client(gemma_server).completions.create(model=GEMMA, prompt="word " * 600, max_tokens=4)
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as bad:
        client(gemma_server).chat.completions.create(
            model=GEMMA, messages=[{"role": "user", "content": "hi"}], temperature=3
        )
    assert bad.value.param == "temperature"


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def test_embeddings_of_a_real_model_are_normalised_and_mean_something(embed_server: LLMServer) -> None:
    c = client(embed_server, key="unused")
    r = c.embeddings.create(
        model="minilm",
        input=["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply."],
    )
    vecs = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2] and all(len(v) == 384 for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs)
    assert _cos(vecs[0], vecs[1]) > _cos(vecs[0], vecs[2]) + 0.2
    assert r.usage.prompt_tokens > 10
    # The client asks for base64 unless told (and decodes it); asked explicitly it hands the string over.
    b64 = c.embeddings.create(model="minilm", input="A cat sits on the mat.", encoding_format="base64")
    floats = c.embeddings.create(model="minilm", input="A cat sits on the mat.", encoding_format="float")
    raw = base64.b64decode(str(b64.data[0].embedding))
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert floats.data[0].embedding == pytest.approx(vecs[0], abs=1e-5)
    with pytest.raises(openai.BadRequestError) as too_long:
        c.embeddings.create(model="minilm", input="word " * 400)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
