"""The console's HTTP surface that needs no cluster: it refuses foreign Hosts and anything but reads."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient, TestServer

from modelops.console import server
from modelops.console.reader import Reader, ReadError


def with_client(check: Callable[[TestClient], Awaitable[None]], **kwargs: object) -> None:
    # A kubeconfig that does not exist: these requests must never reach the cluster.
    console = server.Console(Reader("/nonexistent/kubeconfig"), context="test")

    async def go() -> None:
        app = server.make_app(console, **kwargs)  # type: ignore[arg-type]
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(go())


def test_a_foreign_host_is_refused_and_writes_are_not_allowed() -> None:
    async def check(client: TestClient) -> None:
        rebound = await client.get("/", headers={"Host": "attacker.example:8765"})
        assert rebound.status == 421
        assert (await client.get("/healthz")).status == 200
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert (await client.request(method, "/")).status == 405
        response = await client.get("/static/console.css")
        assert response.status == 200
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]

    with_client(check, allowed_hosts=server.LOOPBACK_HOSTS)


def test_an_unreachable_cluster_is_a_page_that_says_so() -> None:
    async def check(client: TestClient) -> None:
        response = await client.get("/")
        assert response.status == 502
        assert "Cluster unavailable" in await response.text()

    with_client(check, allowed_hosts=None)


def test_secrets_are_never_read() -> None:
    reader = Reader("/nonexistent/kubeconfig")

    async def go() -> None:
        try:
            await reader.get("/api/v1/namespaces/default/secrets")
        except ReadError as error:
            assert error.status == 403
        else:
            raise AssertionError("a Secret path was requested")

    asyncio.run(go())


def test_hosts_allowed_by_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    assert server.allowed(parser.parse_args([])) == (*server.LOOPBACK_HOSTS, "127.0.0.1")
    assert "console.example" in (
        server.allowed(parser.parse_args(["--allowed-host", "console.example"])) or ()
    )
    assert server.allowed(parser.parse_args(["--allowed-host", "*", "--address", "0.0.0.0"])) is None
