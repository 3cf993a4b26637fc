"""Prometheus metrics of the operator, on their own registry so tests and imports never collide.

The object gauge is computed at scrape time from kopf's per-kind index of objects by `status.phase`
(kopf keeps it current from the watch, deletions included), so a deleted object or a phase change
never leaves a stale series behind. Objects not reconciled yet count under phase "Unknown".

The per-object gauges the alert rules read (phase, restarts, replicas, last canary rollback, backup
times, see docs/alerts.md) come the same way from a second index per kind, filled by
`object_state(kind, body)`: they are read from each object's status, so they survive an operator
restart and vanish with the object. Other controllers need not call anything to feed them; they only
write their status.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PhaseIndex = Mapping[str, Collection[object]]
"""phase -> the objects in that phase (a kopf index of the kind, or any mapping of that shape)."""


class _ObjectsCollector(Collector):
    def __init__(self) -> None:
        self.indices: dict[str, PhaseIndex] = {}  # kind -> its phase index

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "modelops_objects", "Objects of each kind by status.phase, as watched.", labels=["kind", "phase"]
        )
        for kind, index in sorted(self.indices.items()):
            for phase in sorted(index):
                if count := len(index[phase]):
                    family.add_metric([kind, phase], count)
        yield family


StateIndex = Mapping[object, Collection[Mapping[str, Any]]]
"""(namespace, name) -> the `object_state` of that object (a kopf index of the kind)."""

# kopf keeps a handler's progress in annotations under our prefix while a handling cycle is unfinished
# (running, or waiting for a retry); it purges them once every handler is done.
PROGRESS_ANNOTATION_PREFIX = "modelops.dev/"


def timestamp_seconds(value: object) -> float | None:
    """Unix seconds of an RFC 3339 timestamp from a status ("2026-01-02T03:04:05Z"), None if absent/bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _pending(annotations: Mapping[str, Any]) -> bool:
    for key, value in annotations.items():
        if not key.startswith(PROGRESS_ANNOTATION_PREFIX) or not isinstance(value, str):
            continue
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and "started" in record
            and not (record.get("success") or record.get("failure"))
        ):
            return True
    return False


def object_state(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What the per-object gauges need from one object, read from its status (pure; small)."""
    meta, spec, st = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    state: dict[str, Any] = {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "phase": str(st.get("phase") or "Unknown"),
        "pending": _pending(meta.get("annotations") or {}),
    }
    if kind == "TrainingJob":
        state["restarts"] = int(st.get("restarts") or 0)
    if kind == "TuningJob":
        state["trialsCreated"] = int(st.get("trialsCreated") or 0)
        state["trialsFailed"] = int(st.get("trialsFailed") or 0)
        state["maxFailedTrials"] = int(spec.get("maxFailedTrials", 3))
    if kind == "InferenceService":
        state["replicas"] = int(st.get("replicas") or 0)
        rollbacks = [
            t
            for r in st.get("rolloutHistory") or []
            if isinstance(r, dict) and r.get("outcome") == "RolledBack"
            if (t := timestamp_seconds(r.get("endTime") or r.get("startTime"))) is not None
        ]
        state["lastRollback"] = max(rollbacks, default=None)
    if spec.get("backup"):
        backup = st.get("backup") or {}
        success = timestamp_seconds(backup.get("lastSuccessTime"))
        failure = timestamp_seconds((backup.get("lastFailure") or {}).get("time"))
        state["backupLastSuccess"] = success
        state["backupFailing"] = failure is not None and (success is None or failure > success)
    return state


class _StatesCollector(Collector):
    """The per-object gauges the generated alert rules read."""

    def __init__(self) -> None:
        self.indices: dict[str, StateIndex] = {}  # kind -> its state index

    def _states(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for kind, index in sorted(self.indices.items()):
            for key in sorted(index, key=str):
                for state in index[key]:
                    yield kind, state

    def collect(self) -> Iterable[Metric]:
        tj_phase = GaugeMetricFamily(
            "modelops_trainingjob_phase",
            "Always 1, labelled with the TrainingJob's current status.phase (Unknown before the first status).",
            labels=["namespace", "name", "phase"],
        )
        tj_restarts = GaugeMetricFamily(
            "modelops_trainingjob_restarts",
            "Times the TrainingJob recreated its pods after a failure (status.restarts).",
            labels=["namespace", "name"],
        )
        is_phase = GaugeMetricFamily(
            "modelops_inferenceservice_phase",
            "Always 1, labelled with the InferenceService's current status.phase (Unknown before the first status).",
            labels=["namespace", "name", "phase"],
        )
        is_replicas = GaugeMetricFamily(
            "modelops_inferenceservice_replicas",
            "Serving pods of the InferenceService (status.replicas).",
            labels=["namespace", "name"],
        )
        is_rollback = GaugeMetricFamily(
            "modelops_inferenceservice_last_rollback_timestamp_seconds",
            "When the InferenceService's newest rolled-back canary ended (status.rolloutHistory).",
            labels=["namespace", "name"],
        )
        backup_success = GaugeMetricFamily(
            "modelops_backup_last_success_timestamp_seconds",
            "When the object's last backup succeeded (status.backup.lastSuccessTime); objects with a backup "
            "policy only.",
            labels=["kind", "namespace", "name"],
        )
        backup_failing = GaugeMetricFamily(
            "modelops_backup_failing",
            "1 when the object's newest backup attempt failed after its last success, else 0; objects with "
            "a backup policy only.",
            labels=["kind", "namespace", "name"],
        )
        tune_failed = GaugeMetricFamily(
            "modelops_tuningjob_trials_failed",
            "Trials of the TuningJob that failed (status.trialsFailed).",
            labels=["namespace", "name"],
        )
        tune_created = GaugeMetricFamily(
            "modelops_tuningjob_trials_created",
            "Trials the TuningJob created so far (status.trialsCreated).",
            labels=["namespace", "name"],
        )
        tune_max_failed = GaugeMetricFamily(
            "modelops_tuningjob_max_failed_trials",
            "Failed trials the TuningJob tolerates (spec.maxFailedTrials); one more fails the search.",
            labels=["namespace", "name"],
        )
        queue: dict[str, int] = {}
        for kind, state in self._states():
            ns, name = state["namespace"], state["name"]
            queue[kind] = queue.get(kind, 0) + int(bool(state.get("pending")))
            if kind == "TrainingJob":
                tj_restarts.add_metric([ns, name], state.get("restarts", 0))
            if kind == "TuningJob":
                tune_failed.add_metric([ns, name], state.get("trialsFailed", 0))
                tune_created.add_metric([ns, name], state.get("trialsCreated", 0))
                tune_max_failed.add_metric([ns, name], state.get("maxFailedTrials", 0))
            if kind == "InferenceService":
                is_replicas.add_metric([ns, name], state.get("replicas", 0))
                if state.get("lastRollback") is not None:
                    is_rollback.add_metric([ns, name], state["lastRollback"])
            family = {"TrainingJob": tj_phase, "InferenceService": is_phase}.get(kind)
            if family is not None:
                # Only the current phase: 0-valued series for the other phases would multiply the page
                # (and the scrape time) by the number of phases for no alert that needs them.
                family.add_metric([ns, name, state["phase"]], 1)
            if "backupFailing" in state:
                backup_failing.add_metric([kind, ns, name], 1 if state["backupFailing"] else 0)
                if state.get("backupLastSuccess") is not None:
                    backup_success.add_metric([kind, ns, name], state["backupLastSuccess"])
        depth = GaugeMetricFamily(
            "modelops_reconcile_queue_depth",
            "Objects with an unfinished handling cycle (being handled or waiting for a retry), by kind.",
            labels=["kind"],
        )
        for kind in sorted(self.indices):
            depth.add_metric([kind], queue.get(kind, 0))
        yield from (tj_phase, tj_restarts, is_phase, is_replicas, is_rollback, backup_success, backup_failing)
        yield from (tune_failed, tune_created, tune_max_failed)
        yield depth


class OperatorMetrics:
    """The operator's metrics; one instance per running operator."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.reconcile_total = Counter(
            "modelops_reconcile_total",
            "Reconciles by kind and result (ready, progressing, stalled, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.reconcile_errors_total = Counter(
            "modelops_reconcile_errors_total",
            "Reconciles that failed with an unexpected error and will be retried, by kind and reason.",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.reconcile_duration_seconds = Histogram(
            "modelops_reconcile_duration_seconds",
            "Wall time of one reconcile decision, by kind (kopf writes the status right after).",
            ["kind"],
            registry=self.registry,
        )
        self.reconcile_inflight = Gauge(
            "modelops_reconcile_inflight",
            "Reconcile decisions running right now, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self._objects = _ObjectsCollector()
        self.registry.register(self._objects)
        self._states = _StatesCollector()
        self.registry.register(self._states)

    @contextlib.contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        started = time.monotonic()
        inflight = self.reconcile_inflight.labels(kind=kind)
        inflight.inc()
        try:
            yield
        finally:
            inflight.dec()
            self.reconcile_duration_seconds.labels(kind=kind).observe(time.monotonic() - started)

    def reconciled(self, kind: str, result: str) -> None:
        self.reconcile_total.labels(kind=kind, result=result).inc()

    def failed(self, kind: str, reason: str) -> None:
        self.reconcile_total.labels(kind=kind, result="error").inc()
        self.reconcile_errors_total.labels(kind=kind, reason=reason).inc()

    def track_objects(self, kind: str, index: PhaseIndex) -> None:
        """Count the objects of a kind by phase from this live index, at every scrape."""
        self._objects.indices[kind] = index

    def track_states(self, kind: str, index: StateIndex) -> None:
        """Export the per-object gauges of a kind from this live index of `object_state`s, at every scrape."""
        self._states.indices[kind] = index
