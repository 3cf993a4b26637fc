"""Decisions for InferenceService: which versions to serve, what children that takes, what the status says.

Pure functions only; the kopf glue (`inferenceservice_handlers`) lists the ModelVersions, Deployments
and pods, scrapes the canary pods when an analysis is due, calls `targets`, `analyse` and `plan`, and
applies what they return. The decisions live by concern, each module tested with plain dicts:

- `inferenceservice_resolve`: `spec.modelRef` and `spec.canary.modelRef` against the ModelVersions
  (`targets`: what the stable track serves and which version, if any, runs as the canary);
- `inferenceservice_pods`: the serving pods as the controller sees them (`view`: ready, crashing, why);
- `inferenceservice_analysis`: canary analysis from the pods' counters or Prometheus (`judge`);
- `inferenceservice_rollout`: the canary's state machine, the rollout history, the desired children;
- `inferenceservice_status`: the status fields and the Ready and CanaryProgressing conditions.

This module holds the kind's verdict on a spec alone (`decide`) and `plan`, which runs them in order.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from modelops import status
from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.controllers import children, reconcile
from modelops.controllers import inferenceservice_rollout as rollouts
from modelops.controllers import inferenceservice_status as statuses
from modelops.controllers.inferenceservice_analysis import Verdict
from modelops.controllers.inferenceservice_pods import PodView
from modelops.controllers.inferenceservice_resolve import Targets
from modelops.controllers.reconcile import Event

KIND = "InferenceService"


def decide(spec: InferenceServiceSpec) -> status.Conclusion:
    """The verdict on a spec alone, before anything is looked up.

    The CRD's CEL rules refuse a spec with neither modelRef nor predictor, and a canary without a
    modelRef; a spec that got past an older CRD stalls here, naming the field, instead of failing later.
    """
    problem = None
    if spec.model_ref is None and spec.predictor is None:
        problem = (
            "spec.modelRef: required field is missing: add it (a custom spec.predictor may leave it out)"
        )
    elif spec.model_ref is None and spec.canary is not None:
        problem = "spec.canary needs spec.modelRef: canaries compare two ModelVersions"
    if problem:
        return status.stalled(
            reconcile.INVALID_SPEC,
            f"The InferenceService spec cannot be used: {problem}. Fix the spec and apply it again.",
            phase="Failed",
        )
    return status.progressing("Pending", "InferenceService accepted; resolving its ModelVersion.")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do for one InferenceService now."""

    conclusion: status.Conclusion
    status_patch: dict[str, Any]
    events: list[Event]
    manifests: list[dict[str, Any]]
    keep: frozenset[str]  # "Kind/name" of children to leave alone although not desired


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
    rejected: Sequence[children.ChildRejected] = (),
) -> Plan:
    """Everything for one sync. `conflicts` ("Kind/name") are children whose names are taken by objects
    that are not ours: they are left alone and the object stalls saying so. `rejected` are children the
    API server refused: the object stalls with the server's words (ChildRejected)."""
    meta = body.get("metadata") or {}
    name, namespace, uid = str(meta["name"]), str(meta["namespace"]), str(meta["uid"])
    generation = meta.get("generation")
    st: Mapping[str, Any] = body.get("status") or {}
    stamp = status.format_time(now)

    rollout = rollouts.advance(spec, tg, st, verdict, stamp)
    wanted = rollouts.children(
        (name, namespace, uid), spec, rollout, deployments, pods, gateway_api=gateway_api, image=image
    )
    manifests = wanted.manifests
    seen = statuses.observe(name, namespace, spec, rollout, pods, gateway_api=gateway_api)
    gateway_missing = spec.traffic_routing.mode == "gatewayAPI" and not gateway_api
    conclusion = statuses.conclude(tg, rollout.stable, seen.stable_pods, seen.ready_target, gateway_missing)
    if conflicts:
        taken = set(conflicts)
        manifests = [m for m in manifests if f"{m['kind']}/{m['metadata']['name']}" not in taken]
        conclusion = _name_conflict(sorted(taken), namespace)
    elif rejected:
        conclusion = children.rejected_conclusion(rejected[0], phase="Failed")

    desired = status.summarize(conclusion, generation=generation, conditions=st.get("conditions"), now=now)
    desired["conditions"] = statuses.canary_condition(
        desired["conditions"], spec, tg, rollout, seen.canary_share, generation, now
    )
    desired.update(seen.fields)
    if rollout.stable is not None and conclusion.state is status.State.READY:
        rollouts.finish_deployed(desired["rolloutHistory"], rollout.stable.model_version, stamp)
    patch = status.status_changes(st, desired)
    events = rollout.events
    if statuses.signature(st) != statuses.signature(desired):
        bad = conclusion.state is status.State.STALLED or "CrashLoop" in conclusion.reason
        events.append(Event("Warning" if bad else "Normal", conclusion.reason, conclusion.message))
    return Plan(conclusion, patch, events, manifests, wanted.keep)


def _name_conflict(taken: list[str], namespace: str) -> status.Conclusion:
    return status.stalled(
        "NameConflict",
        f"{', '.join(taken)} in namespace {namespace} already exist and belong to something else "
        "(not this InferenceService), so they were left alone. Rename the InferenceService or remove them.",
        phase="Failed",
    )
