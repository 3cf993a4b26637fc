"""Fixtures of the end-to-end tests: the local API server and the operator, started as real processes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from e2ekit import BIN, Operator, Plane, free_port, stop, wait_until


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """`python -m modelops.local.apiserver --dir DIR`, ready once it has written DIR/kubeconfig."""
    if importlib.util.find_spec("modelops.local.apiserver.__main__") is None:
        pytest.skip("the local API server (python -m modelops.local.apiserver) is not built yet")
    directory = tmp_path_factory.mktemp("plane")
    log = directory / "apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelops.local.apiserver", "--dir", str(directory)],
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
def start_operator(plane: Plane) -> Iterator[Callable[..., Operator]]:
    """Start `modelops operator --kubeconfig ...` as users do; every started one is stopped at the end."""
    started: list[Operator] = []

    def _start(*extra: str) -> Operator:
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
