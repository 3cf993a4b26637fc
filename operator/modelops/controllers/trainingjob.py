"""Decisions for TrainingJob: what the operator concludes from a parsed spec.

Training itself (pods, rendezvous service, checkpoints) comes in a later issue; until then the
operator says honestly that it accepted the object and does nothing else.
"""

from __future__ import annotations

from modelops import status
from modelops.api.trainingjob import TrainingJobSpec

KIND = "TrainingJob"


def decide(spec: TrainingJobSpec) -> status.Conclusion:
    return status.progressing(
        "Pending",
        "TrainingJob accepted; the training controller is not implemented yet, so no pods are started.",
        phase="Pending",
    )
