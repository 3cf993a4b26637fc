"""Deployment controller: roll a pod template out through ReplicaSets.

Follows pkg/controller/deployment upstream, one step per sync: find (or create) the ReplicaSet whose
template equals the Deployment's (named `<deployment>-<pod-template-hash>`, revision annotation one
above the highest old one, so `kubectl rollout history/undo` work), scale it up within `maxSurge`,
scale old ones down within `maxUnavailable` (Recreate: old ones to zero first), prune history beyond
`revisionHistoryLimit`, and report status with the upstream Available/Progressing conditions and
reasons that `kubectl rollout status` and `kubectl wait --for=condition=Available` read. A change of
`replicas` in the middle of a rollout (an autoscaler at work) is shared among the active ReplicaSets in
proportion to their size, as upstream does.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import DEPLOYMENTS, REPLICASETS, Create, Delete, Event, Patch, Result, Status
from .replicasets import claim

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX = "deployment.kubernetes.io/max-replicas"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
# Deployment annotations that describe the Deployment itself and are not copied to its ReplicaSets.
_NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED,
    MAX,
    "deprecated.deployment.rollback.to",
}


def copied_annotations(d: Obj) -> dict[str, str]:
    """Annotations a ReplicaSet takes from its Deployment (e.g. kubernetes.io/change-cause for history)."""
    return {k: v for k, v in c.annotations_of(d).items() if k not in _NOT_COPIED}


def template_hash(template: Obj, collision_count: int) -> str:
    """fnv-32a of the template (plus collisionCount), safe-encoded like upstream's ComputeHash."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[b % len(_ALPHANUMS)] for b in str(h).encode())


def _strip_hash(template: Obj) -> Obj:
    t = json.loads(json.dumps(template))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _normalise(t)


def _normalise(template: Obj) -> Obj:
    t: Obj = json.loads(json.dumps(template))
    m = t.setdefault("metadata", {}) or {}
    m.pop("creationTimestamp", None)
    t["metadata"] = {k: v for k, v in m.items() if v not in (None, {}, [])}
    return t


def revision_of(rs: Obj) -> int:
    try:
        return int(c.annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def replicas_of(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def fenceposts(d: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against spec.replicas (ResolveFenceposts)."""
    strategy = (d.get("spec") or {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    ru = strategy.get("rollingUpdate") or {}
    replicas = replicas_of(d)
    surge = c.scaled_value(ru.get("maxSurge"), replicas, round_up=True, default="25%")
    unavailable = c.scaled_value(ru.get("maxUnavailable"), replicas, round_up=False, default="25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(d: Obj) -> int:
    replicas = replicas_of(d)
    strategy = (d.get("spec") or {}).get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or replicas == 0:
        return 0
    _, unavailable = fenceposts(d)
    return min(unavailable, replicas)


def find_new_rs(d: Obj, owned: Sequence[Obj], rs_hash: str) -> Obj | None:
    want = _normalise(((d.get("spec") or {}).get("template")) or {})
    # Oldest first, like upstream, so a duplicate template resolves the same way every time.
    for rs in sorted(owned, key=c.creation_time):
        if _strip_hash(((rs.get("spec") or {}).get("template")) or {}) == want:
            return rs
    for rs in owned:
        if c.labels_of(rs).get(HASH_LABEL) == rs_hash or c.name_of(rs).endswith(f"-{rs_hash}"):
            return rs
    return None


def new_rs_body(d: Obj, rs_hash: str, replicas: int, revision: int) -> Obj:
    spec = d.get("spec") or {}
    template = json.loads(json.dumps(spec.get("template") or {}))
    tmeta = template.setdefault("metadata", {}) or {}
    template["metadata"] = tmeta
    tmeta.setdefault("labels", {})[HASH_LABEL] = rs_hash
    selector = json.loads(json.dumps(spec.get("selector") or {}))
    selector.setdefault("matchLabels", {})[HASH_LABEL] = rs_hash
    labels = dict(tmeta["labels"])
    surge, _ = fenceposts(d)
    body: Obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{c.name_of(d)}-{rs_hash}",
            "namespace": c.namespace_of(d),
            "labels": labels,
            "annotations": {
                **copied_annotations(d),
                REVISION: str(revision),
                DESIRED: str(replicas_of(d)),
                MAX: str(replicas_of(d) + surge),
            },
            "ownerReferences": [c.owner_reference(d, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
        # A real API server drops status on create; the local one validates it against the schema,
        # where ReplicaSetStatus.replicas is required.
        "status": {"replicas": 0},
    }
    return body


def _scale(d: Obj, rs: Obj, replicas: int) -> Patch:
    surge, _ = fenceposts(d)
    return Patch(
        REPLICASETS,
        c.namespace_of(rs),
        c.name_of(rs),
        {
            "metadata": {"annotations": {DESIRED: str(replicas_of(d)), MAX: str(replicas_of(d) + surge)}},
            "spec": {"replicas": replicas},
        },
    )


def _resize(d: Obj, rs: Obj, replicas: int, result: Result) -> None:
    """Scale a ReplicaSet and record the ScalingReplicaSet event `kubectl describe` shows."""
    result.actions.append(_scale(d, rs, replicas))
    before = replicas_of(rs)
    if before != replicas:
        way = "up" if replicas > before else "down"
        message = f"Scaled {way} replica set {c.name_of(rs)} from {before} to {replicas}"
        result.actions.append(Event(d, "ScalingReplicaSet", message))


def new_rs_replicas(d: Obj, all_rss: Sequence[Obj], new_rs: Obj | None) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    replicas = replicas_of(d)
    current_new = replicas_of(new_rs) if new_rs is not None else 0
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        return replicas
    surge, _ = fenceposts(d)
    current = sum(replicas_of(rs) for rs in all_rss)
    max_total = replicas + surge
    if current >= max_total:
        return current_new
    up = min(max_total - current, replicas - current_new)
    return current_new + max(up, 0)


def old_rs_scale_downs(d: Obj, new_rs: Obj, olds: Sequence[Obj]) -> dict[str, int]:
    """reconcileOldReplicaSets: new replica counts for old ReplicaSets, by name."""
    old_count = sum(replicas_of(rs) for rs in olds)
    if old_count == 0:
        return {}
    all_rss = [new_rs, *olds]
    all_count = sum(replicas_of(rs) for rs in all_rss)
    _, unavailable = fenceposts(d)
    min_available = replicas_of(d) - unavailable
    new_unavailable = replicas_of(new_rs) - _status_int(new_rs, "availableReplicas")
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    changes: dict[str, int] = {}
    current = {c.name_of(rs): replicas_of(rs) for rs in olds}
    # First clean up old pods that are not available anyway: removing them costs no availability.
    cleaned = 0
    for rs in sorted(olds, key=c.creation_time):
        if cleaned >= max_scaled_down:
            break
        name = c.name_of(rs)
        if current[name] == 0:
            continue
        unhealthy = current[name] - _status_int(rs, "availableReplicas")
        if unhealthy <= 0:
            continue
        down = min(max_scaled_down - cleaned, unhealthy)
        current[name] -= down
        cleaned += down
        changes[name] = current[name]
    available = sum(_status_int(rs, "availableReplicas") for rs in all_rss)
    total_down = available - min_available
    if total_down > 0:
        total_down = min(total_down, max_scaled_down - cleaned)
        for rs in sorted(olds, key=c.creation_time):
            if total_down <= 0:
                break
            name = c.name_of(rs)
            down = min(current[name], total_down)
            if down <= 0:
                continue
            current[name] -= down
            total_down -= down
            changes[name] = current[name]
    return changes


def _desired_annotation(rs: Obj) -> int | None:
    try:
        return int(c.annotations_of(rs)[DESIRED])
    except (KeyError, ValueError):
        return None


def is_scaling_event(d: Obj, rss: Sequence[Obj]) -> bool:
    """An active ReplicaSet was sized for another `replicas` than the Deployment's (isScalingEvent)."""
    for rs in rss:
        desired = _desired_annotation(rs)
        if replicas_of(rs) > 0 and desired is not None and desired != replicas_of(d):
            return True
    return False


def _max_annotation(rs: Obj) -> int:
    try:
        return int(c.annotations_of(rs)[MAX])
    except (KeyError, ValueError):
        return 0


def proportional_sizes(d: Obj, new_rs: Obj | None, olds: Sequence[Obj]) -> dict[str, int]:
    """upstream scale(): new replica counts by ReplicaSet name when `replicas` changes mid-rollout.

    One active ReplicaSet takes the whole count; a saturated new ReplicaSet means the old ones go to
    zero; otherwise the change is shared in proportion to each set's size, leftovers to the largest.
    """
    replicas = replicas_of(d)
    all_rss = [*olds, *([new_rs] if new_rs is not None else [])]
    active = [rs for rs in sorted(all_rss, key=c.creation_time) if replicas_of(rs) > 0]
    if len(active) <= 1:
        target = active[0] if active else (new_rs or (max(olds, key=c.creation_time) if olds else None))
        return {} if target is None else {c.name_of(target): replicas}
    if new_rs is not None and (
        replicas_of(new_rs) == replicas
        and _desired_annotation(new_rs) == replicas
        and _status_int(new_rs, "availableReplicas") == replicas
    ):
        return {c.name_of(rs): 0 for rs in olds if replicas_of(rs) > 0}
    strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        return {}
    surge, _ = fenceposts(d)
    allowed = replicas + surge if replicas > 0 else 0
    to_add = allowed - sum(replicas_of(rs) for rs in active)
    if to_add > 0:
        ordered = sorted(active, key=lambda rs: (-replicas_of(rs), -c.creation_time(rs).timestamp()))
    else:
        ordered = sorted(active, key=lambda rs: (-replicas_of(rs), c.creation_time(rs).timestamp()))
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        proportion = 0
        if to_add != 0 and to_add != added:
            if replicas == 0:
                fraction = -replicas_of(rs)
            else:
                before = _max_annotation(rs)
                fraction = (
                    0
                    if before == 0
                    else math.floor(replicas_of(rs) * allowed / before + 0.5) - replicas_of(rs)
                )
            left = to_add - added
            proportion = min(fraction, left) if to_add > 0 else max(fraction, left)
        sizes[c.name_of(rs)] = replicas_of(rs) + proportion
        added += proportion
    if ordered and to_add != 0:
        first = c.name_of(ordered[0])
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


def calculate_status(d: Obj, all_rss: Sequence[Obj], new_rs: Obj | None, at: dt.datetime) -> Obj:
    available = sum(_status_int(rs, "availableReplicas") for rs in all_rss)
    total = sum(replicas_of(rs) for rs in all_rss)
    old = d.get("status") or {}
    status: Obj = {
        "observedGeneration": c.generation_of(d),
        "replicas": sum(_status_int(rs, "replicas") for rs in all_rss),
        "updatedReplicas": _status_int(new_rs, "replicas") if new_rs is not None else 0,
        "readyReplicas": sum(_status_int(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
        "conditions": list(old.get("conditions") or []),
    }
    if old.get("collisionCount"):
        status["collisionCount"] = old["collisionCount"]
    if available >= replicas_of(d) - max_unavailable(d):
        status["conditions"] = c.set_condition(
            status["conditions"],
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            at,
            with_update_time=True,
        )
    else:
        status["conditions"] = c.set_condition(
            status["conditions"],
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            at,
            with_update_time=True,
        )
    # lastUpdateTime of Available only moves with its status, as upstream (avoids status churn).
    prev = c.get_condition(old, "Available")
    for cond in status["conditions"]:
        if cond["type"] == "Available" and prev and prev.get("status") == cond["status"]:
            cond["lastUpdateTime"] = prev.get("lastUpdateTime", cond.get("lastUpdateTime"))
    return status


def _complete(d: Obj, status: Obj) -> bool:
    r = replicas_of(d)
    return bool(
        status["updatedReplicas"] == r
        and status["replicas"] == r
        and status["availableReplicas"] == r
        and status["observedGeneration"] >= c.generation_of(d)
    )


def _progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = status["replicas"] - status["updatedReplicas"]
    return bool(
        status["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
        or status["readyReplicas"] > int(old.get("readyReplicas") or 0)
        or status["availableReplicas"] > int(old.get("availableReplicas") or 0)
        or new_old < old_old
    )


def _set_progressing(status: Obj, st: str, reason: str, message: str, at: dt.datetime) -> None:
    status["conditions"] = c.set_condition(
        status["conditions"], "Progressing", st, reason, message, at, with_update_time=True
    )


def progress_deadline(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds", 600)
    return None if value is None else int(value)


def sync_rollout_status(d: Obj, status: Obj, new_rs: Obj | None, at: dt.datetime, result: Result) -> None:
    """syncRolloutStatus: the Progressing condition, including ProgressDeadlineExceeded."""
    if new_rs is None:
        return
    rs_name = c.name_of(new_rs)
    cond = c.get_condition(status, "Progressing")
    deadline = progress_deadline(d)
    if _complete(d, status):
        if not (cond and cond.get("reason") == "NewReplicaSetAvailable" and cond.get("status") == "True"):
            _set_progressing(
                status,
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                at,
            )
        return
    if _progressing(d, status):
        _set_progressing(status, "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', at)
        if deadline is not None:
            result.requeue(deadline + 0.5)
        return
    if cond is None or deadline is None:
        return
    if cond.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded"):
        return
    last = c.parse_time(cond.get("lastUpdateTime")) or c.parse_time(cond.get("lastTransitionTime")) or at
    left = deadline - (at - last).total_seconds()
    if left <= 0:
        _set_progressing(
            status,
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{rs_name}" has timed out progressing.',
            at,
        )
    else:
        result.requeue(left + 0.5)


def reconcile(d: Obj, rss: Sequence[Obj], pods: Sequence[Obj], at: dt.datetime) -> Result:
    """One sync of a Deployment given its namespace's ReplicaSets and pods."""
    result = Result()
    if c.is_deleting(d):
        return result
    spec = d.get("spec") or {}
    ns = c.namespace_of(d)
    name = c.name_of(d)
    owned, claim_actions = claim(d, spec.get("selector"), rss, "apps/v1", "Deployment", REPLICASETS)
    result.actions.extend(claim_actions)
    old_status = d.get("status") or {}
    collision = int(old_status.get("collisionCount") or 0)
    rs_hash = template_hash(spec.get("template") or {}, collision)
    new_rs = find_new_rs(d, owned, rs_hash)
    olds = [rs for rs in owned if rs is not new_rs]
    max_old_revision = max((revision_of(rs) for rs in olds), default=0)
    strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
    paused = bool(spec.get("paused"))

    pods_by_rs: dict[str, list[Obj]] = {}
    for pod in pods:
        ref = c.controller_ref(pod)
        if ref is not None:
            pods_by_rs.setdefault(str(ref.get("uid")), []).append(pod)

    def finish() -> Result:
        all_rss = [*([new_rs] if new_rs is not None else []), *olds]
        status = calculate_status(d, all_rss, new_rs, at)
        if paused:
            cond = c.get_condition(status, "Progressing")
            if not cond or cond.get("reason") != "DeploymentPaused":
                _set_progressing(status, "Unknown", "DeploymentPaused", "Deployment is paused", at)
        else:
            cond = c.get_condition(status, "Progressing")
            if cond and cond.get("reason") == "DeploymentPaused":
                _set_progressing(status, "Unknown", "DeploymentResumed", "Deployment is resumed", at)
            sync_rollout_status(d, status, new_rs, at, result)
        # A pod the new ReplicaSet cannot create (rejected by the API server) shows on the Deployment.
        failure = (
            c.get_condition(new_rs.get("status") or {}, "ReplicaFailure") if new_rs is not None else None
        )
        if failure is not None and failure.get("status") == "True":
            status["conditions"] = c.set_condition(
                status["conditions"],
                "ReplicaFailure",
                "True",
                str(failure.get("reason") or "FailedCreate"),
                str(failure.get("message") or ""),
                at,
            )
        else:
            status["conditions"] = [x for x in status["conditions"] if x.get("type") != "ReplicaFailure"]
        result.actions.append(Status(DEPLOYMENTS, ns, name, status))
        if new_rs is not None:
            # The new ReplicaSet follows the Deployment's annotations (a change-cause set after the
            # rollout started still lands in `kubectl rollout history`).
            stale = {k: v for k, v in copied_annotations(d).items() if c.annotations_of(new_rs).get(k) != v}
            if stale:
                result.actions.append(
                    Patch(REPLICASETS, ns, c.name_of(new_rs), {"metadata": {"annotations": stale}})
                )
        if new_rs is not None and c.annotations_of(d).get(REVISION) != str(revision_of(new_rs)):
            result.actions.append(
                Patch(
                    DEPLOYMENTS, ns, name, {"metadata": {"annotations": {REVISION: str(revision_of(new_rs))}}}
                )
            )
        return result

    sizes = proportional_sizes(d, new_rs, olds)
    if paused or (sizes and is_scaling_event(d, [*([new_rs] if new_rs is not None else []), *olds])):
        # Replicas changed (or the Deployment is paused): resize the ReplicaSets proportionally and
        # leave the rollout itself for the next sync, as upstream's sync() does.
        for rs in [*([new_rs] if new_rs is not None else []), *olds]:
            if c.name_of(rs) in sizes and sizes[c.name_of(rs)] != replicas_of(rs):
                _resize(d, rs, sizes[c.name_of(rs)], result)
            elif c.name_of(rs) in sizes and replicas_of(rs) and _desired_annotation(rs) != replicas_of(d):
                result.actions.append(_scale(d, rs, replicas_of(rs)))
        return finish()

    if new_rs is None:
        existing = next((rs for rs in rss if c.name_of(rs) == f"{name}-{rs_hash}"), None)
        if existing is not None:
            # Someone else's ReplicaSet has our name: move to the next hash, as upstream does.
            status = dict(old_status)
            status["collisionCount"] = collision + 1
            result.actions.append(Status(DEPLOYMENTS, ns, name, status))
            return result
        if strategy == "Recreate":
            running = any(replicas_of(rs) for rs in olds) or any(
                not c.pod_is_terminal(p) for rs in olds for p in pods_by_rs.get(c.uid_of(rs), [])
            )
            if running:
                for rs in olds:
                    if replicas_of(rs):
                        _resize(d, rs, 0, result)
                return finish()
            initial = replicas_of(d)
        else:
            initial = new_rs_replicas(d, olds, None)
        body = new_rs_body(d, rs_hash, initial, max_old_revision + 1)
        result.actions.append(Create(REPLICASETS, ns, body))
        result.actions.append(
            Event(
                d,
                "ScalingReplicaSet",
                f"Scaled up replica set {body['metadata']['name']} from 0 to {initial}",
            )
        )
        status = calculate_status(d, olds, None, at)
        _set_progressing(
            status,
            "True",
            "NewReplicaSetCreated",
            f'Created new replica set "{body["metadata"]["name"]}"',
            at,
        )
        result.actions.append(Status(DEPLOYMENTS, ns, name, status))
        return result

    if revision_of(new_rs) <= max_old_revision:
        # A rollback to an old template: it becomes the newest revision again.
        new_revision = max_old_revision + 1
        result.actions.append(
            Patch(
                REPLICASETS,
                ns,
                c.name_of(new_rs),
                {"metadata": {"annotations": {REVISION: str(new_revision)}}},
            )
        )
        new_rs = json.loads(json.dumps(new_rs))
        new_rs["metadata"].setdefault("annotations", {})[REVISION] = str(new_revision)

    if strategy == "Recreate":
        active_olds = [rs for rs in olds if replicas_of(rs)]
        if active_olds:
            for rs in active_olds:
                _resize(d, rs, 0, result)
            return finish()
        if any(not c.pod_is_terminal(p) for rs in olds for p in pods_by_rs.get(c.uid_of(rs), [])):
            return finish()
        if replicas_of(new_rs) != replicas_of(d):
            _resize(d, new_rs, replicas_of(d), result)
            return finish()
    else:
        want_new = (
            replicas_of(d) if replicas_of(new_rs) > replicas_of(d) else new_rs_replicas(d, owned, new_rs)
        )
        if want_new != replicas_of(new_rs):
            _resize(d, new_rs, want_new, result)
            return finish()
        downs = old_rs_scale_downs(d, new_rs, olds)
        if downs:
            for rs in olds:
                if c.name_of(rs) in downs:
                    _resize(d, rs, downs[c.name_of(rs)], result)
            return finish()

    # Rolled out: prune history beyond revisionHistoryLimit (only fully scaled-down old sets).
    limit = spec.get("revisionHistoryLimit", 10)
    if limit is not None:
        idle = [
            rs
            for rs in olds
            if replicas_of(rs) == 0 and _status_int(rs, "replicas") == 0 and not c.is_deleting(rs)
        ]
        idle.sort(key=lambda rs: (revision_of(rs), c.creation_time(rs)))
        for rs in idle[: max(len(idle) - int(limit), 0)]:
            result.actions.append(Delete(REPLICASETS, ns, c.name_of(rs), c.uid_of(rs)))
    return finish()
