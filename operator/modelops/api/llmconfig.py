"""The LLM serving contract: what the operator tells an LLM serving pod, and what the pod exposes.

Written once, imported by both sides (the InferenceService builders and `modelops-worker serve-llm`),
so the two cannot drift. No torch and no engine here: the operator imports this module.

Environment of an LLM serving container (`modelops-worker serve-llm`, or `modelops-worker serve` when
`MODELOPS_LLM_SERVE_CONFIG` is set):

- `MODELOPS_LLM_SERVE_CONFIG` (required): JSON of `LLMServeConfig` (camelCase keys).
- `MODELOPS_TERMINATION_LOG` (default `/dev/termination-log`): why the server refused to start
  (`REASON_*` below), as JSON `{status, reason, message, exitCode}`.

The server listens on `LLM_SERVE_PORT` with OpenAI's API: `GET /v1/models`, `POST /v1/completions`,
`POST /v1/chat/completions`, `POST /v1/embeddings` (when `embeddings` is on), plus the probes
`PATH_LLM_LIVE`, `PATH_LLM_READY` (the same paths as the OIP v2 server, so probes do not depend on the
runtime; `/health` answers as vLLM's does) and Prometheus at `PATH_LLM_METRICS`. Ready means: the
artifact (and adapter) loaded and its digest equals the configured one. A server that cannot load or
verify its artifact exits with `EXIT_BAD_DATA` (65) after writing its termination message; a wrong
configuration exits `EXIT_BAD_CONFIG` (64).

Metrics: one set of names whatever the engine (`METRIC_LLM_*`). Our CPU engines (llama.cpp, transformers)
export them directly; for vLLM the operator maps `vllm:*` onto them in one place. All carry the labels
`model` (the served name) and `version`.

Digests: a GGUF artifact's digest is the plain sha256 of the file. A directory's (a Hugging Face model,
a LoRA adapter) is `directory_digest` of its files: see `MANIFEST_FILE` and `directory_digest` below.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from modelops.api.common import ApiModel
from modelops.api.serveconfig import (
    CODE_CLIENT_CLOSED,
    METRIC_LATENCY,
    METRIC_REQUESTS,
    PATH_LIVE,
    PATH_METRICS,
    PATH_READY,
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
    REASON_INVALID_SERVE_CONFIG,
    REASON_NO_RUNTIME_FOR_FORMAT,
    SERVE_PORT,
)

__all__ = [
    "CODE_CLIENT_CLOSED",
    "METRIC_LATENCY",
    "METRIC_REQUESTS",
    "REASON_ARTIFACT_DIGEST_MISMATCH",
    "REASON_ARTIFACT_LOAD_FAILED",
    "REASON_ARTIFACT_NOT_FOUND",
    "REASON_INVALID_SERVE_CONFIG",
    "REASON_NO_RUNTIME_FOR_FORMAT",
]

ENV_LLM_SERVE_CONFIG = "MODELOPS_LLM_SERVE_CONFIG"

LLM_SERVE_PORT = SERVE_PORT  # 8080, as the OIP v2 server: one containerPort/Service shape for both
PATH_LLM_LIVE = PATH_LIVE  # 200 once the process listens
PATH_LLM_READY = PATH_READY  # 200 once the model is loaded and verified; 503 while loading or draining
PATH_LLM_HEALTH = "/health"  # vLLM's health path, answered like PATH_LLM_READY (vLLM-style probes work)
PATH_LLM_METRICS = PATH_METRICS
PATH_MODELS = "/v1/models"
PATH_COMPLETIONS = "/v1/completions"
PATH_CHAT_COMPLETIONS = "/v1/chat/completions"
PATH_EMBEDDINGS = "/v1/embeddings"

# Formats of LLM artifacts, and the engine each is served by on CPU nodes (vLLM on GPU clusters is the
# operator's choice, not the worker's). A LoRA adapter (a peft directory: adapter_config.json +
# adapter_model.safetensors) sits on top of a `huggingface` base; on a `gguf` base the adapter is a GGUF
# LoRA file (llama.cpp's convert_lora_to_gguf.py).
LLM_FORMATS = ("gguf", "huggingface")
FORMAT_ADAPTER = "lora"  # `modelops-worker verify --format lora --base-artifact ...`
ENGINE_FOR_FORMAT = {"gguf": "llamacpp", "huggingface": "transformers"}

# --- metrics ---------------------------------------------------------------------------------------
# Every engine's pod exposes these names (labels `model`, `version`). Seconds for histograms.
#   name                                             type       vLLM's equivalent (llmops maps them)
METRIC_LLM_TTFT = "modelops_llm_time_to_first_token_seconds"  # histogram  vllm:time_to_first_token_seconds
METRIC_LLM_ITL = "modelops_llm_inter_token_latency_seconds"  # histogram   vllm:inter_token_latency_seconds
#                                       (vllm:time_per_output_token_seconds before vLLM 0.10)
METRIC_LLM_E2E = "modelops_llm_e2e_request_latency_seconds"  # histogram   vllm:e2e_request_latency_seconds
METRIC_LLM_RUNNING = "modelops_llm_requests_running"  # gauge                 vllm:num_requests_running
METRIC_LLM_WAITING = "modelops_llm_requests_waiting"  # gauge                 vllm:num_requests_waiting
METRIC_LLM_PROMPT_TOKENS = "modelops_llm_prompt_tokens_total"  # counter      vllm:prompt_tokens_total
METRIC_LLM_GENERATION_TOKENS = "modelops_llm_generation_tokens_total"  # counter vllm:generation_tokens_total
# Requests answered, by HTTP status `code` (and `protocol` = "openai"): the same counter as the OIP v2
# server, so the canary analysis and error-rate alerts (5xx only) read LLMs unchanged. A request whose
# client went away mid-stream counts under CODE_CLIENT_CLOSED (499). vLLM has no by-code counter; its
# `vllm:request_success_total` counts finished requests by finish reason.
METRIC_LLM_REQUESTS = METRIC_REQUESTS
# Also exported, by `code`: serveconfig's METRIC_LATENCY (seconds to the last byte of the answer), so the
# existing latency gate of the canary analysis reads an LLM pod as it reads any other.
METRIC_LLM_LATENCY = METRIC_LATENCY
METRIC_LLM_MODEL_INFO = "modelops_llm_model_info"  # gauge 1; labels digest, format, engine, context_length

# Histogram buckets (so SLO thresholds in alerts and canary gates fall on a bucket boundary).
TTFT_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
)
ITL_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 120.0, 300.0)

# --- reasons (termination messages, verify results) -----------------------------------------------
# Besides the artifact reasons re-exported from serveconfig (ArtifactNotFound, ArtifactDigestMismatch,
# ArtifactLoadFailed, InvalidServeConfig, NoRuntimeForFormat):
REASON_MANIFEST_INVALID = "ArtifactManifestInvalid"  # modelops-manifest.json unreadable or disagrees
REASON_ADAPTER_INCOMPATIBLE = "AdapterIncompatible"  # the LoRA adapter does not fit the base model
REASON_ENGINE_UNAVAILABLE = "EngineUnavailable"  # exit 64: the engine's package is not in the image
REASON_GENERATION_FAILED = "GenerationFailed"  # verify: the model loaded but the smoke generation failed

# OpenAI error `code`s the server answers with (`{"error": {"message", "type", "param", "code"}}`).
ERROR_CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # 400: prompt (+ max_tokens) over the limits
ERROR_MODEL_NOT_FOUND = "model_not_found"  # 404
ERROR_INVALID_API_KEY = "invalid_api_key"  # 401
ERROR_OVERLOADED = "server_overloaded"  # 429: more requests waiting than `maxWaiting`
ERROR_SHUTTING_DOWN = "server_shutting_down"  # 503: draining after SIGTERM


class LLMServeConfig(ApiModel):
    """What one LLM serving pod serves, and how."""

    model_name: str = Field(
        description="The name clients send as `model` and `GET /v1/models` lists: the InferenceService's name."
    )
    aliases: list[str] = Field(
        default_factory=list, description="Further names accepted as `model` (vLLM's --served-model-name)."
    )
    model_version: str = Field(default="", description="The version number as a string (metric label).")
    model_version_name: str = Field(default="", description="metadata.name of the ModelVersion.")
    artifact_path: str = Field(
        description="Inside the container: the GGUF file, or the Hugging Face model directory."
    )
    digest: str = Field(
        pattern=r"^(sha256:)?[a-f0-9]{64}$",
        description="The digest the ModelVersion verified: a GGUF file's sha256, or a directory's manifest "
        "digest (`directory_digest`). The server refuses anything else.",
    )
    format: Literal["gguf", "huggingface"] = Field(description="Artifact format; picks the engine.")
    adapter_path: str | None = Field(
        default=None, description="A LoRA adapter applied on top of the artifact (peft directory or GGUF)."
    )
    adapter_digest: str | None = Field(
        default=None,
        pattern=r"^(sha256:)?[a-f0-9]{64}$",
        description="The adapter's verified digest; required with adapterPath.",
    )
    engine: Literal["auto", "llamacpp", "transformers"] = Field(
        default="auto", description="auto: llamacpp for gguf, transformers for huggingface."
    )
    context_length: int | None = Field(
        default=None,
        ge=16,
        description="Tokens of context per sequence (prompt + generation). None: the model's own, at most "
        "8192 (a CPU pod rarely has memory for more times `parallel`).",
    )
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, description="Longest prompt accepted (400 beyond). None: the context length - 1."
    )
    max_tokens_limit: int = Field(
        default=4096, ge=1, description="Largest `max_tokens` a request may ask for (400 beyond)."
    )
    default_max_tokens: int = Field(
        default=256, ge=1, description="`max_tokens` of a request that sends none (capped by the context)."
    )
    max_n: int = Field(default=8, ge=1, le=128, description="Largest `n` (choices per request).")
    parallel: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Sequences decoded together in one batch (llama.cpp sequences, transformers batch).",
    )
    max_waiting: int = Field(
        default=256,
        ge=0,
        description="Requests that may wait for a free sequence; beyond, 429 with Retry-After.",
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads for the engine. None: the CPUs this pod may use."
    )
    chat_template: str | None = Field(
        default=None,
        description="A Jinja chat template overriding the model's (a base model without one gets the "
        "documented default, see docs/llm.md).",
    )
    embeddings: bool = Field(
        default=False, description="Serve /v1/embeddings (an embedding model) instead of generation."
    )
    auth_tokens_file: str | None = Field(
        default=None, description="File with accepted bearer tokens, one per line; no auth when absent."
    )
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Largest request body.")
    port: int = Field(default=LLM_SERVE_PORT, ge=1, le=65535, description="Listening port.")
    drain_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long SIGTERM waits for running generations (streams included) before exiting.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LLMServeConfig:
        if (self.adapter_path is None) != (self.adapter_digest is None):
            raise ValueError("adapterPath and adapterDigest go together: set both or neither")
        if self.engine != "auto" and ENGINE_FOR_FORMAT[self.format] != self.engine:
            raise ValueError(
                f"engine {self.engine} cannot serve format {self.format}; use engine "
                f"{ENGINE_FOR_FORMAT[self.format]} (or auto)"
            )
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"defaultMaxTokens ({self.default_max_tokens}) is over maxTokensLimit ({self.max_tokens_limit})"
            )
        return self

    @property
    def served_names(self) -> list[str]:
        return [self.model_name, *(a for a in self.aliases if a != self.model_name)]

    @property
    def resolved_engine(self) -> str:
        return ENGINE_FOR_FORMAT[self.format] if self.engine == "auto" else self.engine


# --- directory digest ------------------------------------------------------------------------------
# The digest of a directory artifact, defined once:
#
#   lines  = for every regular file under the directory (symlinks followed), except MANIFEST_FILE:
#            "<relative POSIX path>\0<lowercase hex sha256 of its bytes>\n"
#   digest = lowercase hex sha256 of the lines concatenated in ascending order of the path's UTF-8 bytes
#
# Empty directories do not count; renaming, adding, removing or changing any file changes the digest.
# The manifest stored next to the model, `<dir>/modelops-manifest.json`, lists what the digest was
# computed over, so a reader can name the file that differs:
#
#   {"algorithm": "modelops-dir-sha256-v1", "digest": "<hex>",
#    "files": [{"path": "config.json", "size": 123, "sha256": "<hex>"}, ...]}
#
# The manifest is a convenience, never trusted on its own: verification recomputes every file's
# sha256 and compares the result with the digest the registry recorded.

MANIFEST_FILE = "modelops-manifest.json"
MANIFEST_ALGORITHM = "modelops-dir-sha256-v1"
_CHUNK = 1 << 20


def directory_digest(files: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The digest of a directory from its files' relative paths and sha256s (pure)."""
    pairs = files.items() if isinstance(files, Mapping) else files
    lines = sorted((path.encode(), sha.lower()) for path, sha in pairs if path != MANIFEST_FILE)
    h = hashlib.sha256()
    for path, sha in lines:
        h.update(path + b"\0" + sha.encode() + b"\n")
    return h.hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    """A file's hex sha256 and size, streamed."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def directory_files(root: Path) -> list[tuple[str, Path]]:
    """The files a directory digest covers: (relative POSIX path, absolute path), sorted."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != MANIFEST_FILE and p.is_file():
                out.append((rel, p))
    out.sort(key=lambda e: e[0].encode())
    return out


def build_manifest(root: Path) -> dict[str, Any]:
    """Hash every file of a directory: the manifest (with its digest) to store as MANIFEST_FILE."""
    entries: list[dict[str, Any]] = []
    pairs: list[tuple[str, str]] = []
    for rel, p in directory_files(root):
        sha, size = file_sha256(p)
        entries.append({"path": rel, "size": size, "sha256": sha})
        pairs.append((rel, sha))
    digest = directory_digest(pairs)
    return {"algorithm": MANIFEST_ALGORITHM, "digest": digest, "files": entries}


def write_manifest(root: Path) -> dict[str, Any]:
    """Compute and store `<root>/modelops-manifest.json` (written atomically); returns it."""
    manifest = build_manifest(root)
    tmp = root / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(root / MANIFEST_FILE)
    return manifest


def artifact_digest(path: Path) -> str:
    """The digest of an artifact: a file's sha256, or a directory's `directory_digest`."""
    if path.is_dir():
        return str(build_manifest(path)["digest"])
    return file_sha256(path)[0]
