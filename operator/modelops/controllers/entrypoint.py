"""`modelops operator`: run the kopf operator in a cluster, against a kubeconfig, or on the local plane.

The same code path serves all three; only the login source differs (see `login`). kopf runs in
standalone mode (no peering CRDs). With --leader-elect (the chart's default, for its two replicas)
the process first acquires a Lease (`leader`) and starts kopf only as the leader; a standby serves
/healthz, /readyz and /metrics and waits. A leader that cannot renew its Lease exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Collection
from typing import Any

import kopf
from kopf._cogs.structs.references import Insights  # kopf keeps this private; pinned kopf<2
from prometheus_client import Gauge

from modelops import GROUP
from modelops.controllers import handlers, kinds, leader, reconcile
from modelops.controllers.cluster import Cluster
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
    add_election_arguments(parser)


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip().removesuffix("s")
    try:
        return float(text) if text else default
    except ValueError:
        sys.stderr.write(f"modelops operator: warning: {name}={text!r} is not a number of seconds\n")
        return default


def add_election_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "leader election",
        "Run several replicas with one active: each waits for a coordination.k8s.io/v1 Lease before it "
        "reconciles. Every flag also reads an environment variable (in brackets).",
    )
    group.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(leader.ENV_ENABLED),
        help=f"hold a Lease before reconciling; off by default, on in the Helm chart [{leader.ENV_ENABLED}]",
    )
    group.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        default=os.environ.get(leader.ENV_NAMESPACE) or None,
        help="namespace of the Lease; default: the operator's own (POD_NAMESPACE, else the service "
        f"account's, else default) [{leader.ENV_NAMESPACE}]",
    )
    group.add_argument(
        "--leader-election-id",
        metavar="NAME",
        default=os.environ.get(leader.ENV_NAME) or leader.DEFAULT_LEASE_NAME,
        help=f"name of the Lease (default {leader.DEFAULT_LEASE_NAME}) [{leader.ENV_NAME}]",
    )
    group.add_argument(
        "--leader-election-identity",
        metavar="ID",
        default=None,
        help="this replica's holderIdentity; default: POD_NAME, else the host name and a random suffix",
    )
    for flag, env, default, what in (
        (
            "lease-duration",
            leader.ENV_LEASE_DURATION,
            leader.LEASE_DURATION,
            "a standby waits this long after the last renewal it saw before it takes over",
        ),
        (
            "renew-deadline",
            leader.ENV_RENEW_DEADLINE,
            leader.RENEW_DEADLINE,
            "the leader stops when it could not renew for this long",
        ),
        ("retry-period", leader.ENV_RETRY_PERIOD, leader.RETRY_PERIOD, "time between attempts"),
    ):
        group.add_argument(
            f"--leader-election-{flag}",
            type=float,
            metavar="SECONDS",
            default=_env_seconds(env, default),
            help=f"{what} (default {default:g}) [{env}]",
        )


def election_config(args: argparse.Namespace) -> leader.ElectionConfig | None:
    """The election asked for on the command line, or None; StartupError when it is unsafe."""
    if not getattr(args, "leader_elect", False):
        return None
    try:
        return leader.ElectionConfig(
            namespace=args.leader_election_namespace or leader.default_namespace(),
            name=args.leader_election_id,
            identity=args.leader_election_identity or leader.default_identity(),
            lease_duration=args.leader_election_lease_duration,
            renew_deadline=args.leader_election_renew_deadline,
            retry_period=args.leader_election_retry_period,
        )
    except leader.ElectionConfigError as error:
        raise StartupError(str(error)) from error


# The exit code of a leader that lost its Lease: the pod restarts and stands by.
LOST_LEADERSHIP_EXIT = 3


def exit_now() -> None:
    """Leave without running handlers to completion: another replica may already be reconciling."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(LOST_LEADERSHIP_EXIT)


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


async def serve(
    args: argparse.Namespace,
    *,
    stop: asyncio.Event | None = None,
    on_lost_leadership: Callable[[], None] = exit_now,
) -> None:
    """Run the operator until SIGTERM/SIGINT (or `stop`)."""
    election = election_config(args)
    kinds = kind_logics()
    metrics = OperatorMetrics()
    registry = kopf.OperatorRegistry()
    handlers.register(registry, kinds=kinds, metrics=metrics, kubeconfig=args.kubeconfig)

    leading = Gauge(
        "modelops_operator_leader",
        "1 while this replica reconciles (holds the leader Lease, or runs without leader election), "
        "0 while it stands by.",
        registry=metrics.registry,
    )
    leading.set(0 if election else 1)
    elector = (
        None
        if election is None
        else leader.LeaderElector(
            election,
            leader.ClusterLeases(Cluster(args.kubeconfig), election.namespace, election.name),
            on_change=lambda now_leading: leading.set(1 if now_leading else 0),
        )
    )

    def standing_by() -> bool:
        return elector is not None and not elector.leading

    insights = Insights()
    started = asyncio.Event()
    plurals = [plural for plural, _ in kinds]
    # A standby is ready, as controller-runtime's are: leadership is not readiness, and a rolling
    # update must be able to bring up the new replica while the old one still holds the Lease.
    readiness = Readiness(
        started=lambda: standing_by() or (started.is_set() and insights.ready_resources.is_set()),
        missing=lambda: [] if standing_by() else _missing_crds(insights, plurals),
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
        if elector is not None and not await _first(elector.acquire(), stop):
            return
        operator = asyncio.create_task(
            kopf.operator(
                registry=registry,
                insights=insights,
                standalone=True,
                clusterwide=not args.namespaces,
                namespaces=args.namespaces,
                ready_flag=started,
                stop_flag=stop,
            )
        )
        if elector is None:
            await operator
            return
        holding = asyncio.create_task(elector.hold())
        await asyncio.wait({operator, holding}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done() and not operator.done():
            on_lost_leadership()  # exits the process; returns only in tests
            operator.cancel()
            await asyncio.gather(operator, return_exceptions=True)
            return
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(elector.release), election.retry_period if election else 1
            )
        except Exception as error:  # the Lease then simply expires
            logger.warning("Leader election: could not release the Lease: %s", error)
        else:
            logger.info("Leader election: released the Lease for the next leader")
        operator.result()
    finally:
        for runner in runners:
            await runner.cleanup()


async def _first(acquiring: Any, stop: asyncio.Event | None) -> bool:
    """Wait for `acquiring`; False when `stop` is set first (or SIGTERM ends a standby)."""
    task = asyncio.ensure_future(acquiring)
    waiters: set[asyncio.Future[Any]] = {task}
    if stop is not None:
        waiters.add(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    return task.done() and not task.cancelled()


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
