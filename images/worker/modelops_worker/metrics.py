"""Live progress on a Prometheus endpoint, which the operator scrapes into TrainingJob status.progress.

Served by local rank 0 of each pod on `MODELOPS_METRICS_PORT`. A dedicated registry keeps the page to
the training series plus the process collector (memory and CPU help explain an OOM-killed attempt).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server
from prometheus_client.process_collector import ProcessCollector


class TrainingMetrics:
    """The gauges of one training process; `serve` exposes them over HTTP."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.step = Gauge("modelops_training_step", "Optimizer steps done.", registry=r)
        self.total_steps = Gauge("modelops_training_total_steps", "Optimizer steps planned.", registry=r)
        self.epoch = Gauge("modelops_training_epoch", "Current epoch (1-based).", registry=r)
        self.total_epochs = Gauge("modelops_training_total_epochs", "Epochs planned.", registry=r)
        self.loss = Gauge("modelops_training_loss", "Mean training loss of the latest step.", registry=r)
        self.samples_per_second = Gauge(
            "modelops_training_samples_per_second",
            "Training samples per second of this process over the recent steps.",
            registry=r,
        )
        self.last_progress = Gauge(
            "modelops_training_last_progress_timestamp_seconds",
            "Unix time when an optimizer step last completed (a stalled run stops advancing it).",
            registry=r,
        )
        self.checkpoint_step = Gauge(
            "modelops_training_checkpoint_step", "Step of the newest verified checkpoint.", registry=r
        )
        self.checkpoint_time = Gauge(
            "modelops_training_checkpoint_timestamp_seconds",
            "Unix time when the newest verified checkpoint was written (or loaded on resume).",
            registry=r,
        )
        self.val_accuracy = Gauge(
            "modelops_training_val_accuracy", "Validation accuracy after the latest epoch.", registry=r
        )
        self.val_loss = Gauge(
            "modelops_training_val_loss", "Validation loss after the latest epoch.", registry=r
        )
        self.fallbacks = Counter(
            "modelops_training_checkpoint_fallbacks",
            "Checkpoints skipped at start because they were partial or corrupt.",
            registry=r,
        )
        self.info = Info("modelops_training", "Who this process is in the run.", registry=r)
        self.last_progress.set(time.time())

    def describe(self, **labels: Any) -> None:
        self.info.info({k: str(v) for k, v in labels.items()})

    def serve(self, addr: str, port: int) -> None:
        """Start the endpoint on a daemon thread (it dies with the process)."""
        start_http_server(port, addr=addr, registry=self.registry)
