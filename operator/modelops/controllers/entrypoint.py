"""`modelops operator`: run the kopf operator in a cluster, against a kubeconfig, or on the local plane.

The same code path serves all three; only the login source differs (see `login`). kopf runs in
standalone mode (no peering CRDs: one replica, or leader election left to the Deployment strategy).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Collection
from typing import Any

import kopf
from kopf._cogs.structs.references import Insights  # kopf keeps this private; pinned kopf<2

from modelops import GROUP
from modelops.controllers import handlers, kinds, reconcile
from modelops.controllers.health import Readiness, start_servers
from modelops.controllers.metrics import OperatorMetrics

logger = logging.getLogger("modelops.operator")


class StartupError(Exception):
    """The operator cannot start for a reason the user can fix; the message says how."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig to use; default: $KUBECONFIG, else the in-cluster service account, else ~/.kube/config",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        metavar="NS",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; globs like 'team-*' allowed); default: all namespaces",
    )
    parser.add_argument(
        "--health-port", type=int, default=8081, help="port of /healthz and /readyz (default 8081)"
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics (default 8080)")
    parser.add_argument(
        "--bind-address",
        default="0.0.0.0",
        help="address the health and metrics ports listen on (default 0.0.0.0)",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log line format (default text)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def kind_logics() -> list[tuple[str, reconcile.KindLogic[Any]]]:
    """Each CRD plural with the logic that reconciles it (the table is `kinds.CONTROLLERS`)."""
    return kinds.kind_logics()


def configure_logging(*, log_format: str, verbose: bool) -> None:
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object" if log_format == "json" else None,
    )
    # The kubernetes client logs request headers (with the bearer token) at debug level.
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _missing_crds(insights: Insights, plurals: Collection[str]) -> list[str]:
    watched = {r.plural for r in insights.watched_resources if r.group == GROUP}
    return [f"{plural}.{GROUP}" for plural in plurals if plural not in watched]


async def serve(args: argparse.Namespace, *, stop: asyncio.Event | None = None) -> None:
    """Run the operator until SIGTERM/SIGINT (or `stop`)."""
    kinds = kind_logics()
    metrics = OperatorMetrics()
    registry = kopf.OperatorRegistry()
    handlers.register(registry, kinds=kinds, metrics=metrics, kubeconfig=args.kubeconfig)

    insights = Insights()
    started = asyncio.Event()
    plurals = [plural for plural, _ in kinds]
    readiness = Readiness(
        started=lambda: started.is_set() and insights.ready_resources.is_set(),
        missing=lambda: _missing_crds(insights, plurals),
    )
    try:
        runners = await start_servers(
            bind_address=args.bind_address,
            health_port=args.health_port,
            metrics_port=args.metrics_port,
            readiness=readiness,
            metrics=metrics,
        )
    except OSError as error:
        raise StartupError(
            f"cannot listen on {args.bind_address} ports {args.health_port}/{args.metrics_port}: {error}; "
            "change --health-port, --metrics-port or --bind-address"
        ) from error
    logger.info(
        "Serving /healthz and /readyz on %s:%d, /metrics on %s:%d; watching %s",
        args.bind_address,
        args.health_port,
        args.bind_address,
        args.metrics_port,
        ", ".join(args.namespaces) if args.namespaces else "all namespaces",
    )
    try:
        await kopf.operator(
            registry=registry,
            insights=insights,
            standalone=True,
            clusterwide=not args.namespaces,
            namespaces=args.namespaces,
            ready_flag=started,
            stop_flag=stop,
        )
    finally:
        for runner in runners:
            await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    # A usage error, reported like argparse reports one (exit 2), before anything starts: kopf would
    # retry a failed login forever, and a typo in a path should end the command at once.
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        sys.stderr.write(
            f"modelops operator: error: --kubeconfig {args.kubeconfig}: no such file; "
            "pass the path of an existing kubeconfig\n"
        )
        return 2
    configure_logging(log_format=args.log_format, verbose=args.verbose)
    try:
        asyncio.run(serve(args))
    except StartupError as error:
        logger.error("Cannot start the operator: %s", error)
        return 1
    except Exception as error:
        # kopf has logged the traceback already (e.g. the API server unreachable after all retries);
        # exit non-zero so the pod restarts with backoff, without a second traceback.
        logger.error("The operator stopped: %s: %s", type(error).__name__, error)
        return 1
    return 0
