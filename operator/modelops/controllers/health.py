"""HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz and /metrics.

Served by our own aiohttp apps on the operator's event loop: a loop that is stuck stops answering
/healthz, which is exactly what a liveness probe should notice. /readyz stays 503 until kopf has
finished its startup and found all our CRDs, and says what is missing, so `kubectl describe pod`
tells an administrator why the operator is not ready (typically: the CRDs are not installed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelops.controllers.metrics import OperatorMetrics


@dataclasses.dataclass
class Readiness:
    """What readiness waits for; filled in by the entrypoint from kopf's own state."""

    started: Callable[[], bool]
    missing: Callable[[], Collection[str]]

    def problems(self) -> list[str]:
        if not self.started():
            return ["the operator is still starting (login, CRD discovery, startup handlers)"]
        missing = sorted(self.missing())
        if missing:
            return [
                f"CRDs not found in the cluster: {', '.join(missing)}; install them with "
                "`kubectl apply -f crds/` (or the Helm chart) and the operator picks them up"
            ]
        return []


def health_routes(readiness: Readiness) -> list[aiohttp.web.RouteDef]:
    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok\n")

    async def readyz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        problems = readiness.problems()
        if problems:
            return aiohttp.web.Response(status=503, text="not ready: " + "; ".join(problems) + "\n")
        return aiohttp.web.Response(text="ok\n")

    return [aiohttp.web.get("/healthz", healthz), aiohttp.web.get("/readyz", readyz)]


def metrics_routes(metrics: OperatorMetrics) -> list[aiohttp.web.RouteDef]:
    async def serve_metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        response = aiohttp.web.Response(body=generate_latest(metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [aiohttp.web.get("/metrics", serve_metrics)]


async def start_servers(
    *, bind_address: str, health_port: int, metrics_port: int, readiness: Readiness, metrics: OperatorMetrics
) -> list[aiohttp.web.AppRunner]:
    """Start the endpoints; with equal ports, one server answers all three paths."""
    if health_port == metrics_port:
        plan = [(health_port, [*health_routes(readiness), *metrics_routes(metrics)])]
    else:
        plan = [(health_port, health_routes(readiness)), (metrics_port, metrics_routes(metrics))]
    runners = []
    try:
        for port, routes in plan:
            app = aiohttp.web.Application()
            app.add_routes(routes)
            runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            runners.append(runner)
            await aiohttp.web.TCPSite(runner, bind_address, port).start()
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        raise
    return runners
