"""Decisions for ModelVersion: what the operator concludes from a parsed spec.

Artifact verification, lineage and backups come in later issues; until then the operator says
honestly that it accepted the object and does nothing else.
"""

from __future__ import annotations

from modelops import status
from modelops.api.modelversion import ModelVersionSpec

KIND = "ModelVersion"


def decide(spec: ModelVersionSpec) -> status.Conclusion:
    return status.progressing(
        "Pending",
        "ModelVersion accepted; the version controller is not implemented yet, so the artifact is not verified.",
        phase="Pending",
    )
