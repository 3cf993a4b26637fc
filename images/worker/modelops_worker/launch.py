"""Starting torchrun when one pod runs several processes, or the run spans several pods.

The pod's command is always `modelops-worker train`; this module decides whether that process trains
itself or becomes the parent of torchrun (`torch.distributed.run`), which reads the operator's
`PET_*` variables as its flags. Exit codes of the children do not survive torchrun (it exits 1 on any
failure), so every local rank writes its result into a directory the launcher gives it
(`MODELOPS_RESULT_DIR`), and the launcher picks the one that explains the outcome.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from modelops.api.finetuneconfig import FineTuneRunConfig
from modelops.api.runconfig import (
    EXIT_SIGTERM,
    PERMANENT_EXIT_CODES,
    REASON_TERMINATED,
    REASON_TRAINING_ERROR,
    TrainResult,
    TrainRunConfig,
)
from modelops_worker.environment import ENV_RESULT_DIR, write_result

log = logging.getLogger("modelops_worker.launch")


def procs_per_node(cfg: TrainRunConfig | FineTuneRunConfig) -> int:
    """Processes on this node: the operator's PET_NPROC_PER_NODE, else the config (auto: one per GPU)."""
    env = os.environ.get("PET_NPROC_PER_NODE")
    if env and env.isdigit():
        return int(env)
    if isinstance(cfg.distributed.procs_per_node, int):
        return cfg.distributed.procs_per_node
    if cfg.device != "cpu":
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    return 1


def nodes(cfg: TrainRunConfig | FineTuneRunConfig) -> int:
    env = os.environ.get("PET_NNODES", "")
    return int(env) if env.isdigit() else cfg.distributed.nodes


def needs_torchrun(cfg: TrainRunConfig | FineTuneRunConfig) -> bool:
    """True in the pod's main process of a distributed run; False inside torchrun's children."""
    if "LOCAL_RANK" in os.environ:
        return False
    return nodes(cfg) * procs_per_node(cfg) > 1


def torchrun_command(cfg: TrainRunConfig | FineTuneRunConfig) -> list[str]:
    n = nodes(cfg)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={n}",
        f"--nproc-per-node={procs_per_node(cfg)}",
        # Restarts are the operator's business (backoffLimit), for all pods together.
        "--max-restarts=0",
    ]
    if n == 1 and not os.environ.get("PET_MASTER_ADDR"):
        cmd.append("--standalone")
    # Otherwise torchrun takes PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT from the environment.
    return [*cmd, "-m", "modelops_worker.cli", "train"]


def pick_result(results: dict[int, dict[str, Any]], rc: int, stopped: bool = False) -> dict[str, Any] | None:
    """The one result the pod reports, from those its local ranks wrote.

    A permanent failure wins (retrying cannot help, whichever rank saw it). When the pod was sent
    SIGTERM, a rank's "Terminated" comes next: ranks notice the signal at different steps, and one
    that finds its peer gone reports a crash that is only an echo of the stop. Otherwise a crash comes
    next (when rank 1 crashes, torchrun stops rank 0, whose "Terminated" explains nothing), then local
    rank 0's result.
    """
    ordered = [r for _, r in sorted(results.items())]
    for r in ordered:
        if int(r.get("exitCode", 0)) in PERMANENT_EXIT_CODES:
            return r
    if stopped:
        for r in ordered:
            if int(r.get("exitCode", 0)) == EXIT_SIGTERM:
                return r
    for r in ordered:
        if r.get("status") == "Failed" and int(r.get("exitCode", 0)) != EXIT_SIGTERM:
            return r
    return results.get(0) or (ordered[0] if ordered else None)


def run_torchrun(cfg: TrainRunConfig | FineTuneRunConfig, termination_log: Path) -> int:
    """Run torchrun to completion, forwarding SIGTERM; returns the exit code the pod should have."""
    with contextlib.suppress(OSError):
        termination_log.write_text("")
    env = dict(os.environ)
    try:
        result_dir: Path | None = Path(tempfile.mkdtemp(prefix="modelops-results-"))
        env[ENV_RESULT_DIR] = str(result_dir)
    except OSError:
        # A read-only /tmp: local rank 0 writes the termination log itself.
        result_dir = None
    cmd = torchrun_command(cfg)
    log.info("starting %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env)
    stopped = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    rc = proc.wait()
    results: dict[int, dict[str, Any]] = {}
    if result_dir is not None:
        for f in result_dir.glob("local-rank-*.json"):
            with contextlib.suppress(OSError, ValueError):
                results[int(f.stem.rsplit("-", 1)[1])] = json.loads(f.read_text())
        shutil.rmtree(result_dir, ignore_errors=True)
    else:
        with contextlib.suppress(OSError, ValueError):
            results[0] = json.loads(termination_log.read_text() or "null") or {}
    chosen = pick_result({k: v for k, v in results.items() if v}, rc, stopped)
    if chosen is not None and "exitCode" in chosen:
        write_result(termination_log, chosen)
        code = int(chosen["exitCode"])
        return code if rc != 0 or code != 0 else 0
    if rc == 0:
        return 0
    reason = REASON_TERMINATED if stopped else REASON_TRAINING_ERROR
    code = EXIT_SIGTERM if stopped else (rc if rc > 0 else 1)
    write_result(
        termination_log,
        TrainResult(
            status="Failed",
            reason=reason,
            message=f"torchrun exited with {rc} and no process wrote a result; see the pod log",
            exit_code=code,
        ),
    )
    return code
