"""Reading the contract from the environment, and writing the result back to the termination message.

Everything the operator passes arrives here and is checked before any real work: a wrong value must
end the run with exit 64 and a message naming the variable or field, never a traceback a minute later.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelops.api.runconfig import (
    DEFAULT_DATA_DIR,
    DEFAULT_METRICS_PORT,
    DEFAULT_TERMINATION_LOG,
    ENV_CHECKPOINT_DIR,
    ENV_DATA_DIR,
    ENV_METRICS_PORT,
    ENV_OUTPUT_DIR,
    ENV_RUN_CONFIG,
    ENV_TERMINATION_LOG,
    TERMINATION_MESSAGE_LIMIT,
    TrainResult,
    TrainRunConfig,
)
from modelops_worker.errors import ConfigError

ENV_METRICS_ADDR = "MODELOPS_METRICS_ADDR"
# Set by the launcher for torchrun's children only: each local rank writes its result there.
ENV_RESULT_DIR = "MODELOPS_RESULT_DIR"


@dataclass(frozen=True)
class WorkerEnv:
    """Paths and ports of this container."""

    checkpoint_dir: Path
    output_dir: Path
    data_dir: Path
    metrics_addr: str
    metrics_port: int
    termination_log: Path

    @classmethod
    def from_environ(cls) -> WorkerEnv:
        ckpt = os.environ.get(ENV_CHECKPOINT_DIR, "")
        if not ckpt:
            raise ConfigError(
                f"{ENV_CHECKPOINT_DIR} is not set; point it at a directory on the checkpoint volume"
            )
        port_raw = os.environ.get(ENV_METRICS_PORT, str(DEFAULT_METRICS_PORT))
        try:
            port = int(port_raw)
            if not 0 <= port <= 65535:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"{ENV_METRICS_PORT}={port_raw!r} is not a port; use 1-65535 (0 turns the endpoint off)"
            ) from None
        return cls(
            checkpoint_dir=Path(ckpt),
            output_dir=Path(os.environ.get(ENV_OUTPUT_DIR) or Path(ckpt) / "output"),
            data_dir=Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR),
            metrics_addr=os.environ.get(ENV_METRICS_ADDR, "0.0.0.0"),
            metrics_port=port,
            termination_log=termination_log_path(),
        )


def termination_log_path() -> Path:
    return Path(os.environ.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG)


def result_path(local_rank: int) -> Path | None:
    """Where this process writes its result: its own file under torchrun, else the termination log
    (local rank 0 only; None for the others)."""
    result_dir = os.environ.get(ENV_RESULT_DIR)
    if result_dir:
        return Path(result_dir) / f"local-rank-{local_rank}.json"
    return termination_log_path() if local_rank == 0 else None


def load_run_config() -> TrainRunConfig:
    """The run configuration from `MODELOPS_RUN_CONFIG`, with every problem named by its field."""
    raw = os.environ.get(ENV_RUN_CONFIG)
    if not raw:
        raise ConfigError(f"{ENV_RUN_CONFIG} is not set; it must hold the JSON of the run configuration")
    try:
        cfg = TrainRunConfig.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ConfigError(f"{ENV_RUN_CONFIG} is not a valid run configuration: {problems}") from None
    m = cfg.model
    if m.architecture == "transformer" and m.hidden_size % m.heads:
        raise ConfigError(
            f"model.hiddenSize={m.hidden_size} must be a multiple of model.heads={m.heads} for the transformer"
        )
    return cfg


def write_result(path: Path, result: TrainResult | dict[str, Any]) -> None:
    """Write the result as compact JSON under the Kubernetes termination-message limit.

    What does not fit goes first in order of least use to the operator: the per-rank sample counts,
    then the tail of the message.
    """
    if isinstance(result, TrainResult):
        data = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    else:
        data = dict(result)
    text = json.dumps(data, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
        data.pop("samplesPerRank", None)
        text = json.dumps(data, separators=(",", ":"))
    while len(text.encode()) > TERMINATION_MESSAGE_LIMIT and data.get("message"):
        over = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
        data["message"] = data["message"][: max(0, len(data["message"]) - over - 16)] + "..."
        text = json.dumps(data, separators=(",", ":"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        # Not fatal: the exit code still tells the operator what to do.
        print(f"modelops-worker: cannot write the result to {path}: {exc}", file=sys.stderr, flush=True)
