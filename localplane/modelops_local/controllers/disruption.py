"""PodDisruptionBudget status: how many of the selected pods may be disrupted right now.

Follows pkg/controller/disruption upstream: healthy pods are the Ready ones not being deleted; with an
integer `minAvailable` the expected count is the number of selected pods, otherwise it is the scale of
the pods' controllers (ReplicaSet, the Deployment above it, StatefulSet), so percentages and
`maxUnavailable` are taken against the replicas the user asked for. Evictions themselves are checked
by the API server against this status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import PDBS, Result, Status

Obj = dict[str, Any]


def _scale_of(pod: Obj, rss: dict[str, Obj], owners: dict[tuple[str, str], Obj]) -> tuple[str, int] | None:
    ref = c.controller_ref(pod)
    if ref is None:
        return None
    if ref.get("kind") == "ReplicaSet":
        rs = rss.get(str(ref.get("uid")))
        if rs is None:
            return None
        up = c.controller_ref(rs)
        if up is not None and up.get("kind") == "Deployment":
            d = owners.get(("Deployment", str(up.get("uid"))))
            if d is not None:
                return c.uid_of(d), int((d.get("spec") or {}).get("replicas", 1))
        return c.uid_of(rs), int((rs.get("spec") or {}).get("replicas", 1))
    owner = owners.get((str(ref.get("kind")), str(ref.get("uid"))))
    if owner is None:
        return None
    return c.uid_of(owner), int((owner.get("spec") or {}).get("replicas", 1))


def reconcile(
    pdb: Obj, pods: Sequence[Obj], rss: Sequence[Obj], scalables: Sequence[Obj], at: dt.datetime
) -> Result:
    result = Result()
    if c.is_deleting(pdb):
        return result
    spec = pdb.get("spec") or {}
    selector = spec.get("selector")
    selected = [p for p in pods if c.selector_matches(selector, c.labels_of(p))]
    healthy = sum(1 for p in selected if not c.is_deleting(p) and c.pod_is_ready(p))
    old = pdb.get("status") or {}
    conditions = list(old.get("conditions") or [])
    min_available = spec.get("minAvailable")
    max_unavailable = spec.get("maxUnavailable")
    error: str | None = None
    if isinstance(min_available, int) or (min_available is not None and str(min_available).isdigit()):
        expected = len(selected)
        desired = int(min_available)
    else:
        rs_by_uid = {c.uid_of(rs): rs for rs in rss}
        owners = {(str(o.get("kind")), c.uid_of(o)): o for o in scalables}
        scales: dict[str, int] = {}
        for pod in selected:
            found = _scale_of(pod, rs_by_uid, owners)
            if found is None:
                error = f"found no controllers for pod {c.name_of(pod)!r}"
                break
            scales[found[0]] = found[1]
        expected = sum(scales.values())
        try:
            if min_available is not None:
                desired = c.scaled_value(min_available, expected, round_up=True)
            else:
                desired = max(expected - c.scaled_value(max_unavailable, expected, round_up=True), 0)
        except ValueError as exc:
            error = str(exc)
            desired = 0
    if error is not None:
        conditions = c.set_condition(conditions, "DisruptionAllowed", "False", "SyncFailed", error, at)
        status: Obj = {**old, "conditions": conditions, "disruptionsAllowed": 0}
        result.actions.append(Status(PDBS, c.namespace_of(pdb), c.name_of(pdb), status))
        return result
    allowed = max(healthy - desired, 0)
    if allowed > 0:
        conditions = c.set_condition(conditions, "DisruptionAllowed", "True", "SufficientPods", "", at)
    else:
        conditions = c.set_condition(conditions, "DisruptionAllowed", "False", "InsufficientPods", "", at)
    status = {
        "observedGeneration": c.generation_of(pdb),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": conditions,
    }
    if old.get("disruptedPods"):
        status["disruptedPods"] = old["disruptedPods"]
    result.actions.append(Status(PDBS, c.namespace_of(pdb), c.name_of(pdb), status))
    return result
