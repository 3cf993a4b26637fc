"""Decisions for ModelVersion: the registry's rules as pure functions of the objects observed.

The handlers (`modelversion_handlers`) read the ModelVersion, its TrainingJob, its verification pod,
the other versions of the model and the InferenceServices of the namespace, call these functions and
write what they return. Everything a user relies on is decided here, so it is tested with plain dicts:

- where the artifact is (a TrainingJob's checkpoint claim, or a `pvc://` URI) and when to verify it;
- what a finished verification pod means (Ready, or Failed with ArtifactNotFound,
  ArtifactDigestMismatch, ArtifactLoadFailed);
- version numbers (given, or the next free one of the model; a duplicate is Stalled);
- alias grants: gates, mustBeatCurrent, one holder per alias per model, and the history;
- who serves a version (servedBy) and so whether it may be deleted; retention of old versions.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelops import GROUP, status
from modelops.api import storage as storage_api
from modelops.api.finetune import FINETUNE_OUTPUT_DIR
from modelops.api.llmconfig import (
    REASON_ADAPTER_INCOMPATIBLE,
    REASON_ENGINE_UNAVAILABLE,
    REASON_GENERATION_FAILED,
    REASON_MANIFEST_INVALID,
)
from modelops.api.modelversion import MetricGate, ModelVersionSpec, Promotion
from modelops.builders.modelversion import Location
from modelops.controllers import modelstore as model_store
from modelops.controllers import modelversion_llm as llm

KIND = "ModelVersion"

FINALIZER = f"{GROUP}/in-use-protection"
REVERIFY_ANNOTATION = f"{GROUP}/reverify"
# The exported artifact inside a TrainingJob's output directory (the worker's export.ARTIFACT).
TRAINING_OUTPUT_DIR = "output"
TRAINING_ARTIFACT = "model.pt"
# History entries kept per version; older ones go first.
MAX_HISTORY = 50

VERIFIED = "Verified"
REASON_VERIFIED = "Verified"
REASON_NOT_FOUND = "ArtifactNotFound"
REASON_DIGEST_MISMATCH = "ArtifactDigestMismatch"
REASON_LOAD_FAILED = "ArtifactLoadFailed"
REASON_VERIFIER_FAILED = "VerificationFailed"
# The worker's reasons for a model no runtime can serve as registered (verify's termination message).
REASON_NO_RUNTIME = "NoRuntimeForFormat"
REASON_SIGNATURE_MISMATCH = "SignatureMismatch"
REASON_DUPLICATE = "DuplicateVersion"
REASON_UNSUPPORTED_SOURCE = "UnsupportedSource"
REASON_IN_USE = "InUse"
# The LLM verifier's reasons: REASON_MANIFEST_INVALID, REASON_ADAPTER_INCOMPATIBLE,
# REASON_GENERATION_FAILED, REASON_ENGINE_UNAVAILABLE (modelops.api.llmconfig).

_WHAT_TO_DO = {
    REASON_NOT_FOUND: "Check spec.source (the claim and path, or that the TrainingJob's claim still holds "
    "its output), then set the annotation modelops.dev/reverify to a new value to verify again.",
    REASON_DIGEST_MISMATCH: "The file is not the one registered: restore it from a backup or register the "
    "new file as a new ModelVersion; then set the annotation modelops.dev/reverify to a new value.",
    REASON_LOAD_FAILED: "Check spec.format against the file (torchscript or state_dict exported by "
    "modelops-worker; huggingface for a model directory, gguf for a GGUF file, lora for an adapter), or "
    "re-export it; then set the annotation modelops.dev/reverify to a new value.",
    REASON_MANIFEST_INVALID: "The directory's modelops-manifest.json disagrees with its files: remove the "
    "manifest (it is rewritten) or restore the files; then set the annotation modelops.dev/reverify.",
    REASON_ADAPTER_INCOMPATIBLE: "The adapter does not fit its base: set spec.baseModelVersion (in a new "
    "ModelVersion) to the model the adapter was trained from.",
    REASON_GENERATION_FAILED: "The model loaded but could not generate from the fixed prompt: check that it is "
    "a causal language model with a tokenizer; then set the annotation modelops.dev/reverify.",
    REASON_ENGINE_UNAVAILABLE: "The worker image has no engine for this format: use an image with the LLM "
    "extras (llama-cpp-python, transformers); then set the annotation modelops.dev/reverify.",
    REASON_NO_RUNTIME: "No serving runtime loads this spec.format (docs/inferenceservice.md lists them): "
    "export the model as torchscript or onnx (a language model as a huggingface directory or a gguf file) "
    "and register it as a new ModelVersion.",
    REASON_SIGNATURE_MISMATCH: "spec.signature does not match the model: fix the names, datatypes or shapes "
    "it declares (the message says which), or leave it out for onnx; then set the annotation "
    "modelops.dev/reverify to a new value.",
    **{
        reason: f"{what.capitalize()} (spec.source.uri, spec.source.credentialsSecret); then set the annotation "
        "modelops.dev/reverify to a new value to verify again."
        for reason, what in storage_api.WHAT_TO_DO.items()
        if reason != storage_api.REASON_DIGEST_MISMATCH
    },
    **model_store.WHAT_TO_DO,
    REASON_VERIFIER_FAILED: "Read the verification pod's log (it is kept on failure), then set the annotation "
    "modelops.dev/reverify to a new value to verify again.",
}


def decide(spec: ModelVersionSpec) -> status.Conclusion:
    """The generic conclusion of a parseable spec (the handlers refine it with what they observe)."""
    return status.progressing("Pending", "Waiting for the artifact to be verified.", phase="Pending")


# -- small readers ------------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name"))


def version_of(obj: Mapping[str, Any]) -> int | None:
    """The version number of a ModelVersion: given in the spec, else assigned in the status."""
    v = _spec(obj).get("version") or _status(obj).get("version")
    return int(v) if v else None


def aliases_of(obj: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in _status(obj).get("aliases") or []]


def is_ready(obj: Mapping[str, Any]) -> bool:
    return _status(obj).get("phase") == "Ready"


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def same_model(versions: Iterable[Mapping[str, Any]], model: str) -> list[Mapping[str, Any]]:
    return [v for v in versions if _spec(v).get("model") == model]


def _age_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """Older first: creation time, then name (a stable tie-break for objects created in one second)."""
    return (str(_meta(obj).get("creationTimestamp") or ""), name_of(obj))


# -- version numbers ----------------------------------------------------------------------------------


def next_version(me: Mapping[str, Any], versions: Iterable[Mapping[str, Any]]) -> int:
    """The next free number of the model: one more than the highest given or assigned so far."""
    model = _spec(me).get("model")
    taken = [version_of(v) or 0 for v in same_model(versions, str(model)) if name_of(v) != name_of(me)]
    return max(taken, default=0) + 1


def duplicate_of(me: Mapping[str, Any], versions: Iterable[Mapping[str, Any]]) -> str | None:
    """The older ModelVersion with the same model and version number, if any (the later one stalls)."""
    mine = version_of(me)
    if mine is None:
        return None
    model = str(_spec(me).get("model"))
    for other in sorted(same_model(versions, model), key=_age_key):
        if name_of(other) == name_of(me):
            return None
        if version_of(other) == mine and not is_deleting(other):
            return name_of(other)
    return None


# -- where the artifact is ----------------------------------------------------------------------------


def parse_pvc_uri(uri: str) -> Location:
    rest = uri.removeprefix("pvc://")
    claim, _, path = rest.partition("/")
    return Location(claim, path)


def locate(spec: ModelVersionSpec, job: Mapping[str, Any] | None) -> Location | status.Conclusion:
    """Where the artifact is, or why it cannot be looked at yet (a conclusion to report)."""
    src = spec.source
    if src.uri is not None:
        if src.uri.startswith("pvc://"):
            return parse_pvc_uri(src.uri)
        # Object storage: the verification pod fetches it (docs/storage.md), so there is no claim.
        secret = src.credentials_secret.name if src.credentials_secret is not None else None
        return Location("", src.uri.rsplit("/", 1)[-1], source_uri=src.uri, credentials_secret=secret)
    assert src.training_job is not None  # the CEL rule and the model require one of the two
    job_name = src.training_job.name
    if job is None:
        return status.progressing(
            "TrainingJobNotFound",
            f"Waiting for TrainingJob {job_name} (spec.source.trainingJob.name) to exist.",
            phase="Pending",
        )
    phase = _status(job).get("phase")
    if phase == "Failed":
        return status.stalled(
            "TrainingJobFailed",
            f"TrainingJob {job_name} failed, so it has no artifact: fix and rerun it, or point "
            "spec.source at another artifact in a new ModelVersion.",
        )
    if phase != "Succeeded":
        return status.progressing(
            "WaitingForTrainingJob",
            f"TrainingJob {job_name} is {phase or 'not started'}; its artifact is verified once it succeeds.",
            phase="Pending",
        )
    jspec = _spec(job)
    storage = ((jspec.get("checkpoint") or {}).get("storage")) or {}
    claim = storage.get("existingClaim") or f"{job_name}-checkpoints"
    if jspec.get("fineTune"):  # a fine-tune exports a Hugging Face directory (modelops.api.finetune)
        return Location(str(claim), f"{TRAINING_OUTPUT_DIR}/{FINETUNE_OUTPUT_DIR}")
    return Location(str(claim), f"{TRAINING_OUTPUT_DIR}/{TRAINING_ARTIFACT}")


def verification_request(obj: Mapping[str, Any]) -> str:
    """The re-verification asked for: the annotation's value ('' for the first verification)."""
    return str((_meta(obj).get("annotations") or {}).get(REVERIFY_ANNOTATION) or "")


PERIODIC = "@periodic-"


def _parse_time(value: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def wanted_request(
    obj: Mapping[str, Any], *, now: datetime.datetime | None = None, interval: float | None = None
) -> str | None:
    """The verification run the version needs now (its request), or None when none is needed.

    A run is needed when the version was never verified, when the reverify annotation has a value no
    run has answered yet, or (with `interval` seconds) when the last run finished that long ago; a
    run under way keeps its request until it finishes. Periodic runs get the request
    `<annotation>@periodic-<unix time>`, so each has its own pod.
    """
    asked = verification_request(obj)
    done = _status(obj).get("verification") or {}
    stored = str(done.get("request") or "")
    if stored.split(PERIODIC, 1)[0] != asked:
        return asked
    if not done.get("finishedAt"):
        return stored
    finished = _parse_time(done.get("finishedAt"))
    if interval and now is not None and finished is not None and (now - finished).total_seconds() >= interval:
        return f"{asked}{PERIODIC}{int(now.timestamp())}"
    return None


def needs_verification(
    obj: Mapping[str, Any], *, now: datetime.datetime | None = None, interval: float | None = None
) -> bool:
    """Never verified, a reverify request not answered yet, or a periodic check due."""
    return wanted_request(obj, now=now, interval=interval) is not None


def was_verified(obj: Mapping[str, Any]) -> bool:
    """Verified before and not found wrong since (a re-verification may be running now)."""
    return status.is_condition_true(_status(obj).get("conditions"), VERIFIED)


def expected_digest(spec: ModelVersionSpec, obj: Mapping[str, Any]) -> str | None:
    """What the file must hash to: the spec's sha256, else the digest recorded at the last verification."""
    if spec.sha256:
        return spec.sha256.lower().removeprefix("sha256:")
    recorded = (_status(obj).get("artifact") or {}).get("sha256")
    return str(recorded) if recorded else None


# -- the verification pod's answer --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What a finished verification pod said."""

    ok: bool
    reason: str
    message: str
    artifact: dict[str, Any]
    card: dict[str, Any]
    signature: dict[str, Any] | None = None  # what the verifier found, camelCase as in status
    llm: dict[str, Any] | None = None  # what an LLM verifier read (status.llm), camelCase
    store: dict[str, Any] | None = None  # what the verifier put into the model store (controllers/modelstore)


def pod_verdict(pod: Mapping[str, Any]) -> Verdict | None:
    """The verdict of a finished verification pod; None while it runs."""
    st = pod.get("status") or {}
    if st.get("phase") not in ("Succeeded", "Failed"):
        return None
    terminated: Mapping[str, Any] = {}
    for cs in st.get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated") or {}
        break
    text = str(terminated.get("message") or "")
    try:
        result = json.loads(text) if text.strip().startswith("{") else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        tail = " ".join(text.split())[-300:]
        return Verdict(
            False,
            REASON_VERIFIER_FAILED,
            f"the verification pod ended {st.get('phase')} without a result"
            + (f": {tail}" if tail else f" ({_ended_how(terminated, st)})"),
            {},
            {},
        )
    ok = result.get("status") == "Succeeded" and st.get("phase") == "Succeeded"
    reason = str(result.get("reason") or (REASON_VERIFIED if ok else REASON_VERIFIER_FAILED))
    if ok:
        reason = REASON_VERIFIED
    elif reason not in _WHAT_TO_DO:
        reason = REASON_VERIFIER_FAILED
    return Verdict(
        ok,
        reason,
        str(result.get("message") or ""),
        dict(result.get("artifact") or {}),
        dict(result.get("card") or {}),
        dict(result["signature"]) if isinstance(result.get("signature"), dict) else None,
        dict(result["llm"]) if isinstance(result.get("llm"), dict) else None,
        dict(result["store"]) if isinstance(result.get("store"), dict) else None,
    )


def _ended_how(terminated: Mapping[str, Any], st: Mapping[str, Any]) -> str:
    """Why a container ended without a message: its reason and exit code (OOMKilled, 137), else the pod's."""
    if terminated.get("reason") or terminated.get("exitCode") is not None:
        return f"{terminated.get('reason') or 'Error'}, exit code {terminated.get('exitCode')}"
    return str(st.get("reason") or "no message")


def failure_message(verdict: Verdict, location: Location | None = None) -> str:
    """What failed and what to do; a store's refusal also names the Secret the pod used (or its identity)."""
    message = f"Verification failed: {verdict.message}."
    if location is not None and not location.on_claim and verdict.reason in storage_api.EXIT_CODES:
        who = (
            f"Secret {location.credentials_secret} (spec.source.credentialsSecret)"
            if location.credentials_secret
            else "the pod's own identity (no spec.source.credentialsSecret)"
        )
        message += f" The verifier reached {location.uri} with {who}."
    return f"{message} {_WHAT_TO_DO.get(verdict.reason, '')}".strip()


def verified_status(
    verdict: Verdict,
    location: Location,
    spec: ModelVersionSpec,
    job: Mapping[str, Any] | None,
    *,
    image: str,
    now: datetime.datetime,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """status.artifact, metrics and lineage after a successful verification (`base`: a lora's base)."""
    artifact = {
        "uri": location.uri,
        "sha256": verdict.artifact.get("sha256"),
        "sizeBytes": verdict.artifact.get("sizeBytes"),
        "format": verdict.artifact.get("format") or spec.format,
        "verifiedAt": status.format_time(now),
    }
    card = verdict.card
    metrics: dict[str, float] = {}
    job_metrics = (_status(job).get("metrics") or {}) if job else {}
    metrics.update({k: float(v) for k, v in job_metrics.items() if isinstance(v, int | float)})
    metrics.update(
        {k: float(v) for k, v in (card.get("metrics") or {}).items() if isinstance(v, int | float)}
    )
    lineage: dict[str, Any] = {}
    if job is not None:
        jspec = _spec(job)
        lineage["trainingJob"] = name_of(job)
        lineage["image"] = jspec.get("image") or image
        # Only what the run used: a built-in recipe uses the spec's hyperparameters (defaults included);
        # a custom image never sees them, so only those its result reported are recorded.
        reported = _status(job).get("hyperparameters")
        if reported:
            lineage["hyperparameters"] = dict(reported)
        elif jspec.get("hyperparameters") and not jspec.get("image"):
            lineage["hyperparameters"] = dict(jspec["hyperparameters"])
        created = _status(job).get("completionTime")
        if created:
            lineage["created"] = created
        # A fine-tune's data, as its result reported it (its base model: status.baseModel, read below).
        if _status(job).get("datasetDigest"):
            lineage["datasetDigest"] = _status(job)["datasetDigest"]
    elif card.get("trainingJob"):
        lineage["trainingJob"] = card["trainingJob"]
    for key in ("datasetDigest", "codeVersion"):
        if card.get(key):
            lineage[key] = card[key]
    if card.get("hyperparameters") and "hyperparameters" not in lineage:
        lineage["hyperparameters"] = card["hyperparameters"]
    if card.get("created"):
        lineage["created"] = card["created"]
    base_model = llm.base_lineage(spec, base, card, job)
    if base_model:
        lineage["baseModel"] = base_model
    out = {
        "artifact": {k: v for k, v in artifact.items() if v is not None},
        "signature": verdict.signature,
        "metrics": metrics,
        "lineage": lineage,
    }
    info = llm.llm_info(verdict.llm, base_ready=True if llm.base_name(spec) else None)
    if info:
        out["llm"] = info
    return out


# -- gates and aliases --------------------------------------------------------------------------------

_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


def check_gate(gate: MetricGate, metrics: Mapping[str, float]) -> dict[str, Any]:
    value = metrics.get(gate.metric)
    passed = value is not None and bool(_OPS[gate.op](float(value), gate.value))
    result: dict[str, Any] = {"metric": gate.metric, "op": gate.op, "threshold": gate.value, "passed": passed}
    if value is not None:
        result["value"] = float(value)
    return result


def beat_current(
    promotion: Promotion, mine: Mapping[str, float], holder: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The mustBeatCurrent gate as a result: strictly better compareMetric than the alias's holder."""
    metric = promotion.compare_metric
    op = ">" if promotion.higher_is_better else "<"
    value = mine.get(metric)
    theirs = None if holder is None else (_status(holder).get("metrics") or {}).get(metric)
    if holder is None or theirs is None:
        passed = value is not None  # nobody to beat (or a holder without the metric)
    else:
        passed = value is not None and bool(_OPS[op](float(value), float(theirs)))
    result: dict[str, Any] = {"metric": f"{metric} vs current holder", "op": op, "passed": passed}
    if theirs is not None:
        result["threshold"] = float(theirs)
    if value is not None:
        result["value"] = float(value)
    return result


@dataclasses.dataclass(frozen=True)
class AliasDecision:
    """One alias: Granted (moved from `previous`, who must be revoked first), Denied, or Revoked from me."""

    alias: str
    action: str
    previous: str | None
    gates: list[dict[str, Any]]
    message: str


def holder_of(alias: str, versions: Iterable[Mapping[str, Any]], *, besides: str) -> Mapping[str, Any] | None:
    """The other version of the model holding the alias now (the oldest, should there ever be two)."""
    holders = [v for v in versions if alias in aliases_of(v) and name_of(v) != besides]
    return min(holders, key=_age_key) if holders else None


def decide_aliases(me: Mapping[str, Any], versions: Sequence[Mapping[str, Any]]) -> list[AliasDecision]:
    """What to do about each alias the version asks for (or holds but no longer asks for).

    Asked-for aliases are evaluated once per generation of the spec (status.promotionGeneration), only
    while the version is Ready: so an alias moved to a newer version is not taken back in a loop, and
    a user re-asks by editing the spec. An alias held but dropped from the spec is given up.
    """
    spec = ModelVersionSpec.model_validate(dict(_spec(me)))
    promotion = spec.promotion
    st = _status(me)
    held = aliases_of(me)
    model_versions = same_model(versions, spec.model)
    decisions: list[AliasDecision] = []
    for alias in held:
        if alias not in promotion.aliases:
            decisions.append(
                AliasDecision(alias, "Revoked", None, [], "no longer asked for in spec.promotion.aliases")
            )
    generation = _meta(me).get("generation")
    if not is_ready(me) or is_deleting(me) or st.get("promotionGeneration") == generation:
        return decisions
    metrics = {k: float(v) for k, v in (st.get("metrics") or {}).items()}
    gates = [check_gate(g, metrics) for g in promotion.gates]
    for alias in promotion.aliases:
        if alias in held:
            continue
        holder = holder_of(alias, model_versions, besides=name_of(me))
        results = list(gates)
        if promotion.must_beat_current:
            results.append(beat_current(promotion, metrics, holder))
        failed = [r for r in results if not r["passed"]]
        previous = name_of(holder) if holder is not None else None
        if failed:
            what = "; ".join(
                f"{r['metric']} {r.get('value', 'missing')} is not {r['op']} {r.get('threshold', '')}".strip()
                for r in failed
            )
            decisions.append(AliasDecision(alias, "Denied", previous, results, f"gates failed: {what}"))
        else:
            moved = f", moved from {previous}" if previous else ""
            decisions.append(
                AliasDecision(
                    alias, "Granted", previous, results, f"all {len(results)} gate(s) passed{moved}"
                )
            )
    return decisions


def history_entry(
    decision: AliasDecision, now: datetime.datetime, *, action: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "alias": decision.alias,
        "action": action or decision.action,
        "time": status.format_time(now),
        "gates": decision.gates,
        "message": decision.message,
    }
    if decision.previous:
        entry["previousHolder"] = decision.previous
    return entry


def with_history(obj: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    history = [dict(e) for e in _status(obj).get("promotionHistory") or []]
    return (history + [dict(e) for e in entries])[-MAX_HISTORY:]


def revoke_patch(
    holder: Mapping[str, Any], alias: str, new_holder: str, now: datetime.datetime
) -> dict[str, Any]:
    """The status merge patch that takes an alias from its holder (with its resourceVersion precondition)."""
    entry = {
        "alias": alias,
        "action": "Revoked",
        "time": status.format_time(now),
        "message": f"moved to {new_holder}",
    }
    return {
        "metadata": {"resourceVersion": _meta(holder).get("resourceVersion")},
        "status": {
            "aliases": [a for a in aliases_of(holder) if a != alias],
            "promotionHistory": with_history(holder, [entry]),
        },
    }


# -- who serves it ------------------------------------------------------------------------------------


def _refers(ref: Mapping[str, Any] | None, model: str, version: int | None, aliases: Sequence[str]) -> bool:
    if not ref or ref.get("model") != model:
        return False
    if ref.get("version") is not None:
        return version is not None and int(ref["version"]) == version
    return ref.get("alias") in aliases


def served_by(me: Mapping[str, Any], isvcs: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The InferenceServices of the namespace whose modelRef or canary modelRef resolves to this version.

    Read from their specs (what they ask for) and from their status (what their pods still run, e.g.
    during a rollout away from this version, or the base of a lora adapter they serve), so a version is
    protected as long as either holds.
    """
    model = str(_spec(me).get("model"))
    version = version_of(me)
    aliases = aliases_of(me)
    ns = str(_meta(me).get("namespace") or "")
    out: list[dict[str, str]] = []
    for isvc in isvcs:
        spec = _spec(isvc)
        st = _status(isvc)
        refs = [spec.get("modelRef"), (spec.get("canary") or {}).get("modelRef")]
        running = [(st.get("stable") or {}).get("modelVersion"), (st.get("canary") or {}).get("modelVersion")]
        # A lora adapter's pods load its base version too: the base is served as well.
        running += [
            (st.get("stable") or {}).get("baseModelVersion"),
            (st.get("canary") or {}).get("baseModelVersion"),
        ]
        if any(_refers(r, model, version, aliases) for r in refs) or name_of(me) in running:
            out.append({"namespace": str(_meta(isvc).get("namespace") or ns), "name": name_of(isvc)})
    return sorted(out, key=lambda r: (r["namespace"], r["name"]))


def deletion_blocked_message(users: Sequence[Mapping[str, str]]) -> str:
    names = ", ".join(u["name"] for u in users)
    first = users[0]["name"]
    return (
        f"cannot delete: served by InferenceService {names}; remove it from {first} first "
        "(change its spec.modelRef or delete it), and the deletion completes by itself."
    )


# -- retention ----------------------------------------------------------------------------------------


def retention_victims(versions: Iterable[Mapping[str, Any]], keep: int) -> list[str]:
    """Versions to delete so that at most `keep` unaliased versions remain per model.

    Never a version that holds an alias, is served, is being verified or has no number yet; the newest
    versions are kept.
    """
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for v in versions:
        by_model.setdefault(str(_spec(v).get("model")), []).append(v)
    victims: list[str] = []
    for group in by_model.values():
        candidates = [
            v
            for v in group
            if not aliases_of(v)
            and not _status(v).get("servedBy")
            and not is_deleting(v)
            and version_of(v) is not None
            and _status(v).get("phase") in ("Ready", "Failed")
        ]
        candidates.sort(key=lambda v: version_of(v) or 0, reverse=True)
        victims += [name_of(v) for v in candidates[keep:]]
    return sorted(victims)
