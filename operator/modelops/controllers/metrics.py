"""Prometheus metrics of the operator, on their own registry so tests and imports never collide.

The object gauge is computed at scrape time from the last phase seen per object, so a deleted object
or a phase change never leaves a stale series behind.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class _ObjectsCollector(Collector):
    def __init__(self) -> None:
        self.phases: dict[tuple[str, str], str] = {}  # (kind, uid) -> phase

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "modelops_objects",
            "Objects of each kind by their last reconciled phase.",
            labels=["kind", "phase"],
        )
        counts = collections.Counter((kind, phase) for (kind, _), phase in self.phases.items())
        for (kind, phase), count in sorted(counts.items()):
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
            "Wall time of one reconcile, by kind.",
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

    def observe_phase(self, kind: str, uid: str, phase: str) -> None:
        self._objects.phases[(kind, uid)] = phase

    def forget(self, kind: str, uid: str) -> None:
        self._objects.phases.pop((kind, uid), None)
