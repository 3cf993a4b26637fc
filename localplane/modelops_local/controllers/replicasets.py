"""ReplicaSet controller: keep `spec.replicas` pods of the template running.

Follows pkg/controller/replicaset upstream: pods are the ReplicaSet's when their controller
ownerReference points at it; orphans matching the selector are adopted and owned pods that stop
matching are released; surplus pods are deleted in the upstream order (unscheduled, pending, not ready,
most recently ready, most restarted, newest first); status counts ready and available pods, the latter
honouring `minReadySeconds`.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import PODS, REPLICASETS, Create, Delete, Event, Kind, Patch, Result, Status

Obj = dict[str, Any]

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_NAME_CHARS) for _ in range(n))


def pod_from_template(template: Obj, namespace: str, generate_name: str, owner: Obj) -> Obj:
    tmeta = template.get("metadata") or {}
    metadata: Obj = {
        # The API server completes generateName itself; naming here as well keeps the name
        # known before the create returns, so a retry after a lost response cannot double up.
        "name": f"{generate_name}{random_suffix()}",
        "generateName": generate_name,
        "namespace": namespace,
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        metadata["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": dict(template.get("spec") or {})}


def claim(
    owner: Obj,
    selector: Obj | None,
    children: Sequence[Obj],
    owner_api: str,
    owner_kind: str,
    child_kind: Kind,
) -> tuple[list[Obj], list[Any]]:
    """Children this controller owns after adoption/release, and the patches that adopt/release.

    Returns (owned, actions). Adopted pods count as owned at once, as upstream's ClaimPods does.
    """
    owned: list[Obj] = []
    actions: list[Any] = []
    owner_uid = c.uid_of(owner)
    owner_ref = c.owner_reference(owner, owner_api, owner_kind)
    for pod in children:
        ref = c.controller_ref(pod)
        matches = c.selector_matches(selector, c.labels_of(pod))
        refs = list(c.meta(pod).get("ownerReferences") or [])
        if ref is not None and ref.get("uid") == owner_uid:
            if matches:
                owned.append(pod)
            elif not c.is_deleting(pod) and not c.is_deleting(owner):
                rest = [r for r in refs if r.get("uid") != owner_uid]
                actions.append(
                    Patch(
                        child_kind,
                        c.namespace_of(pod),
                        c.name_of(pod),
                        {"metadata": {"ownerReferences": rest}},
                    )
                )
        elif ref is None and matches and not c.is_deleting(pod) and not c.is_deleting(owner):
            if c.selector_is_empty(selector):
                continue  # upstream never adopts with an empty selector
            actions.append(
                Patch(
                    child_kind,
                    c.namespace_of(pod),
                    c.name_of(pod),
                    {"metadata": {"ownerReferences": [*refs, owner_ref]}},
                )
            )
            owned.append(pod)
    return owned, actions


def deletion_rank(pod: Obj) -> tuple[int, int, int, float, int, float]:
    """Sort key: pods that sort first are deleted first (controller.ActivePods ordering)."""
    assigned = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(c.pod_phase(pod), 0)
    ready = 1 if c.pod_is_ready(pod) else 0
    since = c.pod_ready_since(pod)
    # Among ready pods, the one ready for less time goes first: negate the timestamp.
    ready_key = -since.timestamp() if since else 0.0
    return (assigned, phase, ready, ready_key, -c.pod_restart_count(pod), -c.creation_time(pod).timestamp())


CREATE_BACKOFF = 10.0


def reconcile(
    rs: Obj, pods: Sequence[Obj], at: dt.datetime, failure: tuple[str, float] | None = None
) -> Result:
    """Decide the pod creates/deletes and the status of one ReplicaSet, given its namespace's pods.

    `failure` is (message, seconds ago) of the last rejected pod create: it becomes the ReplicaFailure
    condition (reason FailedCreate), and creates wait CREATE_BACKOFF seconds before the next try.
    """
    result = Result()
    if c.is_deleting(rs):
        return result
    spec = rs.get("spec") or {}
    ns = c.namespace_of(rs)
    name = c.name_of(rs)
    selector = spec.get("selector")
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    min_ready = int(spec.get("minReadySeconds") or 0)

    owned, claim_actions = claim(rs, selector, pods, "apps/v1", "ReplicaSet", PODS)
    result.actions.extend(claim_actions)
    active = [p for p in owned if c.pod_is_active(p)]

    diff = len(active) - want
    created: list[Obj] = []
    deleted: set[str] = set()
    backing_off = failure is not None and failure[1] < CREATE_BACKOFF
    if diff < 0 and backing_off and failure is not None:
        result.requeue(CREATE_BACKOFF - failure[1])
    elif diff < 0:
        template = spec.get("template") or {}
        owner = c.owner_reference(rs, "apps/v1", "ReplicaSet")
        for _ in range(-diff):
            pod = pod_from_template(template, ns, f"{name}-", owner)
            created.append(pod)
            result.actions.append(Create(PODS, ns, pod))
        result.actions.append(Event(rs, "SuccessfulCreate", f"Created {-diff} pod(s)"))
    elif diff > 0:
        for pod in sorted(active, key=deletion_rank)[:diff]:
            deleted.add(c.uid_of(pod))
            result.actions.append(Delete(PODS, ns, c.name_of(pod), c.uid_of(pod)))
        result.actions.append(Event(rs, "SuccessfulDelete", f"Deleted {diff} pod(s)"))

    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully_labeled = sum(
        1 for p in active if all(c.labels_of(p).get(k) == v for k, v in template_labels.items())
    )
    ready = [p for p in active if c.pod_is_ready(p)]
    available = [p for p in ready if c.pod_is_available(p, min_ready, at)]
    old_status = rs.get("status") or {}
    status: Obj = {
        "replicas": len(active),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": len(ready),
        "availableReplicas": len(available),
        "observedGeneration": c.generation_of(rs),
    }
    conditions = [cond for cond in old_status.get("conditions") or [] if cond.get("type") != "ReplicaFailure"]
    if failure is not None and diff < 0:
        conditions = c.set_condition(
            list(old_status.get("conditions") or []), "ReplicaFailure", "True", "FailedCreate", failure[0], at
        )
    if conditions:
        status["conditions"] = conditions
    result.actions.append(Status(REPLICASETS, ns, name, status))
    result.requeue(c.available_in(ready, min_ready, at))
    return result
