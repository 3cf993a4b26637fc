"""The fine-tune's part of a training pod (`spec.fineTune`): its run configuration, its two claims.

The base model is resolved before any pod exists: a ModelVersion by name must be Ready with a verified
`pvc://` artifact, and its claim and directory are what the pods mount (read-only, at
`BASE_MODEL_MOUNT`); a claim and path are used as they are. `resolve_base` is pure (it gets the
namespace's ModelVersions); the handler turns its refusal into the job's condition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from modelops.api.finetune import BASE_MODEL_MOUNT, BASE_MODEL_VOLUME
from modelops.api.finetuneconfig import BaseModelRef, FineTuneRunConfig
from modelops.api.runconfig import TrainResult
from modelops.api.trainingjob import TrainingJobSpec

DATA_VOLUME = "data"
DATA_MOUNT = "/data"
FIELD_MODEL_VERSION = "spec.fineTune.baseModel.modelVersion"


@dataclasses.dataclass(frozen=True)
class ResolvedBase:
    """The base model's claim and directory, and what lineage calls it."""

    claim: str
    path: str
    ref: BaseModelRef


@dataclasses.dataclass(frozen=True)
class Unresolved:
    """Why the base model cannot be mounted yet: (kind, name, field and reason) for the job's condition."""

    name: str
    field: str


def resolve_base(spec: TrainingJobSpec, versions: Iterable[Mapping[str, Any]]) -> ResolvedBase | Unresolved:
    """The base model of a fine-tune, from its claim or its (Ready, verified) ModelVersion."""
    assert spec.fine_tune is not None
    b = spec.fine_tune.base_model
    if b.claim_name is not None and b.path is not None:
        return ResolvedBase(b.claim_name, b.path, BaseModelRef(uri=f"pvc://{b.claim_name}/{b.path}"))
    name = str(b.model_version)
    mv = next((v for v in versions if (v.get("metadata") or {}).get("name") == name), None)
    if mv is None:
        return Unresolved(name, FIELD_MODEL_VERSION)
    st = mv.get("status") or {}
    artifact = st.get("artifact") or {}
    uri = str(artifact.get("uri") or "")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or ())
    if not ready or not uri:
        return Unresolved(
            name,
            f"{FIELD_MODEL_VERSION}; it exists but is not Ready and verified yet (phase {st.get('phase')})",
        )
    if not uri.startswith("pvc://"):
        return Unresolved(
            name, f"{FIELD_MODEL_VERSION}; its artifact {uri} is not on a claim, which a fine-tune needs"
        )
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    sha = artifact.get("sha256")
    return ResolvedBase(
        claim, path, BaseModelRef(model_version=name, uri=uri, sha256=str(sha) if sha else None)
    )


def run_config(name: str, namespace: str, uid: str, spec: TrainingJobSpec, base: ResolvedBase) -> str:
    """MODELOPS_RUN_CONFIG of a fine-tune's pods."""
    cfg = FineTuneRunConfig.from_spec(name, namespace, uid, spec, base.ref, base.path)
    return cfg.model_dump_json(by_alias=True, exclude_none=True)


def volumes(spec: TrainingJobSpec, base: ResolvedBase) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the data file's claim and the base model's claim, both read-only."""
    assert spec.fine_tune is not None
    data_claim = spec.fine_tune.data.claim_name
    vols = [
        {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": data_claim, "readOnly": True}},
        {"name": BASE_MODEL_VOLUME, "persistentVolumeClaim": {"claimName": base.claim, "readOnly": True}},
    ]
    mounts = [
        {"name": DATA_VOLUME, "mountPath": DATA_MOUNT, "readOnly": True},
        {"name": BASE_MODEL_VOLUME, "mountPath": BASE_MODEL_MOUNT, "readOnly": True},
    ]
    return vols, mounts


def claim_field(spec: TrainingJobSpec, claim: str, volume: str) -> str | None:
    """Where the fine-tune's spec names `claim` (for a message about a claim that does not exist)."""
    if spec.fine_tune is None:
        return None
    if volume == DATA_VOLUME:
        return "spec.fineTune.data.claimName"
    if volume == BASE_MODEL_VOLUME:
        if spec.fine_tune.base_model.claim_name:
            return "spec.fineTune.baseModel.claimName"
        return f"{FIELD_MODEL_VERSION} (its artifact's claim)"
    return None


def model_version_fields(spec: TrainingJobSpec, result: TrainResult) -> dict[str, Any]:
    """What a fine-tune's ModelVersion spec says beyond a recipe's: its format (huggingface, or lora for an
    adapter exported alone, with the base version it applies to) and a description naming the base."""
    if spec.fine_tune is None or result.artifact is None:
        return {}
    out: dict[str, Any] = {"format": result.artifact.format}
    base = result.base_model
    if result.artifact.format == "lora" and base is not None and base.model_version:
        out["baseModelVersion"] = {"name": base.model_version}
    if base is not None:
        named = base.model_version or base.uri
        out["description"] = f"Fine-tuned ({spec.fine_tune.method}) from {named}."
    return out
