"""Alerting thresholds embedded in TrainingJob and InferenceService specs.

Owned by the alerting controller (`controllers/alerting_handlers.py`); the kinds only embed these.
"""

from __future__ import annotations

from pydantic import Field

from modelops.api.common import ApiModel


class TrainingAlerts(ApiModel):
    """Thresholds of the alert rules generated for a TrainingJob."""

    enabled: bool = Field(default=True, description="Generate alert rules for this job.")


class ServingAlerts(ApiModel):
    """Thresholds of the alert rules generated for an InferenceService."""

    enabled: bool = Field(default=True, description="Generate alert rules for this service.")
