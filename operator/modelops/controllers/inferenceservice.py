"""Decisions for InferenceService: which versions to serve, what children that takes, what the status says.

Pure functions only; the kopf glue (`inferenceservice_handlers`) lists the ModelVersions, Deployments
and pods, scrapes the canary pods when an analysis is due, calls `targets`, `analyse` and `plan`, and
applies what they return. The rules, all tested here with dicts:

- `spec.modelRef` resolves to the Ready ModelVersion of that model with that version (or holding that
  alias). The stable Deployment serves it; a new target is rolled out as a rolling update, or, when
  `spec.canary` is set without its own modelRef, as an analysed canary (an alias that moved included).
- `spec.canary.modelRef` names a version to try next to the stable one. Its share of traffic follows
  `steps` (or `trafficPercent`, default 10); every `analysis.intervalSeconds` its pods' request counter
  and latency histogram are compared with the previous look. A passed analysis advances one step, and
  after the last one the stable Deployment moves to the canary's version (Promoted); `failureLimit`
  failed analyses scale the canary away (RolledBack, a Warning Event). The spec is never edited: a
  rolled-back canary stays rolled back until `spec.canary` changes, a promoted one stays promoted
  until `spec.modelRef` or `spec.canary` changes.
- Ready means pods really serve the intended version: at least one Ready pod of it, none of an older
  version still in the stable track, and none crash-looping (whose reason, e.g. the server's
  ArtifactDigestMismatch from its termination message, becomes the condition's).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelops import status
from modelops.api.inferenceservice import Analysis, InferenceServiceSpec, ModelRef
from modelops.api.serveconfig import (
    METRIC_LATENCY,
    METRIC_REQUESTS,
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
)
from modelops.builders import inferenceservice as builders
from modelops.builders.inferenceservice import CANARY, STABLE, Served
from modelops.controllers import inferenceservice_analyses
from modelops.controllers.reconcile import Event

KIND = "InferenceService"
CANARY_CONDITION = "CanaryProgressing"
HISTORY_LIMIT = 20
DEFAULT_CANARY_PERCENT = 10

# Reasons a serving pod gives for not starting that no restart can cure.
PERMANENT_REASONS = (REASON_ARTIFACT_DIGEST_MISMATCH, REASON_ARTIFACT_NOT_FOUND, REASON_ARTIFACT_LOAD_FAILED)
_CRASH_WAITING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")


def decide(spec: InferenceServiceSpec) -> status.Conclusion:
    """The verdict on a spec alone, before anything is looked up."""
    return status.progressing("Pending", "InferenceService accepted; resolving its ModelVersion.")


# ---------------------------------------------------------------------------------------------------
# Resolving model references.


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a reference cannot be served (a condition reason and a message naming the field)."""

    reason: str
    message: str


def _describe(ref: ModelRef) -> str:
    return f"version {ref.version}" if ref.version is not None else f"alias {ref.alias!r}"


def _served(mv: Mapping[str, Any]) -> Served | Problem:
    name = str(mv["metadata"]["name"])
    st = mv.get("status") or {}
    artifact = st.get("artifact") or {}
    sha = artifact.get("sha256")
    where = builders.parse_pvc_uri(artifact.get("uri"))
    if not sha:
        return Problem("ModelVersionNotReady", f"ModelVersion {name} has no verified sha256 yet.")
    if where is None:
        return Problem(
            "ArtifactNotServable",
            f"ModelVersion {name} has artifact {artifact.get('uri')!r}; serving reads pvc://claim/path "
            "artifacts only (register the version from a TrainingJob or a pvc:// URI).",
        )
    version = st.get("version") or (mv.get("spec") or {}).get("version")
    fmt = str(artifact.get("format") or (mv.get("spec") or {}).get("format") or "torchscript")
    return Served(name, int(version) if version else None, str(sha), where[0], where[1], fmt)


def resolve(
    ref: ModelRef, mvs: Sequence[Mapping[str, Any]], field: str = "spec.modelRef"
) -> Served | Problem:
    """The Ready ModelVersion a reference names, or why there is none."""
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
        return Problem(
            "ModelVersionNotReady",
            f"{field}: ModelVersion {mv['metadata']['name']} is {phase}, not Ready; it is served once "
            "its artifact is verified.",
        )
    served = _served(ready[0])
    if isinstance(served, Problem):
        return Problem(served.reason, f"{field}: {served.message}")
    return served


def _by_name(name: str | None, mvs: Sequence[Mapping[str, Any]]) -> Served | None:
    """A version already being served, found by name whatever its phase now (its pods verified it)."""
    for mv in mvs:
        if name and mv["metadata"]["name"] == name:
            served = _served(mv)
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
    history: list[Mapping[str, Any]] = list(st.get("rolloutHistory") or [])
    current = _by_name((st.get("stable") or {}).get("modelVersion"), mvs)
    wanted = resolve(spec.model_ref, mvs)
    trigger = "alias" if spec.model_ref.alias else "modelRef"
    problem = wanted if isinstance(wanted, Problem) else None
    fallback = current if problem is not None else None
    h = canary_digest(spec)

    def rolled_back(name: str) -> tuple[str, str] | None:
        record = _last_record(history, name)
        if record and record.get("outcome") == "RolledBack" and record.get("canaryDigest") == h:
            return (
                "RolledBack",
                f"The canary {name} was rolled back ({record.get('reason', '')}); it stays rolled back "
                "until spec.canary changes.",
            )
        return None

    if spec.canary is None:
        stable = wanted if isinstance(wanted, Served) else fallback
        return Targets(stable, trigger=trigger, problem=problem)

    if spec.canary.model_ref is None:
        # Every new target of spec.modelRef is a canary against what the stable track serves now.
        if current is None or isinstance(wanted, Problem) or wanted.model_version == current.model_version:
            stable = current or (wanted if isinstance(wanted, Served) else None)
            return Targets(stable, trigger=trigger, digest=h, problem=problem)
        note = rolled_back(wanted.model_version)
        if note:
            return Targets(current, trigger=trigger, digest=h, note=note)
        return Targets(current, wanted, trigger=trigger, digest=h)

    # An explicit canary version next to spec.modelRef.
    stable = wanted if isinstance(wanted, Served) else fallback
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
    candidate = resolve(spec.canary.model_ref, mvs, "spec.canary.modelRef")
    if isinstance(candidate, Problem):
        return Targets(stable, trigger="canary", digest=h, problem=problem or candidate, note=note)
    if stable is not None and candidate.model_version == stable.model_version:
        return Targets(stable, trigger="canary", digest=h, problem=problem, note=note)
    note = rolled_back(candidate.model_version)
    if note:
        return Targets(stable, trigger="canary", digest=h, problem=problem, note=note)
    return Targets(stable, candidate, trigger="canary", digest=h, problem=problem)


# ---------------------------------------------------------------------------------------------------
# Serving pods as the controller sees them.


@dataclasses.dataclass(frozen=True)
class PodView:
    name: str
    track: str
    model_version: str
    ready: bool
    terminating: bool
    ip: str | None
    crash: tuple[str, str] | None  # (reason, message) of a pod that cannot run


def _termination(terminated: Mapping[str, Any]) -> tuple[str, str]:
    """The server's own reason from its termination message (JSON), else the container's."""
    text = str(terminated.get("message") or "")
    try:
        parsed = json.loads(text) if text.strip().startswith("{") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("reason"):
        return str(parsed["reason"]), str(parsed.get("message") or "")[:1024]
    reason = str(terminated.get("reason") or "Error")
    code = terminated.get("exitCode")
    tail = text.strip().splitlines()[-1][:512] if text.strip() else ""
    return reason, f"exited with code {code}" + (f": {tail}" if tail else "")


def view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    lbl = meta.get("labels") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or ())
    crash: tuple[str, str] | None = None
    for cs in st.get("containerStatuses") or ():
        if cs.get("name") != builders.CONTAINER:
            continue
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        waiting = state.get("waiting") or {}
        if state.get("terminated") and (state["terminated"].get("exitCode") or 0) != 0:
            crash = _termination(state["terminated"])
        elif waiting.get("reason") in _CRASH_WAITING:
            crash = (
                _termination(last) if last else (str(waiting["reason"]), str(waiting.get("message") or ""))
            )
        elif last and int(cs.get("restartCount") or 0) > 0 and not cs.get("ready"):
            crash = _termination(last)
    if st.get("phase") == "Failed" and crash is None:
        crash = (str(st.get("reason") or "PodFailed"), str(st.get("message") or ""))
    for c in st.get("conditions") or ():
        if (
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ):
            crash = ("Unschedulable", str(c.get("message") or "no node fits the pod"))
    return PodView(
        name=str(meta.get("name")),
        track=str(lbl.get(builders.LABEL_TRACK) or ""),
        model_version=str(lbl.get(builders.LABEL_MODELVERSION) or ""),
        ready=ready and not meta.get("deletionTimestamp"),
        terminating=bool(meta.get("deletionTimestamp")),
        ip=st.get("podIP"),
        crash=crash,
    )


# ---------------------------------------------------------------------------------------------------
# Canary analysis: deltas of the serving counters between two looks at the canary's pods.


@dataclasses.dataclass(frozen=True)
class Counters:
    """A pod's inference counters: requests by HTTP code, latency histogram (cumulative, by `le`)."""

    by_code: Mapping[str, float] = dataclasses.field(default_factory=dict)
    buckets: Mapping[float, float] = dataclasses.field(default_factory=dict)

    @property
    def requests(self) -> float:
        return sum(self.by_code.values())

    @property
    def errors(self) -> float:
        return sum(v for code, v in self.by_code.items() if code.startswith("5"))


def parse_counters(text: str) -> Counters:
    """The request counter and the latency histogram of one pod's /metrics (summed over labels)."""
    by_code: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == METRIC_REQUESTS:
                code = str(sample.labels.get("code", ""))
                by_code[code] = by_code.get(code, 0.0) + float(sample.value)
            elif sample.name == f"{METRIC_LATENCY}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + float(sample.value)
    return Counters(by_code, buckets)


def delta(previous: Counters | None, current: Counters) -> Counters:
    """What happened between two looks; a counter that went down (a restarted pod) counts from zero."""
    if (
        previous is None
        or current.requests < previous.requests
        or any(current.buckets.get(le, 0.0) < v for le, v in previous.buckets.items())
    ):
        return current
    codes = set(current.by_code) | set(previous.by_code)
    return Counters(
        {c: current.by_code.get(c, 0.0) - previous.by_code.get(c, 0.0) for c in codes},
        {le: v - previous.buckets.get(le, 0.0) for le, v in current.buckets.items()},
    )


def add(a: Counters, b: Counters) -> Counters:
    codes = set(a.by_code) | set(b.by_code)
    les = set(a.buckets) | set(b.buckets)
    return Counters(
        {c: a.by_code.get(c, 0.0) + b.by_code.get(c, 0.0) for c in codes},
        {le: a.buckets.get(le, 0.0) + b.buckets.get(le, 0.0) for le in les},
    )


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets: linear within the bucket it falls in.

    A rank in the +Inf bucket answers the highest finite bound (Prometheus does the same); no
    observations answer None.
    """
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One analysis of the canary."""

    result: str  # Passed, Failed or Inconclusive
    message: str
    requests: int | None = None
    success_rate: float | None = None
    p99_ms: float | None = None


def analyse(
    analysis: Analysis,
    pods: Sequence[PodView],
    scraped: Mapping[str, str | None],
    baseline: Mapping[str, Counters] | None,
) -> tuple[Verdict, dict[str, Counters]]:
    """The verdict on the canary's pods since the last look, and the counters to compare with next time.

    A pod seen for the first time counts from zero: its counters started with it, inside this canary.
    """
    canary = [p for p in pods if p.track == CANARY and not p.terminating]
    new_baseline: dict[str, Counters] = {}
    total = Counters()
    for pod in canary:
        text = scraped.get(pod.name)
        if text is None:
            continue
        try:
            current = parse_counters(text)
        except ValueError:
            continue
        new_baseline[pod.name] = current
        total = add(total, delta((baseline or {}).get(pod.name), current))
    return judge(analysis, canary, total), new_baseline


def judge(analysis: Analysis, pods: Sequence[PodView], total: Counters) -> Verdict:
    """The verdict on one interval's counters of the canary (however they were measured)."""
    canary = [p for p in pods if p.track == CANARY and not p.terminating]
    crashed = next((p for p in canary if p.crash), None)
    if crashed is not None and crashed.crash is not None:
        reason, message = crashed.crash
        return Verdict("Failed", f"canary pod {crashed.name} cannot run: {reason}: {message}")
    if not any(p.ready for p in canary):
        return Verdict("Inconclusive", "no canary pod is ready yet")
    requests = round(total.requests)
    if requests < analysis.min_requests or requests == 0:
        return Verdict(
            "Inconclusive",
            f"{requests} canary request(s) since the last analysis, fewer than minRequests "
            f"{analysis.min_requests}",
            requests=requests,
        )
    success = round(1.0 - total.errors / total.requests, 4)
    p99 = quantile(0.99, total.buckets)
    p99_ms = round(p99 * 1000, 3) if p99 is not None else None
    failures = []
    if success < analysis.min_success_rate:
        failures.append(f"success rate {success:.4f} below minSuccessRate {analysis.min_success_rate}")
    if (
        analysis.max_p99_latency_ms is not None
        and p99_ms is not None
        and p99_ms > analysis.max_p99_latency_ms
    ):
        failures.append(f"p99 latency {p99_ms:.1f} ms above maxP99LatencyMs {analysis.max_p99_latency_ms}")
    measured = f"{requests} requests, success rate {success:.4f}" + (
        f", p99 {p99_ms:.1f} ms" if p99_ms is not None else ""
    )
    if failures:
        return Verdict("Failed", "; ".join(failures) + f" ({measured})", requests, success, p99_ms)
    return Verdict("Passed", measured, requests, success, p99_ms)


def prometheus_queries(namespace: str, name: str, seconds: int) -> tuple[str, str]:
    """PromQL for the canary's last interval: requests by code, and latency buckets by `le`.

    The series must carry the `namespace` and `pod` labels (a PodMonitor or the usual kubernetes_sd
    relabelling gives them); the canary's pods are `<name>-canary-...`.
    """
    selector = f'namespace="{namespace}",pod=~"{builders.deployment_name(name, CANARY)}-.*"'
    window = f"[{max(seconds, 1)}s]"
    return (
        f"sum by (code) (increase({METRIC_REQUESTS}{{{selector}}}{window}))",
        f"sum by (le) (increase({METRIC_LATENCY}_bucket{{{selector}}}{window}))",
    )


def counters_from_prometheus(requests: Mapping[str, Any], buckets: Mapping[str, Any]) -> Counters:
    """Counters from two instant-query answers (`/api/v1/query` JSON) of `prometheus_queries`."""

    def vector(answer: Mapping[str, Any]) -> list[tuple[dict[str, str], float]]:
        if answer.get("status") != "success":
            raise ValueError(str(answer.get("error") or "query failed"))
        out = []
        for item in (answer.get("data") or {}).get("result") or []:
            value = float(item["value"][1])
            out.append((dict(item.get("metric") or {}), 0.0 if math.isnan(value) else value))
        return out

    by_code = {labels.get("code", ""): value for labels, value in vector(requests)}
    les = {float(labels["le"]): value for labels, value in vector(buckets) if "le" in labels}
    return Counters(by_code, les)


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def analysis_due(
    spec: InferenceServiceSpec, st: Mapping[str, Any], tg: Targets, now: datetime.datetime
) -> bool:
    """Whether the running canary (the one in status, still the target) is up for its next analysis."""
    if spec.canary is None or tg.candidate is None:
        return False
    canary = st.get("canary") or {}
    if canary.get("modelVersion") != tg.candidate.model_version:
        return False
    last = _parse_time((canary.get("analysis") or {}).get("lastCheckTime"))
    return last is None or (now - last).total_seconds() >= spec.canary.analysis.interval_seconds


# ---------------------------------------------------------------------------------------------------
# The plan: desired children, status, events.


def steps(spec: InferenceServiceSpec) -> list[int]:
    if spec.canary is None:
        return []
    if spec.canary.steps:
        return list(spec.canary.steps)
    percent = spec.canary.traffic_percent
    return [DEFAULT_CANARY_PERCENT if percent is None else percent]


def canary_replicas(percent: int, stable_replicas: int, max_replicas: int) -> int:
    """Replicas for a canary share of `percent` next to `stable_replicas` behind one Service.

    The smallest c >= 1 with c / (stable + c) >= percent / 100, i.e. ceil(stable x p / (100 - p)),
    capped at maxReplicas (100 percent: as many as the stable track). Round robin over ready
    endpoints makes the real split c / (stable + c), which the status reports.
    """
    stable_replicas = max(1, stable_replicas)
    if percent >= 100:
        wanted = stable_replicas
    elif percent <= 0:
        return 0
    else:
        wanted = math.ceil(stable_replicas * percent / (100 - percent))
    return max(1, min(wanted, max_replicas))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do for one InferenceService now."""

    conclusion: status.Conclusion
    status_patch: dict[str, Any]
    events: list[Event]
    manifests: list[dict[str, Any]]
    keep: frozenset[str]  # "Kind/name" of children to leave alone although not desired


def _record(
    served: Served,
    outcome: str,
    now: str,
    *,
    trigger: str,
    replaced: str | None,
    digest: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "modelVersion": served.model_version,
        "startTime": now,
        "outcome": outcome,
        "reason": reason,
        "trigger": trigger,
    }
    if served.version is not None:
        record["version"] = served.version
    if replaced:
        record["replaced"] = replaced
    if digest:
        record["canaryDigest"] = digest
    if outcome not in ("InProgress", "Deployed"):
        record["endTime"] = now
    return record


def _close(history: list[dict[str, Any]], outcome: str, reason: str, now: str) -> None:
    """End the running canary's record (InProgress -> outcome)."""
    for record in reversed(history):
        if record.get("outcome") == "InProgress":
            record.update(outcome=outcome, endTime=now, reason=reason)
            return


def _version_text(served: Served) -> str:
    return f"{served.model_version} (version {served.version})" if served.version else served.model_version


def plan(
    body: Mapping[str, Any],
    spec: InferenceServiceSpec,
    tg: Targets,
    deployments: Sequence[Mapping[str, Any]],
    pods: Sequence[PodView],
    *,
    gateway_api: bool,
    verdict: Verdict | None,
    now: datetime.datetime,
    image: str | None = None,
    conflicts: Sequence[str] = (),
) -> Plan:
    """Everything for one sync. `conflicts` ("Kind/name") are children whose names are taken by objects
    that are not ours: they are left alone and the object stalls saying so."""
    meta = body.get("metadata") or {}
    name, namespace, uid = str(meta["name"]), str(meta["namespace"]), str(meta["uid"])
    generation = meta.get("generation")
    st: Mapping[str, Any] = body.get("status") or {}
    stamp = status.format_time(now)
    history: list[dict[str, Any]] = [dict(r) for r in st.get("rolloutHistory") or ()]
    events: list[Event] = []
    prev_stable = (st.get("stable") or {}).get("modelVersion")
    prev_canary: Mapping[str, Any] = st.get("canary") or {}
    stable, candidate = tg.stable, tg.candidate
    canary_state: dict[str, Any] | None = None
    rolled_back: str | None = None
    promoted = False
    plan_steps = steps(spec)

    # -- the canary's state machine ----------------------------------------------------------------
    if candidate is None and prev_canary.get("modelVersion"):
        if not (tg.note and tg.note[0] in ("RolledBack", "Promoted")):
            _close(history, "Superseded", "spec.canary no longer asks for it", stamp)
    elif candidate is not None and stable is not None:
        analysis: dict[str, Any] = dict(prev_canary.get("analysis") or {})
        running = next((r for r in reversed(history) if r.get("outcome") == "InProgress"), None)
        if (
            prev_canary.get("modelVersion") != candidate.model_version
            or running is None
            or running.get("canaryDigest") != tg.digest
        ):
            _close(history, "Superseded", f"replaced by a canary of {candidate.model_version}", stamp)
            history.append(
                _record(
                    candidate,
                    "InProgress",
                    stamp,
                    trigger=tg.trigger,
                    replaced=stable.model_version,
                    digest=tg.digest,
                    reason=f"canary at {plan_steps[0]}% next to {stable.model_version}",
                )
            )
            analysis = {"step": 0, "failures": 0, "lastCheckTime": stamp}
            events.append(
                Event(
                    "Normal",
                    "CanaryStarted",
                    f"Canary {_version_text(candidate)} started at {plan_steps[0]}% of traffic next to "
                    f"{_version_text(stable)}.",
                )
            )
        elif verdict is not None and spec.canary is not None:
            limits = spec.canary.analysis
            analysis.update(
                result=verdict.result,
                message=verdict.message[:1024],
                lastCheckTime=stamp,
                requests=verdict.requests,
                successRate=verdict.success_rate,
                p99LatencyMs=verdict.p99_ms,
            )
            analysis = {k: v for k, v in analysis.items() if v is not None}
            inferenceservice_analyses.record(history, analysis, plan_steps)
            if verdict.result == "Passed":
                analysis["step"] = int(analysis.get("step", 0)) + 1
                if analysis["step"] >= len(plan_steps):
                    reason = f"passed {len(plan_steps)} analysis step(s); last: {verdict.message}"
                    _close(history, "Promoted", reason, stamp)
                    events.append(
                        Event(
                            "Normal",
                            "CanaryPromoted",
                            f"Canary {_version_text(candidate)} promoted to stable: {reason}.",
                        )
                    )
                    stable, candidate, promoted = candidate, None, True
                else:
                    events.append(
                        Event(
                            "Normal",
                            "CanaryStepPassed",
                            f"Canary {candidate.model_version} passed its analysis ({verdict.message}); "
                            f"now at {plan_steps[analysis['step']]}% of traffic.",
                        )
                    )
            elif verdict.result == "Failed":
                analysis["failures"] = int(analysis.get("failures", 0)) + 1
                if analysis["failures"] >= limits.failure_limit:
                    reason = (
                        f"{analysis['failures']} failed analyses (failureLimit {limits.failure_limit}); "
                        f"last: {verdict.message}"
                    )[:1024]
                    _close(history, "RolledBack", reason, stamp)
                    events.append(
                        Event(
                            "Warning",
                            "CanaryRolledBack",
                            f"Canary {_version_text(candidate)} rolled back, {stable.model_version} keeps "
                            f"100% of traffic: {reason}.",
                        )
                    )
                    rolled_back = (
                        f"The canary {candidate.model_version} was rolled back ({reason}); it stays rolled "
                        "back until spec.canary changes."
                    )
                    candidate = None
                else:
                    events.append(
                        Event(
                            "Warning",
                            "CanaryAnalysisFailed",
                            f"Canary {candidate.model_version} failed analysis {analysis['failures']} of "
                            f"{limits.failure_limit}: {verdict.message}",
                        )
                    )
        if candidate is not None:
            canary_state = analysis

    # -- the stable track: first deployment, rolling update, promotion ----------------------------
    if stable is not None and stable.model_version != prev_stable and not promoted:
        first = prev_stable is None
        history.append(
            _record(
                stable,
                "Deployed",
                stamp,
                trigger=tg.trigger if tg.trigger != "canary" else "modelRef",
                replaced=prev_stable,
                reason="first deployment" if first else f"rolling update from {prev_stable}",
            )
        )
        events.append(
            Event(
                "Normal",
                "Deploying" if first else "RollingUpdate",
                f"Serving {_version_text(stable)}"
                + ("." if first else f", replacing {prev_stable} by a rolling update."),
            )
        )
    history = history[-HISTORY_LIMIT:]

    # -- desired children ---------------------------------------------------------------------------
    manifests: list[dict[str, Any]] = []
    keep: set[str] = set()
    observed_stable = next(
        (d for d in deployments if d["metadata"]["name"] == builders.deployment_name(name, STABLE)), None
    )
    stable_size = int(((observed_stable or {}).get("spec") or {}).get("replicas") or spec.min_replicas)
    canary_percent = plan_steps[int((canary_state or {}).get("step", 0))] if canary_state is not None else 0
    gateway = spec.traffic_routing.mode == "gatewayAPI"
    if stable is not None:
        manifests.append(builders.deployment(name, namespace, uid, spec, stable, STABLE, image=image))
        if candidate is not None:
            if gateway:
                # The route splits exactly; the canary needs capacity for its share only.
                replicas = max(1, min(spec.max_replicas, math.ceil(stable_size * canary_percent / 100)))
            else:
                replicas = canary_replicas(canary_percent, stable_size, spec.max_replicas)
            manifests.append(
                builders.deployment(
                    name, namespace, uid, spec, candidate, CANARY, replicas=replicas, image=image
                )
            )
        elif promoted or _promotion_settling(deployments, pods, name, stable):
            # The promoted version keeps its canary pods until the stable track has rolled out to it.
            keep.add(f"Deployment/{builders.deployment_name(name, CANARY)}")
        tracks = (STABLE,) if gateway else builders.TRACKS
        manifests.append(builders.service(name, namespace, uid, tracks=tracks))
        manifests.append(builders.hpa(name, namespace, uid, spec))
        manifests.append(builders.pdb(name, namespace, uid))
        if gateway:
            manifests.append(builders.service(name, namespace, uid, track=STABLE))
            if candidate is not None:
                manifests.append(builders.service(name, namespace, uid, track=CANARY))
            if gateway_api:
                manifests.append(
                    builders.http_route(name, namespace, uid, spec, canary_percent if candidate else 0)
                )
    else:
        # Nothing resolvable and nothing served before: touch nothing that exists.
        keep.update({"*"})

    # -- status -------------------------------------------------------------------------------------
    live = [p for p in pods if not p.terminating]
    stable_pods = [p for p in live if p.track == STABLE]
    canary_pods = [p for p in live if p.track == CANARY]
    ready_stable = [p for p in stable_pods if p.ready]
    ready_target = [p for p in ready_stable if stable is not None and p.model_version == stable.model_version]
    ready_canary = [
        p
        for p in canary_pods
        if p.ready and candidate is not None and p.model_version == candidate.model_version
    ]
    new: dict[str, Any] = {
        "url": builders.url(name, namespace),
        "replicas": len(live),
        "readyReplicas": len([p for p in live if p.ready]),
        "rolloutHistory": history,
    }
    new["stable"] = (
        {
            "modelVersion": stable.model_version,
            "version": stable.version,
            "sha256": stable.sha256,
            "readyReplicas": len(ready_target),
        }
        if stable is not None
        else None
    )
    if candidate is not None and canary_state is not None:
        new["canary"] = {
            "modelVersion": candidate.model_version,
            "version": candidate.version,
            "sha256": candidate.sha256,
            "readyReplicas": len(ready_canary),
            "analysis": canary_state,
        }
    else:
        new["canary"] = None
    canary_share = 0
    if candidate is not None:
        if gateway:
            canary_share = canary_percent if (gateway_api and ready_canary) else 0
        elif ready_canary:
            canary_share = round(100 * len(ready_canary) / (len(ready_stable) + len(ready_canary)))
    new["traffic"] = {"stable": 100 - canary_share, "canary": canary_share}
    new["trafficSummary"] = f"{100 - canary_share}/{canary_share}"

    conclusion = _conclude(spec, tg, stable, stable_pods, ready_target, gateway and not gateway_api)
    if conflicts:
        taken = set(conflicts)
        manifests = [m for m in manifests if f"{m['kind']}/{m['metadata']['name']}" not in taken]
        conclusion = status.stalled(
            "NameConflict",
            f"{', '.join(sorted(taken))} in namespace {namespace} already exist and belong to something else "
            "(not this InferenceService), so they were left alone. Rename the InferenceService or remove them.",
            phase="Failed",
        )
    desired = status.summarize(conclusion, generation=generation, conditions=st.get("conditions"), now=now)
    desired["conditions"] = _canary_condition(
        desired["conditions"],
        spec,
        tg,
        candidate,
        canary_state,
        canary_share,
        rolled_back,
        promoted,
        generation,
        now,
    )
    for key, value in new.items():
        desired[key] = value
    if stable is not None and conclusion.state is status.State.READY:
        _finish_deployed(desired["rolloutHistory"], stable.model_version, stamp)
    patch = status.status_changes(st, desired)
    if _signature(st) != _signature(desired):
        kind = (
            "Warning"
            if conclusion.state is status.State.STALLED or "CrashLoop" in conclusion.reason
            else "Normal"
        )
        events.append(Event(kind, conclusion.reason, conclusion.message))
    return Plan(conclusion, patch, events, manifests, frozenset(keep))


def _finish_deployed(history: list[dict[str, Any]], model_version: str, stamp: str) -> None:
    """A Deployed record ends when the stable track is Ready on its version."""
    for record in reversed(history):
        if record.get("modelVersion") == model_version:
            if record.get("outcome") == "Deployed" and not record.get("endTime"):
                record["endTime"] = stamp
            return


def _promotion_settling(
    deployments: Sequence[Mapping[str, Any]], pods: Sequence[PodView], name: str, stable: Served
) -> bool:
    """A canary Deployment of the now-stable version stays until the stable track serves it everywhere."""
    canary = next(
        (d for d in deployments if d["metadata"]["name"] == builders.deployment_name(name, CANARY)), None
    )
    if canary is None:
        return False
    labels = (((canary.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(builders.LABEL_MODELVERSION) != stable.model_version:
        return False
    stable_pods = [p for p in pods if p.track == STABLE and not p.terminating]
    return not stable_pods or any(p.model_version != stable.model_version or not p.ready for p in stable_pods)


def _conclude(
    spec: InferenceServiceSpec,
    tg: Targets,
    stable: Served | None,
    stable_pods: Sequence[PodView],
    ready_target: Sequence[PodView],
    gateway_missing: bool,
) -> status.Conclusion:
    if stable is None:
        problem = tg.problem or Problem("ModelVersionNotFound", "spec.modelRef resolves to no ModelVersion.")
        return status.progressing(problem.reason, problem.message, phase="Pending")
    what = _version_text(stable)
    crashing = [p for p in stable_pods if p.crash and p.model_version == stable.model_version]
    if crashing and crashing[0].crash is not None:
        reason, message = crashing[0].crash
        text = f"Serving pod {crashing[0].name} of {what} cannot run: {reason}: {message}"
        if not ready_target and reason in PERMANENT_REASONS:
            return status.stalled(
                reason,
                text + ". The artifact does not match its ModelVersion; re-verify or re-register it.",
                phase="Failed",
            )
        return status.progressing(reason, text, phase="Degraded" if ready_target else "Progressing")
    if tg.problem is not None:
        return status.progressing(
            tg.problem.reason, f"{tg.problem.message} Still serving {what}.", phase="Degraded"
        )
    old = [p for p in stable_pods if p.model_version != stable.model_version]
    if not ready_target:
        return status.progressing(
            "PodsStarting", f"Waiting for a serving pod of {what} to be ready.", phase="Progressing"
        )
    if old:
        return status.progressing(
            "RollingUpdate",
            f"Rolling out {what}: {len(ready_target)} pod(s) ready, {len(old)} of the previous version left.",
            phase="Progressing",
        )
    if gateway_missing:
        return status.progressing(
            "GatewayAPINotInstalled",
            "spec.trafficRouting.mode is gatewayAPI but the cluster has no Gateway API "
            "(gateway.networking.k8s.io/v1 HTTPRoute); the Service serves the stable version only. "
            "Install the Gateway API CRDs or use mode replicas.",
            phase="Degraded",
        )
    return status.ready("Serving", f"Serving {what} on {len(ready_target)} ready pod(s).")


def _canary_condition(
    conditions: Sequence[Mapping[str, Any]],
    spec: InferenceServiceSpec,
    tg: Targets,
    candidate: Served | None,
    canary_state: Mapping[str, Any] | None,
    share: int,
    rolled_back: str | None,
    promoted: bool,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    if candidate is not None and canary_state is not None and spec.canary is not None:
        total = len(steps(spec))
        step = int(canary_state.get("step", 0))
        message = (
            f"Canary {candidate.model_version} at step {step + 1} of {total} ({share}% of traffic now); "
            f"failed analyses {canary_state.get('failures', 0)} of {spec.canary.analysis.failure_limit}."
        )
        if canary_state.get("message"):
            message += f" Last analysis {canary_state.get('result')}: {canary_state['message']}"
        return status.set_condition(
            conditions,
            CANARY_CONDITION,
            "True",
            "Analysing",
            message,
            observed_generation=generation,
            now=now,
        )
    if rolled_back:
        reason, message = "RolledBack", rolled_back
    elif promoted:
        reason, message = "Promoted", "The canary was promoted to stable."
    elif tg.note:
        reason, message = tg.note
    elif spec.canary is not None:
        reason, message = "NoCanary", "No canary version to analyse: the stable track serves the target."
    else:
        reason, message = "NoCanary", "spec.canary is not set."
    return status.set_condition(
        conditions, CANARY_CONDITION, "False", reason, message, observed_generation=generation, now=now
    )


def _signature(st: Mapping[str, Any]) -> tuple[Any, ...] | None:
    conditions = st.get("conditions")
    if not conditions:
        return None
    ready = status.get_condition(conditions, status.READY) or {}
    return (st.get("phase"), ready.get("status"), ready.get("reason"))


def stale(
    observed: Sequence[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]], keep: frozenset[str]
) -> list[Mapping[str, Any]]:
    """Observed children (ours, by label) that are no longer desired and not kept."""
    if "*" in keep:
        return []
    wanted = {(m["kind"], m["metadata"]["name"]) for m in desired}
    out = []
    for obj in observed:
        kind, obj_name = str(obj.get("kind")), str(obj["metadata"]["name"])
        if (kind, obj_name) not in wanted and f"{kind}/{obj_name}" not in keep:
            out.append(obj)
    return out


def needs_apply(observed: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> bool:
    """Apply when the child is missing or was last applied from a different desired form."""
    if observed is None:
        return True
    ours = ((observed.get("metadata") or {}).get("annotations") or {}).get(builders.ANNOTATION_APPLIED)
    return bool(ours != manifest["metadata"]["annotations"][builders.ANNOTATION_APPLIED])
