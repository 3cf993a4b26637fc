"""/healthz, /readyz and /metrics as the kubelet and Prometheus see them (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import aiohttp

from modelops.controllers.health import Readiness, start_servers
from modelops.controllers.metrics import OperatorMetrics
from modelops.controllers.registration import MAX_RETRY_DELAY, retry_delay


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_and(
    check: Callable[[Callable[[str], Awaitable[tuple[int, str]]], dict[str, object]], Awaitable[None]],
) -> None:
    state: dict[str, object] = {"started": False, "missing": ["trainingjobs.modelops.dev"]}
    metrics = OperatorMetrics()
    state["metrics"] = metrics
    readiness = Readiness(
        started=lambda: bool(state["started"]),
        missing=lambda: list(state["missing"]),  # type: ignore[call-overload]
    )

    async def main() -> None:
        runners = await start_servers(
            bind_address="127.0.0.1",
            health_port=free_port(),
            metrics_port=free_port(),
            readiness=readiness,
            metrics=metrics,
        )
        assert len(runners) == 2
        ports = [runner.addresses[0][1] for runner in runners]
        paths = {"/healthz": ports[0], "/readyz": ports[0], "/metrics": ports[1]}
        try:
            async with aiohttp.ClientSession() as session:

                async def get(path: str) -> tuple[int, str]:
                    async with session.get(f"http://127.0.0.1:{paths[path]}{path}") as response:
                        return response.status, await response.text()

                await check(get, state)
        finally:
            for runner in runners:
                await runner.cleanup()

    asyncio.run(main())


def test_healthz_answers_while_the_loop_runs() -> None:
    async def check(get: Callable[[str], Awaitable[tuple[int, str]]], state: dict[str, object]) -> None:
        assert await get("/healthz") == (200, "ok\n")

    serve_and(check)


def test_readyz_says_why_it_is_not_ready_until_started_and_crds_found() -> None:
    async def check(get: Callable[[str], Awaitable[tuple[int, str]]], state: dict[str, object]) -> None:
        code, text = await get("/readyz")
        assert code == 503 and "still starting" in text
        state["started"] = True
        code, text = await get("/readyz")
        assert code == 503
        assert "trainingjobs.modelops.dev" in text and "kubectl apply -f crds/" in text
        state["missing"] = []
        assert await get("/readyz") == (200, "ok\n")

    serve_and(check)


def test_metrics_exposes_reconciles_errors_durations_and_objects_by_phase() -> None:
    async def check(get: Callable[[str], Awaitable[tuple[int, str]]], state: dict[str, object]) -> None:
        metrics = state["metrics"]
        assert isinstance(metrics, OperatorMetrics)
        with metrics.timed("TrainingJob"):
            metrics.reconciled("TrainingJob", "progressing")
        metrics.failed("ModelVersion", "KeyError")
        # The shape of kopf's index by phase, which kopf keeps current from the watch.
        jobs: dict[str, list[str]] = {"Pending": ["a", "b"]}
        services: dict[str, list[str]] = {"Failed": ["c"]}
        metrics.track_objects("TrainingJob", jobs)
        metrics.track_objects("InferenceService", services)
        code, text = await get("/metrics")
        assert code == 200
        assert 'modelops_reconcile_total{kind="TrainingJob",result="progressing"} 1.0' in text
        assert 'modelops_reconcile_total{kind="ModelVersion",result="error"} 1.0' in text
        assert 'modelops_reconcile_errors_total{kind="ModelVersion",reason="KeyError"} 1.0' in text
        assert 'modelops_reconcile_duration_seconds_count{kind="TrainingJob"} 1.0' in text
        assert 'modelops_objects{kind="TrainingJob",phase="Pending"} 2.0' in text
        assert 'modelops_objects{kind="InferenceService",phase="Failed"} 1.0' in text
        # Read at scrape time: a phase change moves the object, a deletion removes it, no stale series.
        jobs["Pending"].remove("a")
        jobs["Running"] = ["a"]
        services["Failed"].clear()
        _, text = await get("/metrics")
        assert 'modelops_objects{kind="TrainingJob",phase="Pending"} 1.0' in text
        assert 'modelops_objects{kind="TrainingJob",phase="Running"} 1.0' in text
        assert 'kind="InferenceService",phase="Failed"' not in text

    serve_and(check)


def test_one_port_can_serve_all_three_paths() -> None:
    metrics = OperatorMetrics()
    readiness = Readiness(started=lambda: True, missing=lambda: [])

    async def main() -> None:
        # Port 0 twice means "equal ports": one server, so all paths share the one ephemeral port.
        runners = await start_servers(
            bind_address="127.0.0.1", health_port=0, metrics_port=0, readiness=readiness, metrics=metrics
        )
        try:
            assert len(runners) == 1
            port = runners[0].addresses[0][1]
            async with aiohttp.ClientSession() as session:
                for path in ("/healthz", "/readyz", "/metrics"):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        assert response.status == 200, path
        finally:
            for runner in runners:
                await runner.cleanup()

    asyncio.run(main())


def test_retry_backoff_grows_and_is_capped() -> None:
    assert [retry_delay(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(100) == MAX_RETRY_DELAY
