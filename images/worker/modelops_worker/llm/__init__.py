"""`modelops-worker serve-llm`: a language model over OpenAI's API, batched, measured, drained.

The contract with the operator is `modelops.api.llmconfig`: configuration from
`MODELOPS_LLM_SERVE_CONFIG`, port, paths, metric names and the reasons a refusal to start carries.
Existing engines do the decoding (llama.cpp for GGUF, transformers for Hugging Face directories, peft
for LoRA adapters); this package is the part around them a platform owes its users: the digest check,
OpenAI's wire format and errors, limits, auth, batching of concurrent requests, metrics, drain.

Modules by role: `protocol` (the wire format, pure), `chat` (templates), `engine` (what engines share:
the batching thread, sequences, stop strings), `llamacpp` and `hf` (the engines), `load` (digest, then
engine), `metrics`, `server` (HTTP), `verify` (`modelops-worker verify` of LLM formats).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from modelops.api.llmconfig import ENV_LLM_SERVE_CONFIG, LLMServeConfig
from modelops_worker.environment import termination_log_path, write_result
from modelops_worker.errors import WorkerError
from modelops_worker.serve import _config_error, config_from_env

log = logging.getLogger("modelops_worker.llm")


def load_config() -> LLMServeConfig:
    """The configuration from `MODELOPS_LLM_SERVE_CONFIG`, every problem named by its field."""
    return config_from_env(ENV_LLM_SERVE_CONFIG, LLMServeConfig, "LLM serve configuration")


def main(host: str = "0.0.0.0", port: int | None = None) -> int:
    """Serve until SIGTERM; the exit code the operator reads (0, 64 bad config, 65 bad artifact)."""
    try:
        cfg = load_config()
        if port is not None:
            cfg = cfg.model_copy(update={"port": port})
        from modelops_worker.llm import server
        from modelops_worker.llm.load import load
        from modelops_worker.serve.auth import TokenFile

        tokens = None
        if cfg.auth_tokens_file:
            try:
                tokens = TokenFile(Path(cfg.auth_tokens_file))
            except OSError as exc:
                raise _config_error(
                    f"authTokensFile {cfg.auth_tokens_file} cannot be read ({exc.strerror}); "
                    "mount the auth Secret there or drop authTokensFile"
                ) from None
        return asyncio.run(server.run(cfg, host, load, tokens))
    except WorkerError as exc:
        log.error("%s: %s", exc.reason, exc.message)
        out: dict[str, Any] = {
            "status": "Failed",
            "reason": exc.reason,
            "message": exc.message,
            "exitCode": exc.exit_code,
        }
        write_result(termination_log_path(), out)
        return exc.exit_code
