"""Alerting thresholds embedded in TrainingJob and InferenceService specs, and the alerting status.

Owned by the alerting controller (`controllers/alerting_handlers.py`, rules built by
`builders/alerts.py`); the kinds only embed these. Durations are Prometheus durations (`30s`, `15m`,
`1h30m`), so they go into a rule's `for:` or a comparison unchanged in meaning.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from modelops.api.common import ApiModel, rules

# Prometheus's own grammar (model.ParseDuration): each unit at most once, largest first ("1h30m", not
# "30m1h"); a rule with any other spelling would be refused by Prometheus when it loads the rules.
DURATION_PATTERN = r"^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration ("1h30m" -> 5400.0); ValueError names the accepted form."""
    if not duration or not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(
            f"{duration!r} is not a duration: use digits and units ms, s, m, h, d, w, y, e.g. 15m"
        )
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", duration)))


def _duration(default: str, description: str, *, positive: str = "") -> str:
    # `positive` names the field when zero cannot work (a rate over a window of 0s is a PromQL error).
    extra = (
        rules(("self.matches('[1-9]')", f"{positive} must be longer than 0s, e.g. 5m")) if positive else {}
    )
    return Field(
        default=default,
        min_length=2,
        max_length=32,
        pattern=DURATION_PATTERN,
        description=description,
        json_schema_extra=extra or None,
    )


class TrainingAlerts(ApiModel):
    """Thresholds of the alert rules generated for a TrainingJob (see docs/alerts.md)."""

    enabled: bool = Field(default=True, description="Generate alert rules for this job.")
    stalled_after: str = _duration(
        "15m", "TrainingStalled: no optimizer step completed for this long while the worker is up."
    )
    max_restarts: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="TrainingRestartsHigh: fire once the job restarted this many times.",
    )
    gpu_idle_after: str = _duration(
        "30m", "TrainingGPUIdle: a GPU of the job stays under gpuIdlePercent utilisation for this long."
    )
    gpu_idle_percent: int = Field(
        default=5,
        ge=0,
        le=100,
        description="TrainingGPUIdle: utilisation (DCGM_FI_DEV_GPU_UTIL) counted as idle.",
    )
    gpu_memory_percent: int = Field(
        default=95,
        ge=1,
        le=100,
        description="TrainingGPUMemoryNearFull: framebuffer use (used / (used + free)) at or above this percent.",
    )
    pending_for: str = _duration(
        "5m", "How long a noisy condition (loss not finite, GPU memory) must hold before the alert fires."
    )
    backup_max_age: str = _duration(
        "48h", "BackupTooOld: newest successful backup older than this (only with spec.backup)."
    )


class ServingAlerts(ApiModel):
    """Thresholds of the alert rules generated for an InferenceService (see docs/alerts.md)."""

    enabled: bool = Field(default=True, description="Generate alert rules for this service.")
    error_rate_percent: float = Field(
        default=5.0, gt=0, le=100, description="InferenceErrorRateHigh: percent of requests answered 5xx."
    )
    p99_latency_ms: int | None = Field(
        default=None,
        ge=1,
        le=3600000,
        description="InferenceLatencyHigh: the p99 latency SLO in milliseconds; empty uses "
        "spec.canary.analysis.maxP99LatencyMs, else 1000.",
    )
    window: str = _duration(
        "5m", "Rate window of the error-rate and latency rules.", positive="spec.alerts.window"
    )
    pending_for: str = _duration("5m", "How long error rate or latency must stay bad before the alert fires.")
    replicas_at_max_after: str = _duration(
        "30m", "InferenceReplicasAtMax: replicas at spec.maxReplicas for this long (only when max > min)."
    )
    rollback_alert_for: str = _duration(
        "1h", "CanaryRolledBack: how long the alert keeps firing after an automatic rollback."
    )
    ttft_p99_ms: int | None = Field(
        default=None,
        ge=1,
        le=3600000,
        description="LLMTimeToFirstTokenHigh (LLM versions): the p99 time-to-first-token SLO in milliseconds; "
        "empty uses spec.canary.analysis.maxTtftP99Ms, else 2000.",
    )
    waiting_per_pod: int = Field(
        default=8,
        ge=1,
        le=100000,
        description="LLMQueueBacklog (LLM versions): requests waiting for a free sequence, on average per "
        "pod, above which the queue is backed up.",
    )


class AlertingStatus(ApiModel):
    """Where this object's alert rules live."""

    rule_kind: Literal["PrometheusRule", "ConfigMap"] | None = Field(
        default=None,
        description="PrometheusRule (monitoring.coreos.com/v1) when Prometheus Operator is installed, else a "
        "ConfigMap with the same groups under the key rules.yaml; empty when alerts are disabled.",
    )
    name: str | None = Field(default=None, description="Name of that object, in this namespace.")
    rules: int | None = Field(default=None, description="Alert rules generated.")
    message: str | None = Field(default=None, description="What was done, and what to do if anything.")
