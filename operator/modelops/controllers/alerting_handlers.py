"""The kopf registrations of the alerting children of every kind (their own handler ids and module).

For TrainingJob and InferenceService: handler `alerts` writes the object's rule object (a
PrometheusRule, or a ConfigMap when Prometheus Operator is absent) on create and spec change, and
timer `alerts-sync` re-applies it a few seconds after the operator starts and every few minutes, so a
rule object deleted by hand comes back and Prometheus Operator installed later is picked up. Both
write only `status.alerting` (their own status key, merged with whatever the kind's reconcile writes
in the same patch), and only when it changed.

For every kind: index `<plural>_alerting_state` holds what the per-object gauges of `metrics` read
(phase, restarts, replicas, last rollback, backup times, unfinished handling), so the alert rules
always refer to series the operator really exports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import kopf
import kubernetes

from modelops import GROUP, VERSION
from modelops.builders import alerts
from modelops.controllers import alerting, reconcile
from modelops.controllers.cluster import Cluster, resource_path
from modelops.controllers.metrics import OperatorMetrics, object_state

# How often each object's rule object is re-applied (and Prometheus Operator looked for again).
SYNC_INTERVAL = 300.0
# After the operator starts, existing objects are looked at by the timer, not by a resume handler: a
# second resume handler beside the kind's own makes kopf write progress annotations on every object
# at every start, and a restarted operator should find nothing to write.
START_DELAY = 5.0
# How long discovery's yes is trusted (Prometheus Operator uninstalled is noticed this late).
DISCOVERY_TTL = 60.0
RETRY_DELAY = 10.0


def state_index_id(plural: str) -> str:
    return f"{plural}_alerting_state"


class PrometheusOperatorDiscovery:
    """Whether the cluster serves monitoring.coreos.com/v1 prometheusrules.

    A yes is trusted for a minute (one GET per minute, not per object); a no is asked again each time
    (handling cycles are rare), so an object created right after Prometheus Operator is installed
    already gets a PrometheusRule.
    """

    def __init__(self, cluster: Cluster, ttl: float = DISCOVERY_TTL) -> None:
        self._cluster, self._ttl = cluster, ttl
        self._seen_at: float | None = None

    def present(self) -> bool:
        now = time.monotonic()
        if self._seen_at is not None and now - self._seen_at <= self._ttl:
            return True
        found = self._cluster.get(f"/apis/{alerts.PROMETHEUS_RULE_API_VERSION}")
        names = {str(r.get("name")) for r in (found or {}).get("resources") or []}
        self._seen_at = now if alerts.PROMETHEUS_RULE_PLURAL in names else None
        return self._seen_at is not None


def _rule_path(rule_kind: str, namespace: str, name: str) -> str:
    if rule_kind == alerting.PROMETHEUS_RULE:
        return resource_path(
            alerts.PROMETHEUS_RULE_API_VERSION, alerts.PROMETHEUS_RULE_PLURAL, namespace, name
        )
    return resource_path("v1", "configmaps", namespace, name)


def sync_alerts(
    cluster: Cluster,
    discovery: PrometheusOperatorDiscovery,
    options: alerts.Options,
    kind: str,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    metrics: OperatorMetrics,
) -> None:
    """Carry out `alerting.plan` for one object; status.alerting into kopf's patch."""
    try:
        decided = alerting.plan(kind, body, prometheus_operator=discovery.present(), options=options)
        if decided is None:
            return
        namespace = str(body.metadata.namespace)
        name = alerts.rule_name(kind, str(body.metadata.name))
        manifest = decided.manifest
        if manifest is not None:
            path = _rule_path(manifest["kind"], namespace, name)
            if alerting.foreign(cluster.get(path), body):
                decided = alerting.conflict(kind, body, manifest["kind"])
            else:
                cluster.apply(path, manifest)
        for old_kind in decided.delete:
            cluster.delete(_rule_path(old_kind, namespace, name))
    except kubernetes.client.ApiException as error:
        metrics.failed(kind, f"Alerts{type(error).__name__}")
        logger.warning(
            f"Alert rules not written ({error.status} {error.reason}); retry in {RETRY_DELAY:.0f}s"
        )
        raise kopf.TemporaryError(f"alert rules: {error.status} {error.reason}", delay=RETRY_DELAY) from error
    if alerting.changed(body, decided.status):
        patch.status["alerting"] = decided.status
    if decided.event is not None:
        type_, reason, message = decided.event
        kopf.event(body, type=type_, reason=reason, message=message)
        logger.info(f"{reason}: {message}")


class _QuietTimer(logging.Filter):
    """Drops kopf's "Timer 'alerts-sync' succeeded.": a line per object every 5 minutes says nothing.

    Failures are still logged, and every change of where the rules live is logged with an Event.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Timer 'alerts-sync' succeeded."


def register(
    registry: kopf.OperatorRegistry,
    kinds: Sequence[tuple[str, reconcile.KindLogic[Any]]],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    options = alerts.Options.from_environ()
    discovery = PrometheusOperatorDiscovery(cluster)
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietTimer) for f in objects_logger.filters):
        objects_logger.addFilter(_QuietTimer())

    @kopf.on.startup(registry=registry, id="track-alerting-state")
    def _track(**kwargs: Any) -> None:
        for plural, logic in kinds:
            metrics.track_states(logic.kind, kwargs[state_index_id(plural)])

    for plural, logic in kinds:
        _register_index(registry, plural, logic.kind)
        if logic.kind in alerting.KINDS:
            _register_alerts(registry, plural, logic.kind, metrics, cluster, discovery, options)


def _register_index(registry: kopf.OperatorRegistry, plural: str, kind: str) -> None:
    @kopf.index(GROUP, VERSION, plural, registry=registry, id=state_index_id(plural))
    def _state(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(str(body.metadata.namespace), str(body.metadata.name)): object_state(kind, body)}


def _register_alerts(
    registry: kopf.OperatorRegistry,
    plural: str,
    kind: str,
    metrics: OperatorMetrics,
    cluster: Cluster,
    discovery: PrometheusOperatorDiscovery,
    options: alerts.Options,
) -> None:
    @kopf.on.update(GROUP, VERSION, plural, registry=registry, id="alerts", field="spec")
    @kopf.on.create(GROUP, VERSION, plural, registry=registry, id="alerts")
    def _alerts(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        sync_alerts(cluster, discovery, options, kind, body, patch, logger, metrics)

    @kopf.timer(
        GROUP,
        VERSION,
        plural,
        registry=registry,
        id="alerts-sync",
        interval=SYNC_INTERVAL,
        initial_delay=START_DELAY,
    )
    def _alerts_sync(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        sync_alerts(cluster, discovery, options, kind, body, patch, logger, metrics)
