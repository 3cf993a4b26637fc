"""Prometheus metrics of the operator, on their own registry so tests and imports never collide.

The object gauge is computed at scrape time from kopf's per-kind index of objects by `status.phase`
(kopf keeps it current from the watch, deletions included), so a deleted object or a phase change
never leaves a stale series behind. Objects not reconciled yet count under phase "Unknown".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
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


class OperatorMetrics:
    """The four operator metrics; one instance per running operator."""

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
        self._objects = _ObjectsCollector()
        self.registry.register(self._objects)

    @contextlib.contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.reconcile_duration_seconds.labels(kind=kind).observe(time.monotonic() - started)

    def reconciled(self, kind: str, result: str) -> None:
        self.reconcile_total.labels(kind=kind, result=result).inc()

    def failed(self, kind: str, reason: str) -> None:
        self.reconcile_total.labels(kind=kind, result="error").inc()
        self.reconcile_errors_total.labels(kind=kind, reason=reason).inc()

    def track_objects(self, kind: str, index: PhaseIndex) -> None:
        """Count the objects of a kind by phase from this live index, at every scrape."""
        self._objects.indices[kind] = index
