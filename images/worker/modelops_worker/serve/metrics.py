"""The serving metrics the InferenceService controller's canary analysis and the HPA read.

Names come from `modelops.api.serveconfig` (the contract); every series carries `model` and `version`
so a stable and a canary pod scraped together stay apart. A private registry keeps the page to these
series and the process collector.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from modelops.api.serveconfig import (
    METRIC_BATCH_SIZE,
    METRIC_INFLIGHT,
    METRIC_LATENCY,
    METRIC_MODEL_INFO,
    METRIC_QUEUE,
    METRIC_REQUESTS,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets from sub-millisecond (a batched small model) to seconds (a queue backing up).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = tuple(float(2**i) for i in range(13))  # 1 .. 4096 samples


def _strip_total(name: str) -> str:
    # prometheus_client appends _total to counters itself.
    return name.removesuffix("_total")


class ServeMetrics:
    """The series of one serving process, bound to its model name and version."""

    def __init__(self, model: str, version: str) -> None:
        r = self.registry = CollectorRegistry()
        self._multi: CollectorRegistry | None = None
        ProcessCollector(registry=r)
        self.labels = {"model": model, "version": version}
        self._by_code: dict[tuple[int, str], tuple[Any, Any]] = {}
        self.requests = Counter(
            _strip_total(METRIC_REQUESTS),
            "Inference requests answered, by protocol (rest, grpc) and HTTP status code (a gRPC status as "
            "its HTTP equivalent: modelops_worker.serve.grpc_server.HTTP_CODE).",
            ["model", "version", "protocol", "code"],
            registry=r,
        )
        self.latency = Histogram(
            METRIC_LATENCY,
            "Seconds from receiving an inference request to answering it, by protocol and HTTP status code.",
            ["model", "version", "protocol", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            METRIC_BATCH_SIZE,
            "Samples per forward pass.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        ).labels(**self.labels)
        # multiprocess_mode: how the supervisor's processes add up (supervisor.py); ignored otherwise.
        self.inflight = Gauge(
            METRIC_INFLIGHT,
            "Inference requests in progress.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        ).labels(**self.labels)
        self.queue = Gauge(
            METRIC_QUEUE,
            "Samples waiting for a forward pass.",
            ["model", "version"],
            registry=r,
            multiprocess_mode="livesum",
        ).labels(**self.labels)
        self.model_info = Gauge(
            METRIC_MODEL_INFO,
            "Always 1; the labels say which artifact this process serves.",
            ["model", "version", "sha256", "format", "quantization", "device", "precision"],
            registry=r,
            multiprocess_mode="max",
        )
        # Children created up front so a scrape before the first request shows the series at zero.
        for code in ("200", "400", "503"):
            self.requests.labels(code=code, protocol="rest", **self.labels)

    def observe(self, code: int, seconds: float, protocol: str = "rest") -> None:
        children = self._by_code.get((code, protocol))
        if children is None:
            c = str(code)
            children = self._by_code[code, protocol] = (
                self.requests.labels(code=c, protocol=protocol, **self.labels),
                self.latency.labels(code=c, protocol=protocol, **self.labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def describe(
        self, sha256: str, fmt: str, quantization: str, device: str = "cpu", precision: str = "fp32"
    ) -> None:
        """Which artifact this process serves, where, and in which precision (the one actually used)."""
        self.model_info.labels(
            sha256=sha256,
            format=fmt,
            quantization=quantization,
            device=device,
            precision=precision,
            **self.labels,
        ).set(1)

    def render(self) -> bytes:
        return generate_latest(self._scraped)

    @property
    def _scraped(self) -> CollectorRegistry:
        # Under the supervisor every process's series, summed (prometheus_client multiprocess mode),
        # plus this process's CPU and memory; otherwise this process's registry.
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path:
            return self.registry
        if self._multi is None:
            from prometheus_client.multiprocess import MultiProcessCollector

            # prometheus_client leaves this constructor unannotated.
            collect_from: Callable[[CollectorRegistry, str], object] = MultiProcessCollector
            self._multi = CollectorRegistry()
            collect_from(self._multi, path)
            ProcessCollector(registry=self._multi)
        return self._multi
