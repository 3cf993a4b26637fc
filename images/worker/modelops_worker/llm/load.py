"""Check an LLM artifact's digest, then load it with the engine its format picks.

What is served is what was verified: a GGUF file must have the sha256 the ModelVersion recorded, a
directory (a Hugging Face model, a LoRA adapter) the directory digest of `modelops.api.llmconfig`
(every file hashed again; the stored manifest only serves to name the file that differs). Anything else
is a `WorkerError` with the contract's reason and exit 65, before a single weight is loaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.api.llmconfig import (
    MANIFEST_FILE,
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
    REASON_ENGINE_UNAVAILABLE,
    LLMServeConfig,
    build_manifest,
    file_sha256,
)
from modelops.api.runconfig import EXIT_BAD_CONFIG, EXIT_BAD_DATA
from modelops_worker.errors import WorkerError

log = logging.getLogger("modelops_worker.llm")


def _norm(digest: str) -> str:
    return digest.lower().removeprefix("sha256:")


def _differs(path: Path, manifest: dict[str, Any]) -> str:
    """Which files differ from the manifest stored beside them (for the message only)."""
    try:
        stored = json.loads((path / MANIFEST_FILE).read_text())
        old = {f["path"]: f["sha256"] for f in stored["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    new = {f["path"]: f["sha256"] for f in manifest["files"]}
    changed = sorted(p for p in new if p in old and old[p] != new[p])
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    parts = []
    for what, names in (("changed", changed), ("not in the manifest", added), ("missing", removed)):
        if names:
            parts.append(f"{what}: {', '.join(names[:5])}" + (" ..." if len(names) > 5 else ""))
    return "; ".join(parts)


def check_digest(path: Path, expected: str | None, what: str = "artifact") -> tuple[str, int]:
    """The artifact's digest and size in bytes; raises WorkerError unless it is `expected`."""
    if not path.exists():
        raise WorkerError(
            REASON_ARTIFACT_NOT_FOUND,
            f"the {what} {path} does not exist: is the model volume mounted, and the path right?",
            EXIT_BAD_DATA,
        )
    if path.is_dir():
        manifest = build_manifest(path)
        if not manifest["files"]:
            raise WorkerError(
                REASON_ARTIFACT_NOT_FOUND, f"the {what} directory {path} is empty", EXIT_BAD_DATA
            )
        actual = str(manifest["digest"])
        size = sum(int(f["size"]) for f in manifest["files"])
        kind = "directory digest"
    else:
        actual, size = file_sha256(path)
        kind = "sha256"
    if expected and actual != _norm(expected):
        hint = _differs(path, manifest) if path.is_dir() else ""
        raise WorkerError(
            REASON_ARTIFACT_DIGEST_MISMATCH,
            f"the {kind} of the {what} {path.name} is {actual}, expected {_norm(expected)}: it changed after it "
            f"was registered, or is partial" + (f" ({hint})" if hint else ""),
            EXIT_BAD_DATA,
        )
    return actual, size


def load_failed(path: Path, fmt: str, exc: BaseException) -> WorkerError:
    return WorkerError(
        REASON_ARTIFACT_LOAD_FAILED,
        f"{path.name} does not load as {fmt}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
        EXIT_BAD_DATA,
    )


def _engine_missing(package: str, exc: ImportError) -> WorkerError:
    return WorkerError(
        REASON_ENGINE_UNAVAILABLE,
        f"the engine's package {package} is not installed in this image ({exc}); use the worker image "
        "built with the `worker` extra",
        EXIT_BAD_CONFIG,
    )


@dataclass
class Loaded:
    """A verified, loaded model: a generation engine or an embedder."""

    digest: str
    engine_name: str
    generator: Any = None  # BatchingEngine with tokenize/piece/info
    embedder: Any = None  # hf.Embedder


def load(cfg: LLMServeConfig) -> Loaded:
    path = Path(cfg.artifact_path)
    digest, _ = check_digest(path, cfg.digest)
    adapter = Path(cfg.adapter_path) if cfg.adapter_path else None
    if adapter is not None:
        check_digest(adapter, cfg.adapter_digest, "LoRA adapter")
    engine = cfg.resolved_engine
    if cfg.embeddings:
        try:
            from modelops_worker.llm import hf
        except ImportError as exc:
            raise _engine_missing("transformers", exc) from None
        try:
            return Loaded(digest, "transformers", embedder=hf.Embedder(path, cfg))
        except WorkerError:
            raise
        except Exception as exc:
            raise load_failed(path, "an embedding model", exc) from None
    if engine == "llamacpp":
        if path.is_dir():
            raise load_failed(path, "gguf", ValueError("a GGUF artifact is one file, this is a directory"))
        try:
            from modelops_worker.llm.llamacpp import LlamaCppEngine
        except ImportError as exc:
            raise _engine_missing("llama-cpp-python", exc) from None
        try:
            gen = LlamaCppEngine(cfg, path, adapter)
        except WorkerError:
            raise
        except Exception as exc:
            raise load_failed(path, "gguf", exc) from None
        return Loaded(digest, engine, generator=gen)
    try:
        from modelops_worker.llm import hf
    except ImportError as exc:
        raise _engine_missing("transformers", exc) from None
    try:
        return Loaded(digest, engine, generator=hf.HFEngine(cfg, path, adapter))
    except WorkerError:
        raise
    except Exception as exc:
        raise load_failed(path, "a Hugging Face model directory", exc) from None
