"""Fixtures for the local control plane tests: a real API server process per session.

`apiserver` is shared by every local-plane test module (nodes and controllers reuse it): it starts
`python -m modelops_local.apiserver` in a temporary directory and yields where to reach it. Helpers
for tests live in `apiserver_harness.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apiserver_harness import ApiServer, Kubectl, run_kubectl, start_apiserver


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kubectl(apiserver: ApiServer) -> Kubectl:
    """`kubectl("get", "pods", stdin=None, check=True)` against the session API server."""
    return functools.partial(run_kubectl, apiserver)


@pytest.fixture(scope="session")
def k8s(apiserver: ApiServer) -> Iterator[object]:
    """The official Python client (`kubernetes.client.ApiClient`) configured from the kubeconfig."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def fresh_apiserver(tmp_path: Path) -> Iterator[Callable[..., ApiServer]]:
    """Start extra API servers (own directory, own flags); all are stopped after the test."""
    started: list[ApiServer] = []

    def start(*extra: str, directory: Path | None = None) -> ApiServer:
        server = start_apiserver(directory or tmp_path / f"apiserver-{len(started)}", *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
