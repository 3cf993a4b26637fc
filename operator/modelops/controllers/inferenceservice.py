"""Decisions for InferenceService: what the operator concludes from a parsed spec.

Serving (Deployments, Service, autoscaling, canaries) comes in a later issue; until then the
operator says honestly that it accepted the object and does nothing else.
"""

from __future__ import annotations

from modelops import status
from modelops.api.inferenceservice import InferenceServiceSpec

KIND = "InferenceService"


def decide(spec: InferenceServiceSpec) -> status.Conclusion:
    return status.progressing(
        "Pending",
        "InferenceService accepted; the serving controller is not implemented yet, so nothing is deployed.",
        phase="Pending",
    )
