"""The operator's kopf registrations: what is not any one kind's (login, settings, indices), then every kind.

Each kind registers its own handlers (`<kind>_handlers.register`, listed in `kinds.CONTROLLERS`), and
the cross-cutting children of all kinds (alert rules, backups) register theirs. Everything is registered
on a registry passed in (not kopf's global one), so importing this module has no side effects and a
test can build an operator of its own. The shared glue (`reconcile_object`, `retry_delay`,
`EventPoster`) lives in `registration`; the names below are kept for modules that import them from here.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import kopf

from modelops import GROUP, VERSION
from modelops.controllers import alerting_handlers, backup_handlers, login, reconcile
from modelops.controllers import kinds as kinds_table
from modelops.controllers import settings as operator_settings
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics
from modelops.controllers.registration import (  # re-exported for older imports
    MAX_RETRY_DELAY,
    EventPoster,
    reconcile_object,
    register_kind,
    retry_delay,
)

LOGIN_RETRY_DELAY = 5.0

__all__ = [
    "LOGIN_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "EventPoster",
    "phase_index_id",
    "reconcile_object",
    "register",
    "register_kind",
    "retry_delay",
]


def phase_index_id(plural: str) -> str:
    return f"{plural}_by_phase"


def register(
    registry: kopf.OperatorRegistry,
    *,
    kinds: Sequence[tuple[str, reconcile.KindLogic[Any]]],
    metrics: OperatorMetrics,
    kubeconfig: str | None,
) -> None:
    """Register the operator's handlers; `kinds` pairs each CRD plural with its logic."""

    # A failed login is retried soon: a mounted token or kubeconfig may appear a moment later.
    @kopf.on.login(registry=registry, id="login", backoff=LOGIN_RETRY_DELAY)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return login.connection_info(kubeconfig)

    @kopf.on.startup(registry=registry, id="configure-settings")
    def _startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        operator_settings.configure(settings, instance=socket.gethostname())
        # kopf hands every handler its indices by id; the metrics read them at scrape time.
        for plural, logic in kinds:
            metrics.track_objects(logic.kind, kwargs[phase_index_id(plural)])

    cluster = Cluster(kubeconfig)
    for plural, logic in kinds:
        controller = kinds_table.CONTROLLERS.get(logic.kind)
        # A kind without a controller of its own (tests) is validated and nothing more.
        register_one = controller.register if controller is not None else register_kind
        register_one(registry, plural, logic, metrics, cluster)
        _register_index(registry, plural)
    # Cross-cutting children of all kinds, each in its own handlers (their own ids), so they never
    # stand in the way of a kind's reconcile.
    alerting_handlers.register(registry, kinds, metrics, cluster)
    backup_handlers.register(registry, kinds, metrics, cluster)


def _register_index(registry: kopf.OperatorRegistry, plural: str) -> None:
    @kopf.index(GROUP, VERSION, plural, registry=registry, id=phase_index_id(plural))
    def _by_phase(body: kopf.Body, **_: Any) -> dict[str, str]:
        return {str(body.get("status", {}).get("phase") or "Unknown"): str(body.metadata.uid)}
