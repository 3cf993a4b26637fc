"""Several serving processes per pod, sharing its ports: past one Python process's per-request cost.

One `modelops-worker serve` process spends most of a small model's request on Python: HTTP parsing,
the protocol, the hand-off to the forward thread. On a pod with several CPUs one event loop cannot
use them. With `MODELOPS_SERVE_PROCESSES` set (a number, or `auto`: the container's cgroup CPU limit,
1 when there is none), this supervisor starts that many serving processes instead of serving itself.
Each loads and verifies the model, has its own batcher and forward thread, and binds the REST and gRPC
ports with SO_REUSEPORT, so the kernel spreads connections over them.

What the pod shows stays one server's:

- Metrics: the processes write their series to a shared directory (prometheus_client's multiprocess
  mode, `PROMETHEUS_MULTIPROC_DIR`, created empty here) and whichever process answers a scrape sums
  them all, so counters never jump between scrapes (the canary analysis reads them as one pod's).
  The process collector's CPU and memory are the answering process's own.
- Lifecycle: SIGTERM and SIGINT are forwarded to every process, each drains (`drainSeconds`), and the
  supervisor exits when all have. When one process ends on its own (a bad artifact: exit 65 with its
  reason in the termination message, which every process writes alike), the others are stopped and
  the supervisor exits with that process's code, so the pod reports the reason.
- Threads: the CPUs are split between the processes (OMP_NUM_THREADS, at least one each).

Readiness is per process: a probe may reach one that is still loading, which answers 503 until it is
ready, as a single process does.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("modelops_worker.serve")

ENV_PROCESSES = "MODELOPS_SERVE_PROCESSES"
# Set by the supervisor for its children: bind with SO_REUSEPORT, and do not supervise again.
ENV_CHILD = "MODELOPS_SERVE_CHILD"
ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The container's CPU limit in whole CPUs (cgroup v2), None when unlimited or unknown. (As
    `model.cpu_limit`, which this process does not import: the supervisor never loads torch.)"""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    cpus = len(os.sched_getaffinity(0))
    limit = cpu_limit()
    return min(cpus, limit) if limit else cpus


def _gpu_visible() -> bool:
    for var in ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(var, "").strip().lower()
        if value and value not in ("none", "void", "-1"):
            return True
    return False


def process_count(device: str = "auto") -> int:
    """How many serving processes `MODELOPS_SERVE_PROCESSES` asks for: 1 when unset, in a child, or
    with a GPU (every process would hold its own copy of the model in device memory)."""
    raw = os.environ.get(ENV_PROCESSES, "").strip().lower()
    if not raw or is_child() or device == "cuda" or (device == "auto" and _gpu_visible()):
        return 1
    if raw == "auto":
        return max(1, cpu_limit() or 1)
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), 64)
    raise ValueError(f"{ENV_PROCESSES}={raw!r} must be a positive number of processes or `auto`")


def is_child() -> bool:
    return bool(os.environ.get(ENV_CHILD))


def run(count: int, argv: list[str], cpus: int) -> int:
    """Run `count` copies of `modelops-worker serve <argv>` until SIGTERM; the exit code to report."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="modelops-serve-metrics-"))
    env = dict(os.environ)
    env[ENV_CHILD] = "1"
    env[ENV_MULTIPROC_DIR] = str(metrics_dir)
    if not os.environ.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(max(1, cpus // count))
    cmd = [sys.executable, "-m", "modelops_worker.cli", "serve", *argv]
    children = [subprocess.Popen(cmd, env=env) for _ in range(count)]
    log.info("serving with %d processes (pids %s), sharing the ports", count, [c.pid for c in children])
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while any(c.poll() is None for c in children):
            ended = [c for c in children if c.returncode is not None]
            if ended and not stopping:
                # One ended on its own: the pod cannot serve as configured; stop the rest.
                first = ended[0]
                code = first.returncode if first.returncode >= 0 else 128 - first.returncode
                log.error(
                    "serving process %d exited %d on its own; stopping the others",
                    first.pid,
                    first.returncode,
                )
                stopping = True
                for c in children:
                    if c.poll() is None:
                        c.send_signal(signal.SIGTERM)
            time.sleep(0.1)
        if code == 0:
            codes = [c.returncode for c in children]
            code = next((c if c >= 0 else 128 - c for c in codes if c != 0), 0)
        return code
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)
