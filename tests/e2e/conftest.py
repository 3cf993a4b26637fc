"""Fixtures of the end-to-end tests: a real local API server, the real kubectl, the real operator process.

Everything talks over HTTP with a kubeconfig, exactly as in a cluster; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    what: str, check: Callable[[], bool], *, timeout: float = START_TIMEOUT, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f}s {what}\n{tail}")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclasses.dataclass
class Plane:
    """A running local API server and the kubectl to drive it."""

    dir: Path
    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result.stdout if check else result.stdout + result.stderr

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


@dataclasses.dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log: Path
    health: str
    metrics: str

    def http(self, path: str) -> tuple[int, str]:
        """GET a path of the health port (/healthz, /readyz) or the metrics port (/metrics)."""
        return http_get((self.metrics if path == "/metrics" else self.health) + path)


@contextlib.contextmanager
def running_apiserver(directory: Path) -> Iterator[Plane]:
    """`python -m modelops_local.apiserver --dir DIR`, ready once it has written DIR/kubeconfig."""
    log = directory / "apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelops_local.apiserver", "--dir", str(directory)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        kubeconfig = directory / "kubeconfig"
        wait_until(
            "waiting for the local API server to write its kubeconfig",
            lambda: kubeconfig.exists() or process.poll() is not None,
            log=log,
        )
        if process.poll() is not None:
            pytest.fail(f"the local API server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        yield Plane(directory, kubeconfig)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """A local API server shared by the tests of one module."""
    with running_apiserver(tmp_path_factory.mktemp("plane")) as running:
        yield running


@pytest.fixture
def empty_plane(tmp_path: Path) -> Iterator[Plane]:
    """A local API server of this test alone (nothing installed, not even the CRDs)."""
    with running_apiserver(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def start_operator() -> Iterator[Callable[..., Operator]]:
    """`start_operator(plane, *args)`: `modelops operator --kubeconfig ...` as users start it.

    Every operator started is stopped at the end of the module.
    """
    started: list[Operator] = []

    def _start(plane: Plane, *extra: str) -> Operator:
        health_port, metrics_port = free_port(), free_port()
        log = plane.dir / f"operator-{len(started)}.log"
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(BIN / "modelops"),
                    "operator",
                    "--kubeconfig",
                    str(plane.kubeconfig),
                    "--bind-address",
                    "127.0.0.1",
                    "--health-port",
                    str(health_port),
                    "--metrics-port",
                    str(metrics_port),
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        operator = Operator(
            process, log, f"http://127.0.0.1:{health_port}", f"http://127.0.0.1:{metrics_port}"
        )
        started.append(operator)
        return operator

    yield _start
    for operator in started:
        stop(operator.process)


@pytest.fixture
def wait() -> Callable[..., None]:
    """`wait(what, check, timeout=..., log=...)`: poll until check() is true, else fail saying what."""
    return wait_until
