"""A side virtual environment with the real clients of other projects, for tests that must use them.

KServe's and Triton's Python clients pin versions of grpcio, protobuf, numpy and friends that clash
with ours, so they live in their own venv (`.venv-side/` at the repository root, git-ignored), built by
the first test that needs it and reused after that. Building needs PyPI (pip) and takes a minute or
two; when it cannot be built the tests fail with pip's output, they do not skip: a missing client is a
broken test setup, not a reason to pass.

The clients never share a process: both register the `inference.*` protobuf messages under their own
file names, so each test runs one client script in a subprocess.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIDE_VENV = REPO / ".venv-side"
# What the side venv holds; changing this list rebuilds it.
PACKAGES = ("kserve==0.21.0", "tritonclient[grpc]==2.73.0")
_STAMP = SIDE_VENV / ".modelops-side-stamp"


def side_python() -> Path:
    """The side venv's python, with PACKAGES installed; builds it on first use (under a file lock, so
    parallel test processes build it once). Fails the test, with pip's output, when it cannot."""
    py = SIDE_VENV / "bin" / "python"
    want = "\n".join(PACKAGES)
    REPO.joinpath(".venv-side.lock").touch()
    with open(REPO / ".venv-side.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if py.exists() and _STAMP.exists() and _STAMP.read_text() == want:
            return py
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(SIDE_VENV)],
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        for cmd in steps:
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if out.returncode != 0:
                pytest.fail(
                    f"cannot build the side venv {SIDE_VENV} for KServe's and Triton's clients "
                    f"({' '.join(cmd[:4])} ... exited {out.returncode}); it needs PyPI:\n"
                    f"{(out.stdout + out.stderr)[-4000:]}"
                )
        _STAMP.write_text(want)
        return py
