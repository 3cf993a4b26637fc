"""Which ModelVersions an InferenceService serves: its references resolved against the registry.

Pure functions over the listed ModelVersions and the object's own status (its rollout history):

- `spec.modelRef` resolves to the Ready ModelVersion of that model with that version (or holding that
  alias). The stable Deployment serves it; a new target is rolled out as a rolling update, or, when
  `spec.canary` is set without its own modelRef, as an analysed canary (an alias that moved included).
- `spec.canary.modelRef` names a version to try next to the stable one. A rolled-back canary stays
  rolled back until `spec.canary` changes, a promoted one stays promoted until `spec.modelRef` or
  `spec.canary` changes: the spec is never edited.
- A reference that cannot be served now is a `Problem` (a condition reason and a message naming the
  field); whatever the stable track served before keeps serving meanwhile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.inferenceservice import InferenceServiceSpec, ModelRef
from modelops.api.serveconfig import REASON_NO_RUNTIME_FOR_FORMAT
from modelops.builders import inferenceservice as builders
from modelops.builders import llm
from modelops.builders.inferenceservice import Served
from modelops.controllers import inferenceservice_llm as isvc_llm

# No runtime serves the version's format: only a human can fix it (Stalled).
REASON_NO_RUNTIME = REASON_NO_RUNTIME_FOR_FORMAT
# Problems only a human fixes (re-register, re-verify, another format): Stalled, not Reconciling forever.
STALLING_PROBLEMS = (
    REASON_NO_RUNTIME,
    "ModelVersionFailed",
    "ArtifactNotServable",
    isvc_llm.REASON_AUTOSCALING_METRIC,
    isvc_llm.REASON_LLM_SETTINGS,
)


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a reference cannot be served (a condition reason and a message naming the field)."""

    reason: str
    message: str


def _describe(ref: ModelRef) -> str:
    return f"version {ref.version}" if ref.version is not None else f"alias {ref.alias!r}"


def _served(
    mv: Mapping[str, Any], mvs: Sequence[Mapping[str, Any]] = (), *, claim_only: bool = False
) -> Served | Problem:
    """The version as its pods get it: from the model store when it was published there, else its claim.

    A LoRA adapter and its base are still mounted from their claims (`claim_only`): builders.llm serves
    the two together from two mounts, and the store's fetch step brings one artifact per pod.
    """
    name = str(mv["metadata"]["name"])
    st = mv.get("status") or {}
    artifact = st.get("artifact") or {}
    sha = artifact.get("sha256")
    where = builders.parse_pvc_uri(artifact.get("uri"))
    if not sha:
        return Problem("ModelVersionNotReady", f"ModelVersion {name} has no verified sha256 yet.")
    lora = isvc_llm.base_name(mv) is not None
    stored = None if claim_only or lora else _from_store(name, st, mv.get("spec") or {}, str(sha))
    if stored is not None:
        return stored
    if where is None:
        return Problem(
            "ArtifactNotServable",
            f"ModelVersion {name} has artifact {artifact.get('uri')!r}; serving reads pvc://claim/path "
            "artifacts only (register the version from a TrainingJob or a pvc:// URI).",
        )
    version = st.get("version") or (mv.get("spec") or {}).get("version")
    fmt = str(artifact.get("format") or (mv.get("spec") or {}).get("format") or "torchscript")
    signature = st.get("signature") if isinstance(st.get("signature"), dict) else None
    served = Served(name, int(version) if version else None, str(sha), where[0], where[1], fmt, signature)
    # A lora version is served with its base version (isvc_llm).
    with_base = isvc_llm.with_base(served, mv, mvs, lambda base: _served(base, claim_only=True))
    return with_base if isinstance(with_base, Served) else Problem(with_base.reason, with_base.message)


def _from_store(name: str, st: Mapping[str, Any], spec: Mapping[str, Any], sha: str) -> Served | None:
    """The version as published in the model store (status.artifact.storeUri), if it was."""
    artifact = st.get("artifact") or {}
    store_uri = str(artifact.get("storeUri") or "")
    if not store_uri.endswith(f"/{sha}"):
        return None
    # The file keeps its source's name (model.pt, model.onnx): custom predictors may look at it.
    source = str(artifact.get("uri") or "").rstrip("/")
    filename = source.rsplit("/", 1)[-1] if "/" in source else "model"
    if filename in ("", ".", "..") or filename.startswith(".partial-"):
        filename = "model"
    version = st.get("version") or spec.get("version")
    fmt = str(artifact.get("format") or spec.get("format") or "torchscript")
    signature = st.get("signature") if isinstance(st.get("signature"), dict) else None
    size = artifact.get("sizeBytes")
    return Served(
        name,
        int(version) if version else None,
        sha,
        "",
        filename,
        fmt,
        signature,
        store_uri=store_uri,
        size_bytes=int(size) if isinstance(size, int) else None,
    )


def no_runtime(served: Served, field: str) -> Problem:
    return Problem(
        REASON_NO_RUNTIME,
        f"{field}: ModelVersion {served.model_version} has format {served.format!r}, which no runtime serves "
        f"(modelops-worker serves {', '.join(builders.WORKER_FORMATS)}; LLM engines serve huggingface, gguf "
        "and lora). Register the model in one of those formats, or serve it with your own container "
        "(spec.predictor).",
    )


def resolve(
    ref: ModelRef,
    mvs: Sequence[Mapping[str, Any]],
    field: str = "spec.modelRef",
    *,
    custom: bool = False,
    spec: InferenceServiceSpec | None = None,
) -> Served | Problem:
    """The Ready ModelVersion a reference names, or why there is none (a custom predictor serves any format).

    With `spec`, an LLM version is checked against the engine spec.llm and spec.resources choose."""
    of_model = [mv for mv in mvs if (mv.get("spec") or {}).get("model") == ref.model]
    if ref.version is not None:
        matches = [
            mv
            for mv in of_model
            if ((mv.get("status") or {}).get("version") or (mv.get("spec") or {}).get("version"))
            == ref.version
        ]
    else:
        matches = [mv for mv in of_model if ref.alias in ((mv.get("status") or {}).get("aliases") or [])]
    if not matches:
        return Problem(
            "ModelVersionNotFound",
            f"{field}: no ModelVersion of model {ref.model!r} with {_describe(ref)} in this namespace "
            f"(`kubectl get modelversions` lists them); waiting for one.",
        )
    ready = [mv for mv in matches if (mv.get("status") or {}).get("phase") == "Ready"]
    if not ready:
        mv = matches[0]
        phase = (mv.get("status") or {}).get("phase") or "Pending"
        if phase == "Failed":
            why = next(
                (
                    f" ({c.get('reason')}: {c.get('message')})"
                    for c in (mv.get("status") or {}).get("conditions") or ()
                    if c.get("type") == "Ready" and c.get("message")
                ),
                "",
            )
            return Problem(
                "ModelVersionFailed",
                f"{field}: ModelVersion {mv['metadata']['name']} failed verification{why}; fix the artifact "
                "and re-verify it (annotation modelops.dev/reverify), or point the reference at another version.",
            )
        return Problem(
            "ModelVersionNotReady",
            f"{field}: ModelVersion {mv['metadata']['name']} is {phase}, not Ready; it is served once "
            "its artifact is verified.",
        )
    served = _served(ready[0], mvs)
    if isinstance(served, Problem):
        return Problem(served.reason, f"{field}: {served.message}")
    if not custom and served.format not in builders.WORKER_FORMATS and not llm.is_llm(served):
        return no_runtime(served, field)
    if not custom and spec is not None:
        problem = isvc_llm.engine_problem(spec, served, field) or isvc_llm.autoscaling_problem(spec, served)
        if problem is not None:
            return Problem(problem.reason, problem.message)
    return served


def _by_name(name: str | None, mvs: Sequence[Mapping[str, Any]]) -> Served | None:
    """A version already being served, found by name whatever its phase now (its pods verified it)."""
    for mv in mvs:
        if name and mv["metadata"]["name"] == name:
            served = _served(mv, mvs)
            return served if isinstance(served, Served) else None
    return None


def canary_digest(spec: InferenceServiceSpec) -> str | None:
    if spec.canary is None:
        return None
    return builders.digest(spec.canary.model_dump(by_alias=True, exclude_none=True))


def _last_record(history: Sequence[Mapping[str, Any]], model_version: str) -> Mapping[str, Any] | None:
    for record in reversed(history):
        if record.get("modelVersion") == model_version:
            return dict(record)
    return None


@dataclasses.dataclass(frozen=True)
class Targets:
    """What the stable track should serve and which version, if any, runs as the canary."""

    stable: Served | None
    candidate: Served | None = None
    trigger: str = "modelRef"
    digest: str | None = None
    problem: Problem | None = None  # spec.modelRef (or spec.canary.modelRef) cannot be served now
    note: tuple[str, str] | None = None  # why no canary runs although spec.canary is set


def targets(spec: InferenceServiceSpec, st: Mapping[str, Any], mvs: Sequence[Mapping[str, Any]]) -> Targets:
    """Decide the stable and canary versions from the spec, the ModelVersions and our own status."""
    if spec.model_ref is None:
        # A custom predictor with its model inside: rolled out as itself (canaries need a modelRef).
        assert spec.predictor is not None
        return Targets(builders.predictor_revision(spec.predictor), trigger="predictor")
    history: list[Mapping[str, Any]] = list(st.get("rolloutHistory") or [])
    current = _by_name((st.get("stable") or {}).get("modelVersion"), mvs)
    wanted = resolve(spec.model_ref, mvs, custom=spec.predictor is not None, spec=spec)
    trigger = "alias" if spec.model_ref.alias else "modelRef"
    problem = wanted if isinstance(wanted, Problem) else None
    h = canary_digest(spec)

    if spec.canary is None:
        stable = wanted if isinstance(wanted, Served) else (current if problem else None)
        return Targets(stable, trigger=trigger, problem=problem)

    if spec.canary.model_ref is None:
        # Every new target of spec.modelRef is a canary against what the stable track serves now.
        if current is None or isinstance(wanted, Problem) or wanted.model_version == current.model_version:
            stable = current or (wanted if isinstance(wanted, Served) else None)
            return Targets(stable, trigger=trigger, digest=h, problem=problem)
        note = _rolled_back(history, wanted.model_version, h)
        if note:
            return Targets(current, trigger=trigger, digest=h, note=note)
        return Targets(current, wanted, trigger=trigger, digest=h)
    return _explicit_canary(spec, history, mvs, wanted, current, h)


def _rolled_back(history: Sequence[Mapping[str, Any]], name: str, h: str | None) -> tuple[str, str] | None:
    """Why `name` runs no canary: it was rolled back under this very spec.canary."""
    record = _last_record(history, name)
    if record and record.get("outcome") == "RolledBack" and record.get("canaryDigest") == h:
        return (
            "RolledBack",
            f"The canary {name} was rolled back ({record.get('reason', '')}); it stays rolled back "
            "until spec.canary changes.",
        )
    return None


def _explicit_canary(
    spec: InferenceServiceSpec,
    history: Sequence[Mapping[str, Any]],
    mvs: Sequence[Mapping[str, Any]],
    wanted: Served | Problem,
    current: Served | None,
    h: str | None,
) -> Targets:
    """spec.canary.modelRef next to spec.modelRef; a promoted canary stays stable until either changes."""
    assert spec.canary is not None and spec.canary.model_ref is not None
    problem = wanted if isinstance(wanted, Problem) else None
    stable = wanted if isinstance(wanted, Served) else (current if problem else None)
    promoted = next(
        (
            r
            for r in reversed(history)
            if r.get("outcome") == "Promoted"
            and r.get("canaryDigest") == h
            and isinstance(wanted, Served)
            and r.get("replaced") == wanted.model_version
        ),
        None,
    )
    note = None
    if promoted is not None:
        stable = _by_name(str(promoted.get("modelVersion")), mvs) or stable
        note = ("Promoted", f"The canary {promoted.get('modelVersion')} was promoted to stable.")
    custom = spec.predictor is not None
    candidate = resolve(spec.canary.model_ref, mvs, "spec.canary.modelRef", custom=custom, spec=spec)
    if isinstance(candidate, Problem):
        return Targets(stable, trigger="canary", digest=h, problem=problem or candidate, note=note)
    if stable is not None and candidate.model_version == stable.model_version:
        return Targets(stable, trigger="canary", digest=h, problem=problem, note=note)
    note = _rolled_back(history, candidate.model_version, h)
    if note:
        return Targets(stable, trigger="canary", digest=h, problem=problem, note=note)
    return Targets(stable, candidate, trigger="canary", digest=h, problem=problem)
