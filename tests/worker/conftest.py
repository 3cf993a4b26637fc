"""Helpers for the worker tests: real PyTorch on real (small) data, in-process or as a real subprocess.

In-process runs go through `modelops_worker.cli.main`, the same entry point as the console script,
so exit codes and the termination message are the real ones; subprocesses are used where the process
boundary is the point (SIGKILL, SIGTERM, torchrun, the metrics endpoint).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from modelops_worker import cli  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The suite shares two cores with other work; one thread also makes results reproducible.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)
    torch.set_num_threads(before)


def config(**overrides: Any) -> dict[str, Any]:
    """A run configuration (wire format) for a small digits MLP, with top-level sections replaced."""
    cfg: dict[str, Any] = {
        "job": {"name": "digits", "namespace": "default", "uid": "u-1"},
        "model": {"architecture": "mlp", "hiddenSize": 64, "layers": 2, "dropout": 0.1},
        "dataset": {"builtin": "digits"},
        "hyperparameters": {"epochs": 3, "batchSize": 64, "learningRate": 0.003, "seed": 7},
        "checkpoint": {"intervalSeconds": 3600, "keep": 3},
        "output": {"modelName": "digits"},
    }
    cfg.update(overrides)
    return cfg


@dataclass
class Run:
    code: int
    result: dict[str, Any]
    ckpt: Path
    out: Path


def worker_env(tmp: Path, cfg: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "MODELOPS_RUN_CONFIG": json.dumps(cfg),
        "MODELOPS_CHECKPOINT_DIR": str(tmp / "ckpt"),
        "MODELOPS_OUTPUT_DIR": str(tmp / "out"),
        "MODELOPS_DATA_DIR": str(tmp / "data"),
        "MODELOPS_TERMINATION_LOG": str(tmp / "termination-log"),
        "MODELOPS_METRICS_PORT": "0",
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def read_result(tmp: Path) -> dict[str, Any]:
    text = (tmp / "termination-log").read_text()
    assert len(text.encode()) < 4096, "the termination message must fit the Kubernetes limit"
    return json.loads(text) if text else {}


def subprocess_env(tmp: Path, cfg: dict[str, Any], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "MODELOPS_"))}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(k, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(worker_env(tmp, cfg, **extra))
    return env


def start_worker(tmp: Path, cfg: dict[str, Any], **extra: str) -> subprocess.Popen[str]:
    """`modelops-worker train` as a real process (the console script of the venv)."""
    script = Path(sys.executable).with_name("modelops-worker")
    return subprocess.Popen(
        [str(script), "train"],
        env=subprocess_env(tmp, cfg, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """The helpers a worker test needs, bound to its temporary directory."""

    config = staticmethod(config)
    free_port = staticmethod(free_port)

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.ckpt = tmp / "ckpt"
        self.out = tmp / "out"
        self.data = tmp / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self._mp = monkeypatch

    def train(self, cfg: dict[str, Any], **extra: str) -> Run:
        """`modelops-worker train` in this process; returns exit code and termination message."""
        for k, v in worker_env(self.tmp, cfg, **extra).items():
            self._mp.setenv(k, v)
        for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "PET_NNODES", "PET_NPROC_PER_NODE"):
            self._mp.delenv(k, raising=False)
        code = cli.main(["train"])
        return Run(code, read_result(self.tmp), self.ckpt, self.out)

    def start(self, cfg: dict[str, Any], **extra: str) -> subprocess.Popen[str]:
        return start_worker(self.tmp, cfg, **extra)

    def result(self) -> dict[str, Any]:
        return read_result(self.tmp)

    def checkpoints(self) -> list[int]:
        """Steps of the complete checkpoints on disk, newest first."""
        if not self.ckpt.is_dir():
            return []
        return sorted(
            (int(p.name[5:]) for p in self.ckpt.iterdir() if p.name.startswith("ckpt-")), reverse=True
        )


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    return Worker(tmp_path, monkeypatch)
