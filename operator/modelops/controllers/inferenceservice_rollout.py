"""Rollouts of an InferenceService: the canary's state machine, the rollout history, the desired children.

Pure functions; `inferenceservice.plan` calls them in order for one sync:

1. `advance` moves the rollout on from what `targets` resolved and the latest analysis verdict: a new
   canary starts (InProgress), a passed analysis advances one traffic step and after the last one the
   stable track moves to the canary's version (Promoted), `failureLimit` failed analyses scale the
   canary away (RolledBack, a Warning Event), a new stable target is a rolling update (Deployed).
2. `children` turns the rollout into manifests: the stable Deployment (its size left to the HPA), the
   canary Deployment sized for its share of traffic, the Service(s), HPA, PDB and an HTTPRoute.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.builders import inferenceservice as builders
from modelops.builders import llm
from modelops.builders.inferenceservice import CANARY, STABLE, Served
from modelops.controllers import inferenceservice_analyses
from modelops.controllers.inferenceservice_analysis import Verdict
from modelops.controllers.inferenceservice_pods import PodView
from modelops.controllers.inferenceservice_resolve import Targets
from modelops.controllers.reconcile import Event

HISTORY_LIMIT = 20
DEFAULT_CANARY_PERCENT = 10


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


def version_text(served: Served) -> str:
    return f"{served.model_version} (version {served.version})" if served.version else served.model_version


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


def finish_deployed(history: list[dict[str, Any]], model_version: str, stamp: str) -> None:
    """A Deployed record ends when the stable track is Ready on its version."""
    for record in reversed(history):
        if record.get("modelVersion") == model_version:
            if record.get("outcome") == "Deployed" and not record.get("endTime"):
                record["endTime"] = stamp
            return


# ---------------------------------------------------------------------------------------------------
# The rollout's state machine.


@dataclasses.dataclass
class Rollout:
    """The rollout as this sync leaves it: what each track serves, the canary's analysis, the history."""

    stable: Served | None
    candidate: Served | None
    history: list[dict[str, Any]]
    stamp: str
    steps: list[int]
    events: list[Event] = dataclasses.field(default_factory=list)
    canary_state: dict[str, Any] | None = None  # status.canary.analysis while a canary runs
    rolled_back: str | None = None  # the CanaryProgressing message of a canary rolled back just now
    promoted: bool = False

    @property
    def canary_percent(self) -> int:
        """The traffic step the running canary is at (0 without one)."""
        if self.canary_state is None:
            return 0
        return self.steps[int(self.canary_state.get("step", 0))]


def advance(
    spec: InferenceServiceSpec,
    tg: Targets,
    st: Mapping[str, Any],
    verdict: Verdict | None,
    stamp: str,
) -> Rollout:
    """Move the rollout on by one sync: start, advance, promote or roll back the canary; deploy stable."""
    prev_stable = (st.get("stable") or {}).get("modelVersion")
    prev_canary: Mapping[str, Any] = st.get("canary") or {}
    rollout = Rollout(
        stable=tg.stable,
        candidate=tg.candidate,
        history=[dict(r) for r in st.get("rolloutHistory") or ()],
        stamp=stamp,
        steps=steps(spec),
    )
    if rollout.candidate is None and prev_canary.get("modelVersion"):
        if not (tg.note and tg.note[0] in ("RolledBack", "Promoted")):
            _close(rollout.history, "Superseded", "spec.canary no longer asks for it", stamp)
    elif rollout.candidate is not None and rollout.stable is not None:
        analysis: dict[str, Any] = dict(prev_canary.get("analysis") or {})
        running = next((r for r in reversed(rollout.history) if r.get("outcome") == "InProgress"), None)
        if (
            prev_canary.get("modelVersion") != rollout.candidate.model_version
            or running is None
            or running.get("canaryDigest") != tg.digest
        ):
            analysis = _start_canary(rollout, tg)
        elif verdict is not None and spec.canary is not None:
            analysis = _judged(rollout, analysis, verdict, spec.canary.analysis.failure_limit)
        if rollout.candidate is not None:
            rollout.canary_state = analysis
    _deploy_stable(rollout, tg, prev_stable)
    rollout.history = rollout.history[-HISTORY_LIMIT:]
    return rollout


def _start_canary(rollout: Rollout, tg: Targets) -> dict[str, Any]:
    """A new canary (or a changed spec.canary): a new InProgress record; its analysis starts at step 0."""
    candidate, stable, stamp = rollout.candidate, rollout.stable, rollout.stamp
    assert candidate is not None and stable is not None
    first = rollout.steps[0]
    _close(rollout.history, "Superseded", f"replaced by a canary of {candidate.model_version}", stamp)
    rollout.history.append(
        _record(
            candidate,
            "InProgress",
            stamp,
            trigger=tg.trigger,
            replaced=stable.model_version,
            digest=tg.digest,
            reason=f"canary at {first}% next to {stable.model_version}",
        )
    )
    rollout.events.append(
        Event(
            "Normal",
            "CanaryStarted",
            f"Canary {version_text(candidate)} started at {first}% of traffic next to "
            f"{version_text(stable)}.",
        )
    )
    return {"step": 0, "failures": 0, "lastCheckTime": stamp}


def _judged(
    rollout: Rollout, analysis: dict[str, Any], verdict: Verdict, failure_limit: int
) -> dict[str, Any]:
    """The canary's analysis state after a verdict; a pass advances (or promotes), a failure counts."""
    analysis.pop("reason", None)
    analysis.update(
        reason=verdict.reason,
        result=verdict.result,
        message=verdict.message[:1024],
        lastCheckTime=rollout.stamp,
        requests=verdict.requests,
        successRate=verdict.success_rate,
        p99LatencyMs=verdict.p99_ms,
        ttftP99Ms=verdict.ttft_p99_ms,
    )
    analysis = {k: v for k, v in analysis.items() if v is not None}
    inferenceservice_analyses.record(rollout.history, analysis, rollout.steps)
    if verdict.result == "Passed":
        analysis["step"] = int(analysis.get("step", 0)) + 1
        if analysis["step"] >= len(rollout.steps):
            _promote(rollout, verdict)
        else:
            assert rollout.candidate is not None
            rollout.events.append(
                Event(
                    "Normal",
                    "CanaryStepPassed",
                    f"Canary {rollout.candidate.model_version} passed its analysis ({verdict.message}); "
                    f"now at {rollout.steps[analysis['step']]}% of traffic.",
                )
            )
    elif verdict.result == "Failed":
        analysis["failures"] = int(analysis.get("failures", 0)) + 1
        _failed(rollout, int(analysis["failures"]), failure_limit, verdict)
    return analysis


def _promote(rollout: Rollout, verdict: Verdict) -> None:
    candidate = rollout.candidate
    assert candidate is not None
    reason = f"passed {len(rollout.steps)} analysis step(s); last: {verdict.message}"
    _close(rollout.history, "Promoted", reason, rollout.stamp)
    rollout.events.append(
        Event("Normal", "CanaryPromoted", f"Canary {version_text(candidate)} promoted to stable: {reason}.")
    )
    rollout.stable, rollout.candidate, rollout.promoted = candidate, None, True


def _failed(rollout: Rollout, failures: int, limit: int, verdict: Verdict) -> None:
    candidate, stable = rollout.candidate, rollout.stable
    assert candidate is not None and stable is not None
    if failures < limit:
        rollout.events.append(
            Event(
                "Warning",
                "CanaryAnalysisFailed",
                f"Canary {candidate.model_version} failed analysis {failures} of {limit}: {verdict.message}",
            )
        )
        return
    reason = f"{failures} failed analyses (failureLimit {limit}); last: {verdict.message}"[:1024]
    _close(rollout.history, "RolledBack", reason, rollout.stamp)
    rollout.events.append(
        Event(
            "Warning",
            "CanaryRolledBack",
            f"Canary {version_text(candidate)} rolled back, {stable.model_version} keeps 100% of traffic: "
            f"{reason}.",
        )
    )
    rollout.rolled_back = (
        f"The canary {candidate.model_version} was rolled back ({reason}); it stays rolled back until "
        "spec.canary changes."
    )
    rollout.candidate = None


def _deploy_stable(rollout: Rollout, tg: Targets, prev_stable: str | None) -> None:
    """The stable track's first deployment or rolling update (a promotion was recorded already)."""
    stable = rollout.stable
    if stable is None or stable.model_version == prev_stable or rollout.promoted:
        return
    first = prev_stable is None
    rollout.history.append(
        _record(
            stable,
            "Deployed",
            rollout.stamp,
            trigger=tg.trigger if tg.trigger != "canary" else "modelRef",
            replaced=prev_stable,
            reason="first deployment" if first else f"rolling update from {prev_stable}",
        )
    )
    rollout.events.append(
        Event(
            "Normal",
            "Deploying" if first else "RollingUpdate",
            f"Serving {version_text(stable)}"
            + ("." if first else f", replacing {prev_stable} by a rolling update."),
        )
    )


# ---------------------------------------------------------------------------------------------------
# The desired children.


@dataclasses.dataclass(frozen=True)
class Children:
    manifests: list[dict[str, Any]]
    keep: frozenset[str]  # "Kind/name" of children to leave alone although not desired


def children(
    meta: tuple[str, str, str],
    spec: InferenceServiceSpec,
    rollout: Rollout,
    deployments: Sequence[Mapping[str, Any]],
    pods: Sequence[PodView],
    *,
    gateway_api: bool,
    image: str | None,
) -> Children:
    """The manifests for the rollout as it stands (`meta` is name, namespace, uid)."""
    name, namespace, uid = meta
    stable, candidate = rollout.stable, rollout.candidate
    if stable is None:
        # Nothing resolvable and nothing served before: touch nothing that exists.
        return Children([], frozenset({"*"}))
    manifests = [builders.deployment(name, namespace, uid, spec, stable, STABLE, image=image)]
    keep: set[str] = set()
    gateway = spec.traffic_routing.mode == "gatewayAPI"
    if candidate is not None:
        replicas = _canary_size(name, spec, deployments, rollout.canary_percent, gateway)
        manifests.append(
            builders.deployment(name, namespace, uid, spec, candidate, CANARY, replicas=replicas, image=image)
        )
    elif rollout.promoted or _promotion_settling(deployments, pods, name, stable):
        # The promoted version keeps its canary pods until the stable track has rolled out to it.
        keep.add(f"Deployment/{builders.deployment_name(name, CANARY)}")
    tracks = (STABLE,) if gateway else builders.TRACKS
    # The worker serves OIP v2 over gRPC too; a custom predictor and the LLM engines HTTP only.
    openai = spec.predictor is None and llm.is_llm(stable)
    grpc = spec.predictor is None and not openai
    manifests.append(builders.service(name, namespace, uid, tracks=tracks, grpc=grpc))
    manifests.append(builders.hpa(name, namespace, uid, spec))
    manifests.append(builders.pdb(name, namespace, uid))
    if gateway:
        manifests.append(builders.service(name, namespace, uid, track=STABLE, grpc=grpc))
        if candidate is not None:
            manifests.append(builders.service(name, namespace, uid, track=CANARY, grpc=grpc))
        if gateway_api:
            weight = rollout.canary_percent if candidate else 0
            manifests.append(builders.http_route(name, namespace, uid, spec, weight, openai=openai))
    return Children(manifests, frozenset(keep))


def _canary_size(
    name: str,
    spec: InferenceServiceSpec,
    deployments: Sequence[Mapping[str, Any]],
    percent: int,
    gateway: bool,
) -> int:
    observed = next(
        (d for d in deployments if d["metadata"]["name"] == builders.deployment_name(name, STABLE)), None
    )
    stable_size = int(((observed or {}).get("spec") or {}).get("replicas") or spec.min_replicas)
    if gateway:
        # The route splits exactly; the canary needs capacity for its share only.
        return max(1, min(spec.max_replicas, math.ceil(stable_size * percent / 100)))
    return canary_replicas(percent, stable_size, spec.max_replicas)


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
