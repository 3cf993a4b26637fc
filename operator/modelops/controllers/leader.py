"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Two operator replicas must never reconcile at once: both would create children, patch statuses and
post events for the same objects. So each replica first acquires a Lease (holderIdentity = its pod
name) and only then starts kopf; a standby retries every `retry_period` and takes over when the
holder stops renewing for `lease_duration`. The holder renews every `retry_period`; when it has not
managed to renew for `renew_deadline` it has lost the Lease and stops reconciling at once (the
entrypoint exits; the Deployment restarts the pod, which then stands by). renew_deadline <
lease_duration is what makes this safe: the old leader stops before anyone may take over.

Expiry is judged as client-go judges it, by this process's own clock: the time we *observed* the
record last change, plus its leaseDurationSeconds, never the holder's renewTime (so clock skew
between nodes cannot make a live lease look expired). A holder that stops cleanly (SIGTERM, a
rolling update) releases the Lease, so the standby takes over within one retry period instead of a
lease duration.

Why a Lease rather than kopf's peering: peering needs its own cluster-scoped CRDs and ClusterRole,
and kopf peers *pause* rather than exit, so a partitioned leader keeps its watches and in-flight
handlers; a Lease is the primitive the Kubernetes controllers themselves use (kube-controller-manager,
controller-runtime), `kubectl get lease` shows who leads, and it needs only a Role in one namespace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import kubernetes

from modelops.controllers.cluster import Cluster, resource_path

logger = logging.getLogger("modelops.leader")

# client-go's defaults (and controller-runtime's): LeaseDuration 15s, RenewDeadline 10s, RetryPeriod 2s.
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
JITTER = 1.2  # client-go's JitterFactor: retries wait retry_period * [1, 1.2)
DEFAULT_LEASE_NAME = "modelops-operator"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

ENV_ENABLED = "MODELOPS_LEADER_ELECT"
ENV_NAMESPACE = "MODELOPS_LEADER_ELECTION_NAMESPACE"
ENV_NAME = "MODELOPS_LEADER_ELECTION_ID"
ENV_LEASE_DURATION = "MODELOPS_LEADER_ELECTION_LEASE_DURATION"
ENV_RENEW_DEADLINE = "MODELOPS_LEADER_ELECTION_RENEW_DEADLINE"
ENV_RETRY_PERIOD = "MODELOPS_LEADER_ELECTION_RETRY_PERIOD"


def rules(lease_name: str) -> list[dict[str, Any]]:
    """The RBAC rules of an election, for a Role in the Lease's namespace (the chart's, tested equal).

    create cannot name its object (it does not exist yet); get and update are limited to the Lease.
    """
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease_name],
            "verbs": ["get", "update"],
        },
    ]


class ElectionConfigError(ValueError):
    """Settings that cannot make a safe election; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        # The same checks as client-go's NewLeaderElector, with the flag names a user sets.
        if self.lease_duration <= self.renew_deadline:
            raise ElectionConfigError(
                f"--leader-election-lease-duration ({self.lease_duration:g}s) must be greater than "
                f"--leader-election-renew-deadline ({self.renew_deadline:g}s)"
            )
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ElectionConfigError(
                f"--leader-election-renew-deadline ({self.renew_deadline:g}s) must be greater than "
                f"{JITTER:g} x --leader-election-retry-period ({self.retry_period:g}s)"
            )
        if self.retry_period <= 0:
            raise ElectionConfigError("--leader-election-retry-period must be positive")
        if not self.identity:
            raise ElectionConfigError("the leader election identity is empty: set POD_NAME")


def default_identity(environ: Mapping[str, str] | None = None) -> str:
    """The pod's name in a pod (the chart sets POD_NAME); elsewhere host name and a random suffix."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def default_namespace(environ: Mapping[str, str] | None = None) -> str:
    """The operator's own namespace: POD_NAMESPACE, else the service account's, else `default`."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Leases(Protocol):
    """The three calls an election makes on its Lease."""

    def get(self) -> dict[str, Any] | None: ...

    def create(self, spec: Mapping[str, Any]) -> dict[str, Any] | None: ...

    def replace(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any] | None: ...


class ClusterLeases:
    """The Lease `namespace/name` through the operator's API client; None answers a lost race (409)."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self._cluster = cluster
        self._namespace, self._name = namespace, name
        self._collection = resource_path("coordination.k8s.io/v1", "leases", namespace)

    def get(self) -> dict[str, Any] | None:
        return self._cluster.get(f"{self._collection}/{self._name}")

    def create(self, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "labels": {"app.kubernetes.io/managed-by": "modelops", "app.kubernetes.io/name": "modelops"},
            },
            "spec": dict(spec),
        }
        return self._cluster.create_at(self._collection, body)

    def replace(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any] | None:
        # A PUT carrying the resourceVersion we read: if anyone wrote in between, 409 and we lost.
        body = {**lease, "spec": dict(spec)}
        try:
            return dict(self._cluster.request("PUT", f"{self._collection}/{self._name}", body))
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return None
            raise


class LeaderElector:
    """Acquire, renew and release one Lease. Not thread-safe: one task drives it."""

    def __init__(
        self,
        config: ElectionConfig,
        leases: Leases,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self._leases = leases
        self._clock = clock
        self._on_change = on_change
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self.leading = False
        self.holder: str | None = None  # who holds the Lease, as last seen

    # -- one attempt -------------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt (blocking I/O): True when this process holds the Lease afterwards."""
        cfg = self.config
        now = _now()
        mine = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": max(1, round(cfg.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        lease = self._leases.get()
        if lease is None:
            created = self._leases.create(mine)
            return self._took(created, mine)
        spec = dict(lease.get("spec") or {})
        if spec != self._observed:
            self._observed, self._observed_at = spec, self._clock()
        holder = spec.get("holderIdentity") or ""
        self.holder = holder or None
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        if holder and holder != cfg.identity and self._observed_at + duration > self._clock():
            return self._set_leading(False)
        if holder == cfg.identity:
            mine["acquireTime"] = spec.get("acquireTime") or now
            mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0)
        else:
            mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        return self._took(self._leases.replace(lease, mine), mine)

    def _took(self, answer: dict[str, Any] | None, spec: dict[str, Any]) -> bool:
        if answer is None:
            return self._set_leading(False)
        self._observed, self._observed_at = dict(answer.get("spec") or spec), self._clock()
        self.holder = self.config.identity
        return self._set_leading(True)

    def _set_leading(self, leading: bool) -> bool:
        if leading != self.leading:
            self.leading = leading
            if self._on_change is not None:
                self._on_change(leading)
        return leading

    def release(self) -> bool:
        """Give the Lease up (a clean stop), so a standby takes over now rather than at expiry."""
        if not self.leading:
            return False
        lease = self._leases.get()
        spec = dict((lease or {}).get("spec") or {})
        if lease is None or spec.get("holderIdentity") != self.config.identity:
            return self._set_leading(False)
        now = _now()
        released = {
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0),
        }
        done = self._leases.replace(lease, released) is not None
        self._set_leading(False)
        return done

    # -- the loops ---------------------------------------------------------------------------------

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.try_acquire_or_renew), timeout)
        except Exception as error:
            # Timeouts, refused connections (urllib3's MaxRetryError is no OSError), 5xx, 403: one
            # failed attempt. Only the renew deadline decides that leadership is lost.
            logger.warning("Leader election: cannot reach the Lease %s: %s", self._where(), _brief(error))
            return False

    def _where(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def _pause(self) -> float:
        return self.config.retry_period * random.uniform(1.0, JITTER)

    async def acquire(self) -> None:
        """Return once this process holds the Lease (retrying every retry period, forever)."""
        logger.info("Leader election: %s waits for the Lease %s", self.config.identity, self._where())
        reported: str | None = None
        while not await self._attempt(self.config.renew_deadline):
            if self.holder and self.holder != reported:
                logger.info("Leader election: standing by, %s holds the Lease", self.holder)
                reported = self.holder
            await asyncio.sleep(self._pause())
        logger.info("Leader election: %s acquired the Lease %s", self.config.identity, self._where())

    async def hold(self) -> None:
        """Renew every retry period; return when the Lease could not be renewed for renew_deadline."""
        last = self._clock()
        while True:
            await asyncio.sleep(self.config.retry_period)
            left = self.config.renew_deadline - (self._clock() - last)
            if left > 0 and await self._attempt(left):
                last = self._clock()
                continue
            if self._clock() - last >= self.config.renew_deadline:
                self._set_leading(False)
                logger.error(
                    "Leader election: %s could not renew the Lease %s for %gs (now held by %s): "
                    "stopping at once so that two operators never reconcile together",
                    self.config.identity,
                    self._where(),
                    self.config.renew_deadline,
                    self.holder or "nobody",
                )
                return


def _brief(error: BaseException) -> str:
    if isinstance(error, kubernetes.client.ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
