"""`modelops-worker serve`: one model over the Open Inference Protocol v2, batched, measured, drained.

The contract with the operator is `modelops.api.serveconfig`: configuration from `MODELOPS_SERVE_CONFIG`,
port, paths, metric names and the reasons a refusal to start carries. Modules by role: `protocol`
(the wire format, pure), `model` (verify, load, quantize), `batching`, `metrics`, `auth`, `server`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelops.api.runconfig import EXIT_BAD_CONFIG
from modelops.api.serveconfig import ENV_SERVE_CONFIG, REASON_INVALID_SERVE_CONFIG, ServeConfig
from modelops_worker.environment import termination_log_path, write_result
from modelops_worker.errors import WorkerError

log = logging.getLogger("modelops_worker.serve")
_Config = TypeVar("_Config", bound=BaseModel)


def _config_error(message: str) -> WorkerError:
    return WorkerError(REASON_INVALID_SERVE_CONFIG, message, EXIT_BAD_CONFIG)


def config_from_env(env: str, model: type[_Config], what: str) -> _Config:
    """The pydantic configuration `model` from the JSON in `env`, every problem named by its field
    (shared by `serve` and `serve-llm`)."""
    raw = os.environ.get(env)
    if not raw:
        raise _config_error(f"{env} is not set; it must hold the JSON of the {what}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise _config_error(f"{env} is not a valid {what}: {problems}") from None


def load_serve_config() -> ServeConfig:
    """The configuration from `MODELOPS_SERVE_CONFIG`, every problem named by its field."""
    return config_from_env(ENV_SERVE_CONFIG, ServeConfig, "serve configuration")


def main(host: str = "0.0.0.0", port: int | None = None) -> int:
    """Serve until SIGTERM; the exit code the operator reads (0, 64 bad config, 65 bad artifact)."""
    try:
        cfg = load_serve_config()
        if port is not None:
            cfg = cfg.model_copy(update={"port": port})
        from modelops_worker.serve import supervisor  # several processes sharing the ports, opt-in

        try:
            count = supervisor.process_count(cfg.device)
        except ValueError as exc:
            raise _config_error(str(exc)) from None
        if count > 1:
            argv = ["--host", host] + ([] if port is None else ["--port", str(port)])
            return supervisor.run(count, argv, supervisor.usable_cpus())
        from modelops_worker.serve import model, server
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
        threads = model.configure_threads()
        log.info("forward passes use %d thread(s)", threads)
        return asyncio.run(server.run(cfg, host, model.load, tokens))
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
