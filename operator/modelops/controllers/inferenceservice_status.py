"""What an InferenceService's status says: the served versions, the traffic split and the conditions.

Ready means pods really serve the intended version: at least one Ready pod of it, none of an older
version still in the stable track, and none crash-looping (whose reason, e.g. the server's
ArtifactDigestMismatch from its termination message, becomes the condition's). CanaryProgressing
says what the canary is doing, or why none runs.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from modelops import status
from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.builders import inferenceservice as builders
from modelops.builders import llm
from modelops.builders.inferenceservice import CANARY, STABLE, Served
from modelops.controllers.inferenceservice_pods import HUMAN_REASONS, PERMANENT_REASONS, PodView
from modelops.controllers.inferenceservice_resolve import STALLING_PROBLEMS, Problem, Targets
from modelops.controllers.inferenceservice_rollout import Rollout, version_text

CANARY_CONDITION = "CanaryProgressing"


@dataclasses.dataclass(frozen=True)
class Observed:
    """The serving pods sorted by what they serve, and the status fields read from them."""

    fields: dict[str, Any]
    stable_pods: list[PodView]
    ready_target: list[PodView]  # ready stable pods of the intended version
    canary_share: int


def observe(
    name: str,
    namespace: str,
    spec: InferenceServiceSpec,
    rollout: Rollout,
    pods: Sequence[PodView],
    *,
    gateway_api: bool,
) -> Observed:
    """The status fields other than the conditions: versions, replicas, traffic, history."""
    stable, candidate = rollout.stable, rollout.candidate
    live = [p for p in pods if not p.terminating]
    stable_pods = [p for p in live if p.track == STABLE]
    ready_stable = [p for p in stable_pods if p.ready]
    ready_target = [p for p in ready_stable if stable is not None and p.model_version == stable.model_version]
    ready_canary = [
        p
        for p in live
        if p.track == CANARY
        and p.ready
        and candidate is not None
        and p.model_version == candidate.model_version
    ]
    fields: dict[str, Any] = {
        "url": builders.url(name, namespace, _protocol(spec, stable)),
        "replicas": len(live),
        "readyReplicas": len([p for p in live if p.ready]),
        "rolloutHistory": rollout.history,
        "stable": _served(spec, stable, len(ready_target)) if stable is not None else None,
        "canary": None,
    }
    if candidate is not None and rollout.canary_state is not None:
        fields["canary"] = {**_served(spec, candidate, len(ready_canary)), "analysis": rollout.canary_state}
    share = 0
    if candidate is not None:
        if spec.traffic_routing.mode == "gatewayAPI":
            share = rollout.canary_percent if (gateway_api and ready_canary) else 0
        elif ready_canary:
            share = round(100 * len(ready_canary) / (len(ready_stable) + len(ready_canary)))
    fields["traffic"] = {"stable": 100 - share, "canary": share}
    fields["trafficSummary"] = f"{100 - share}/{share}"
    return Observed(fields, stable_pods, ready_target, share)


def _protocol(spec: InferenceServiceSpec, stable: Served | None) -> str:
    """v2, a custom predictor's own, or openai for an LLM engine."""
    if spec.predictor is not None:
        return spec.predictor.protocol
    return "openai" if llm.is_llm(stable) else "v2"


def _served(spec: InferenceServiceSpec, served: Served, ready: int) -> dict[str, Any]:
    out = {
        "modelVersion": served.model_version,
        "version": served.version,
        "sha256": served.sha256 or None,
        "readyReplicas": ready,
        "runtime": builders.runtime(spec, served),
    }
    if served.base is not None:
        out["baseModelVersion"] = served.base.model_version
    return out


def conclude(
    tg: Targets,
    stable: Served | None,
    stable_pods: Sequence[PodView],
    ready_target: Sequence[PodView],
    gateway_missing: bool,
) -> status.Conclusion:
    """The Ready/Reconciling/Stalled verdict from what the pods of the stable track show."""
    if stable is None:
        problem = tg.problem or Problem("ModelVersionNotFound", "spec.modelRef resolves to no ModelVersion.")
        if problem.reason in STALLING_PROBLEMS:
            return status.stalled(problem.reason, problem.message, phase="Failed")
        return status.progressing(problem.reason, problem.message, phase="Pending")
    what = version_text(stable)
    crashing = [p for p in stable_pods if p.crash and p.model_version == stable.model_version]
    if crashing and crashing[0].crash is not None:
        reason, message = crashing[0].crash
        text = f"Serving pod {crashing[0].name} of {what} cannot run: {reason}: {message}"
        if not ready_target and reason in PERMANENT_REASONS:
            return status.stalled(reason, f"{text}. {PERMANENT_REASONS[reason]}", phase="Failed")
        if not ready_target and reason in HUMAN_REASONS:
            return status.stalled(
                reason,
                text + ". Create what is missing (spec.auth.secretName, spec.predictor.env valueFrom); the "
                "pods start by themselves once it exists.",
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


def canary_condition(
    conditions: Sequence[Mapping[str, Any]],
    spec: InferenceServiceSpec,
    tg: Targets,
    rollout: Rollout,
    share: int,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """CanaryProgressing: True while a canary is analysed, else False with why none runs."""
    candidate, canary_state = rollout.candidate, rollout.canary_state
    if candidate is not None and canary_state is not None and spec.canary is not None:
        step = int(canary_state.get("step", 0))
        message = (
            f"Canary {candidate.model_version} at step {step + 1} of {len(rollout.steps)} ({share}% of "
            f"traffic now); failed analyses {canary_state.get('failures', 0)} of "
            f"{spec.canary.analysis.failure_limit}."
        )
        if canary_state.get("message"):
            message += f" Last analysis {canary_state.get('result')}: {canary_state['message']}"
        # No data is said plainly: the canary waits at its step until its metrics can be read.
        reason = str(canary_state.get("reason") or "Analysing")
        return status.set_condition(
            conditions,
            CANARY_CONDITION,
            "True",
            reason,
            message,
            observed_generation=generation,
            now=now,
        )
    if rollout.rolled_back:
        reason, message = "RolledBack", rollout.rolled_back
    elif rollout.promoted:
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


def signature(st: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What makes a status a different state for a human (an Event is posted when it changes)."""
    conditions = st.get("conditions")
    if not conditions:
        return None
    ready = status.get_condition(conditions, status.READY) or {}
    return (st.get("phase"), ready.get("status"), ready.get("reason"))
