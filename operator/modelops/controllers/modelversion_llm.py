"""Decisions for LLM ModelVersions: a LoRA adapter stands on its base version, lineage names the base.

Pure functions over the adapter's spec and the base ModelVersion as listed (the handlers in
`modelversion_handlers` call them):

- `base_artifact`: what the adapter's verification needs of its base (claim, path, format, digest),
  or the conclusion to report while there is none: the base missing or not verified yet (Reconciling,
  it recovers by itself), of a format no adapter applies to, or failed (Stalled: a human must act).
- `with_base`: a verified adapter is Ready only while its base is Ready; otherwise the same reasons.
- `base_lineage`: `status.lineage.baseModel` of a version, from its base version (an adapter), from
  the verifier's model card, or from what its TrainingJob reported (a fine-tune).
- `llm_info`: `status.llm` from what the LLM verifier read (architecture, context length ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.alias_generators import to_camel

from modelops import status
from modelops.api.modelversion import ADAPTER_BASE_FORMATS, LanguageModelInfo, ModelVersionSpec
from modelops.builders.modelversion import BaseArtifact, Location

FORMAT_LORA = "lora"
REASON_BASE_NOT_FOUND = "BaseModelVersionNotFound"
REASON_BASE_NOT_READY = "BaseModelVersionNotReady"
REASON_BASE_FAILED = "BaseModelVersionFailed"
REASON_BASE_FORMAT = "BaseModelVersionFormat"
REASON_BASE_NOT_SERVABLE = "BaseModelVersionNotServable"


def base_name(spec: ModelVersionSpec) -> str | None:
    """The base version an adapter names (None: not an adapter)."""
    if spec.format != FORMAT_LORA or spec.base_model_version is None:
        return None
    return spec.base_model_version.name


def _status(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("status") or {}


def _format(base: Mapping[str, Any]) -> str:
    artifact = _status(base).get("artifact") or {}
    return str(artifact.get("format") or (base.get("spec") or {}).get("format") or "torchscript")


def base_artifact(spec: ModelVersionSpec, base: Mapping[str, Any] | None) -> BaseArtifact | status.Conclusion:
    """The base an adapter is verified (and served) on, or why it cannot be yet."""
    name = base_name(spec)
    assert name is not None, "base_artifact is for lora versions"
    field = "spec.baseModelVersion.name"
    if base is None or (base.get("metadata") or {}).get("deletionTimestamp"):
        return status.progressing(
            REASON_BASE_NOT_FOUND,
            f"Waiting for ModelVersion {name} ({field}), the base this LoRA adapter applies to, to exist in "
            "this namespace.",
            phase="Pending",
        )
    fmt = _format(base)
    if fmt not in ADAPTER_BASE_FORMATS:
        return status.stalled(
            REASON_BASE_FORMAT,
            f"{field}: ModelVersion {name} has format {fmt}; a LoRA adapter applies to a version of format "
            f"{' or '.join(ADAPTER_BASE_FORMATS)}. Name the base model the adapter was trained from.",
        )
    phase = _status(base).get("phase")
    if phase == "Failed":
        return status.stalled(
            REASON_BASE_FAILED,
            f"{field}: the base ModelVersion {name} failed verification, so this adapter cannot be verified "
            "or served; fix and re-verify the base (annotation modelops.dev/reverify).",
        )
    artifact = _status(base).get("artifact") or {}
    if phase != "Ready" or not artifact.get("sha256"):
        return status.progressing(
            REASON_BASE_NOT_READY,
            f"Waiting for the base ModelVersion {name} ({field}) to be Ready (it is {phase or 'Pending'}); "
            "the adapter is verified and served on it once it is.",
            phase="Pending",
        )
    uri = str(artifact.get("uri") or "")
    if not uri.startswith("pvc://"):
        return status.stalled(
            REASON_BASE_NOT_SERVABLE,
            f"{field}: the base ModelVersion {name} has artifact {uri!r}; an adapter is verified on a base "
            "on a claim (pvc://) only.",
        )
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return BaseArtifact(Location(claim, path.strip("/")), fmt, str(artifact["sha256"]))


def with_base(
    spec: ModelVersionSpec, base: Mapping[str, Any] | None, conclusion: status.Conclusion
) -> status.Conclusion:
    """A verified adapter's conclusion: Ready only while its base is Ready."""
    if base_name(spec) is None or conclusion.state is not status.State.READY:
        return conclusion
    found = base_artifact(spec, base)
    return conclusion if isinstance(found, BaseArtifact) else found


def _version(obj: Mapping[str, Any]) -> int | None:
    v = _status(obj).get("version") or (obj.get("spec") or {}).get("version")
    return int(v) if v else None


def base_lineage(
    spec: ModelVersionSpec,
    base: Mapping[str, Any] | None,
    card: Mapping[str, Any],
    job: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """`status.lineage.baseModel`: the adapter's base version, else what the card or the job reported."""
    reported = card.get("baseModel") or _status(job).get("baseModel")
    out: dict[str, Any] = {}
    if isinstance(reported, Mapping):
        keep = ("modelVersion", "model", "version", "sha256", "uri", "method")
        out = {k: reported[k] for k in keep if reported.get(k) is not None}
    if base is not None and base_name(spec) is not None:
        out.update(
            {
                "modelVersion": str((base.get("metadata") or {}).get("name")),
                "model": (base.get("spec") or {}).get("model"),
                "version": _version(base),
                "sha256": (_status(base).get("artifact") or {}).get("sha256"),
            }
        )
        out.setdefault("method", "lora")
    out = {k: v for k, v in out.items() if v is not None}
    return out or None


def llm_info(result: Mapping[str, Any] | None, *, base_ready: bool | None = None) -> dict[str, Any] | None:
    """`status.llm` from the verifier's `llm` result (unknown keys dropped, wrong types ignored)."""
    if not isinstance(result, Mapping) and base_ready is None:
        return None
    known = {to_camel(k) for k in LanguageModelInfo.model_fields}
    out: dict[str, Any] = {}
    for key, value in dict(result or {}).items():
        if key not in known or value is None:
            continue
        try:  # one value of the wrong shape is left out, never the reason the rest is lost
            out.update(LanguageModelInfo.model_validate({key: value}).to_wire())
        except ValueError:
            continue
    if base_ready is not None:
        out["baseReady"] = base_ready
    return out or None
