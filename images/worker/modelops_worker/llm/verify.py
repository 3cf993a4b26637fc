"""`modelops-worker verify` of LLM artifacts: formats `gguf`, `huggingface`, and `lora` adapters.

In order, each step failing with the contract's reason (exit 65):

1. the digest: a GGUF file's sha256, or a directory's digest over all its files (`directory_digest`);
   `ArtifactNotFound`, `ArtifactDigestMismatch` naming the files that differ from the stored manifest;
2. the model loads with the engine that will serve it (llama.cpp for GGUF, transformers for a
   directory; for `lora` the base is checked and loaded too, then the adapter applied:
   `AdapterIncompatible` when it does not fit); `ArtifactLoadFailed` otherwise;
3. a smoke generation: greedy, `SMOKE_TOKENS` tokens from `SMOKE_PROMPT` through the same batching
   engine the server uses (an embedding model embeds the prompt instead and must give a finite vector);
   `GenerationFailed` when it produces nothing.

The result (the termination message) records what the registry shows about the model under `llm`:
architecture, parameter count, context length, whether a chat template ships with it, the engine,
the quantization of a GGUF, and the smoke text. The manifest of a directory is written next to it when
none is there (`modelops-manifest.json`), so later readers can name a changed file.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

from modelops.api.llmconfig import (
    FORMAT_ADAPTER,
    MANIFEST_FILE,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_GENERATION_FAILED,
    LLMServeConfig,
    directory_files,
    write_manifest,
)
from modelops.api.runconfig import EXIT_BAD_DATA, REASON_SUCCEEDED
from modelops_worker.errors import WorkerError
from modelops_worker.llm import load as loading
from modelops_worker.llm.engine import FinishEvent, Sequence, TokenEvent
from modelops_worker.llm.protocol import Sampling

SMOKE_PROMPT = "The capital of France is"
SMOKE_TOKENS = 8


def _is_embedding_model(path: Path) -> bool:
    return (
        path.is_dir() and (path / "modules.json").is_file() and not (path / "generation_config.json").exists()
    )


def smoke_generate(
    engine: Any, prompt: str = SMOKE_PROMPT, tokens: int = SMOKE_TOKENS
) -> tuple[str, int, float]:
    """Greedy `tokens` tokens from `prompt` through a started engine: (text, tokens, seconds)."""

    async def run() -> tuple[str, int, float]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[Sequence, TokenEvent | FinishEvent]] = asyncio.Queue()
        ids = engine.tokenize(prompt, add_special=True)
        seq = Sequence(loop, events, ids, Sampling(max_tokens=tokens, temperature=0.0), tokens, 0)
        started = time.perf_counter()
        engine.submit([seq])
        pieces = []
        while True:
            _, event = await asyncio.wait_for(events.get(), 300)
            if isinstance(event, FinishEvent):
                if event.reason == "error":
                    raise RuntimeError(event.error)
                break
            pieces.append(event.piece)
        return (
            b"".join(pieces).decode("utf-8", errors="replace"),
            seq.generated,
            time.perf_counter() - started,
        )

    return asyncio.run(run())


def verify(
    path: Path,
    digest: str | None,
    fmt: str,
    base: Path | None = None,
    base_digest: str | None = None,
    base_format: str | None = None,
) -> dict[str, Any]:
    """The verification result; raises WorkerError with the reason on any failure."""
    adapter: Path | None = None
    if fmt == FORMAT_ADAPTER:
        if base is None:
            raise WorkerError(
                REASON_ARTIFACT_LOAD_FAILED,
                "a LoRA adapter is verified on its base model: pass --base-artifact (and --base-sha256)",
                EXIT_BAD_DATA,
            )
        adapter_digest, adapter_size = loading.check_digest(path, digest, "LoRA adapter")
        adapter = path
        model_path = base
        model_format = base_format or ("huggingface" if base.is_dir() else "gguf")
        model_digest, size = loading.check_digest(base, base_digest, "base model")
    else:
        model_path, model_format = path, fmt
        model_digest, size = loading.check_digest(path, digest)
    if model_path.is_dir() and not (model_path / MANIFEST_FILE).exists():
        with contextlib.suppress(OSError):  # a read-only volume: the digest stands on its own
            write_manifest(model_path)
    cfg = LLMServeConfig(
        model_name="verify",
        artifact_path=str(model_path),
        digest=model_digest,
        format=model_format,
        adapter_path=str(adapter) if adapter else None,
        adapter_digest=adapter_digest if adapter else None,
        parallel=1,
        max_waiting=1,
        context_length=None,
        embeddings=_is_embedding_model(model_path) and adapter is None,
    )
    loaded = loading.load(cfg)
    info: Any
    smoke: dict[str, Any]
    if loaded.embedder is not None:
        emb = loaded.embedder
        info = emb.info
        vectors, n = emb.embed(emb.prepare([SMOKE_PROMPT]))
        if not vectors or not all(math.isfinite(x) for x in vectors[0]):
            raise WorkerError(
                REASON_GENERATION_FAILED, "the embedding of the smoke prompt is not finite", EXIT_BAD_DATA
            )
        smoke = {"prompt": SMOKE_PROMPT, "dimensions": len(vectors[0]), "tokens": n}
        summary = f"embeds the smoke prompt into {len(vectors[0])} dimensions"
    else:
        gen = loaded.generator
        info = gen.info
        gen.start()
        try:
            text, count, seconds = smoke_generate(gen)
        except Exception as exc:
            raise WorkerError(
                REASON_GENERATION_FAILED,
                f"the smoke generation failed: {type(exc).__name__}: {exc}"[:500],
                EXIT_BAD_DATA,
            ) from None
        finally:
            gen.stop()
        if count == 0:
            raise WorkerError(
                REASON_GENERATION_FAILED,
                f"the model loaded but generated no token from {SMOKE_PROMPT!r} (it ended at once)",
                EXIT_BAD_DATA,
            )
        smoke = {"prompt": SMOKE_PROMPT, "tokens": count, "text": text[:200], "seconds": round(seconds, 3)}
        summary = f"generates {count} tokens from {SMOKE_PROMPT!r}: {text[:60]!r}"
    llm: dict[str, Any] = {
        "engine": loaded.engine_name,
        "architecture": info.architecture,
        "parameters": info.parameters,
        "contextLength": info.trained_context_length,
        "vocabSize": info.vocab_size,
        "chatTemplate": info.chat_template is not None and info.chat_template.origin == "model",
        "embeddings": loaded.embedder is not None,
        "smoke": smoke,
    }
    if info.embedding_dimensions:
        llm["embeddingDimensions"] = info.embedding_dimensions
    if path.is_dir():
        llm["files"] = len(directory_files(path))
    if info.extra.get("quantization"):
        llm["quantization"] = info.extra["quantization"]
    artifact: dict[str, Any] = {"path": str(path), "format": fmt}
    if adapter is not None:
        artifact.update({"sha256": adapter_digest, "sizeBytes": adapter_size})
        result_base: dict[str, Any] | None = {
            "path": str(model_path),
            "sha256": model_digest,
            "format": model_format,
        }
    else:
        artifact.update({"sha256": model_digest, "sizeBytes": size})
        result_base = None
    out: dict[str, Any] = {
        "status": "Succeeded",
        "reason": REASON_SUCCEEDED,
        "exitCode": 0,
        "artifact": artifact,
        "llm": llm,
        "message": f"digest matches, loads with {loaded.engine_name}, {summary}"[:600],
    }
    if result_base is not None:
        out["base"] = result_base
    return out
