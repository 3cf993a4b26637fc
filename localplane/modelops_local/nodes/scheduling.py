"""The scheduler's decision as pure functions: which node, if any, may run a pod, and why not.

Kept apart from the loop in `scheduler` so that every rule (resources, selectors, affinity, taints)
is unit-tested without a server. The rules and the words of the "no node fits" message follow the
kube-scheduler's default filter plugins (NodeUnschedulable, TaintToleration, NodeAffinity,
NodeResourcesFit, then PodTopologySpread and InterPodAffinity from `placement`) so users read the
same explanation they would read on a real cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from modelops_local.nodes import placement
from modelops_local.nodes.quantity import parse_quantity

Obj = dict[str, Any]
Resources = dict[str, Decimal]

DEFAULT_SCHEDULER = "default-scheduler"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def _container_requests(container: Mapping[str, Any]) -> Resources:
    res = container.get("resources") or {}
    # The API server defaults a missing request to its limit; do the same so a pod with only limits
    # is accounted as the real scheduler accounts it.
    merged: dict[str, Any] = dict(res.get("limits") or {})
    merged.update(res.get("requests") or {})
    return {name: parse_quantity(q) for name, q in merged.items()}


def _add(total: Resources, more: Mapping[str, Decimal]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, Decimal(0)) + value


def pod_requests(pod: Mapping[str, Any]) -> Resources:
    """What a pod asks of a node: its containers' sum, at least any init container, plus overhead."""
    spec = pod.get("spec") or {}
    total: Resources = {}
    for c in spec.get("containers") or []:
        _add(total, _container_requests(c))
    # Sidecars (init containers that keep running) add to the sum; ordinary init containers run one
    # at a time before the app, so the pod needs only the largest of them.
    sidecars: Resources = {}
    for c in spec.get("initContainers") or []:
        req = _container_requests(c)
        if c.get("restartPolicy") == "Always":
            _add(sidecars, req)
            _add(total, req)
            continue
        for name, value in req.items():
            need = value + sidecars.get(name, Decimal(0))
            if need > total.get(name, Decimal(0)):
                total[name] = need
    _add(total, {k: parse_quantity(v) for k, v in (spec.get("overhead") or {}).items()})
    total["pods"] = Decimal(1)
    return total


def node_allocatable(node: Mapping[str, Any]) -> Resources:
    status = node.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    return {name: parse_quantity(q) for name, q in alloc.items()}


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}


def node_usage(node_name: str, pods: Iterable[Mapping[str, Any]]) -> Resources:
    """Requests of the non-terminal pods bound to a node (terminated pods hold nothing)."""
    used: Resources = {}
    for p in pods:
        if (p.get("spec") or {}).get("nodeName") == node_name and not is_terminal(p):
            _add(used, pod_requests(p))
    return used


def _node_taints(node: Mapping[str, Any]) -> list[Obj]:
    taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or []]
    # A node whose kubelet stopped reporting is tainted by the node lifecycle controller on a real
    # cluster; the local plane has none, so derive the taint here to keep pods off dead nodes.
    if not is_node_ready(node) and not any(t.get("key") == NOT_READY_TAINT for t in taints):
        taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    return taints


def is_node_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if operator == "Exists":
        return key == "" or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Obj | None:
    """The first NoSchedule/NoExecute taint of the node that the pod does not tolerate."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in _node_taints(node):
        if taint.get("effect") not in {"NoSchedule", "NoExecute"}:
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _match_expression(expr: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key, op = expr.get("key", ""), expr.get("operator", "")
    wanted = [str(v) for v in expr.get("values") or []]
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in {"Gt", "Lt"}:
        if not present or len(wanted) != 1:
            return False
        try:
            have, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def matches_node_selector_term(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    meta = node.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    fields = {"metadata.name": str(meta.get("name") or "")}
    exprs = term.get("matchExpressions") or []
    field_exprs = term.get("matchFields") or []
    if not exprs and not field_exprs:
        # An empty term matches nothing, as in the API's definition.
        return False
    return all(_match_expression(e, labels) for e in exprs) and all(
        _match_expression(e, fields) for e in field_exprs
    )


def matches_affinity(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (terms are ORed, expressions within a term ANDed)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(matches_node_selector_term(t, node) for t in terms)


def filter_node(pod: Mapping[str, Any], node: Mapping[str, Any], used: Mapping[str, Decimal]) -> list[str]:
    """Why the pod cannot go to this node, in the kube-scheduler's words; empty when it fits.

    Like the real framework, the first failing filter decides, in the default plugin order.
    """
    spec = pod.get("spec") or {}
    node_spec = node.get("spec") or {}
    if node_spec.get("unschedulable"):
        tolerated = any(
            tolerates(t, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})
            for t in spec.get("tolerations") or []
        )
        if not tolerated:
            return ["node(s) were unschedulable"]
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"]
    if not matches_affinity(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    alloc = node_allocatable(node)
    reasons: list[str] = []
    for name, want in sorted(pod_requests(pod).items()):
        if want <= 0:
            continue
        free = alloc.get(name, Decimal(0)) - used.get(name, Decimal(0))
        if want > free:
            reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
    return reasons


@dataclass(frozen=True)
class Decision:
    """Where to bind (node) or, when node is None, the FailedScheduling message."""

    node: str | None
    message: str = ""


# The real scheduler scores a container without requests as if it asked for 100m CPU and 200Mi, so
# that request-less pods still spread over the nodes instead of piling onto the first one.
_NONZERO = {"cpu": Decimal("0.1"), "memory": Decimal(200 * 2**20)}


def _nonzero_requests(pod: Mapping[str, Any]) -> Resources:
    total: Resources = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = _container_requests(c)
        for name, default in _NONZERO.items():
            total[name] = total.get(name, Decimal(0)) + req.get(name, default)
    return total


def _score(
    pod: Mapping[str, Any], node_name: str, alloc: Resources, pods: list[Mapping[str, Any]]
) -> Decimal:
    # LeastAllocated on cpu and memory: spread pods so one node does not take every job.
    want = _nonzero_requests(pod)
    used: Resources = {}
    for p in pods:
        if (p.get("spec") or {}).get("nodeName") == node_name and not is_terminal(p):
            _add(used, _nonzero_requests(p))
    score = Decimal(0)
    for name in _NONZERO:
        cap = alloc.get(name, Decimal(0))
        if cap > 0:
            score += (cap - used.get(name, Decimal(0)) - want.get(name, Decimal(0))) / cap
    return score


def placed_pods(
    pods: Iterable[Mapping[str, Any]], nodes: Iterable[Mapping[str, Any]]
) -> list[tuple[Obj, Obj]]:
    """(pod, node) of every live pod bound to a known node."""
    by_name = {str((n.get("metadata") or {}).get("name")): n for n in nodes}
    out = []
    for p in pods:
        node = by_name.get(str((p.get("spec") or {}).get("nodeName") or ""))
        if node is not None and not is_terminal(p):
            out.append((dict(p), dict(node)))
    return out


def schedule(
    pod: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> Decision:
    """Choose a node for `pod` among `nodes`, given every pod already bound (`pods`)."""
    node_list = sorted(nodes, key=lambda n: str((n.get("metadata") or {}).get("name")))
    pod_list = list(pods)
    placed = placed_pods(pod_list, node_list)
    eligible = [n for n in node_list if matches_affinity(pod, n)]
    histogram: Counter[str] = Counter()
    best: tuple[Decimal, str] | None = None
    for node in node_list:
        name = str((node.get("metadata") or {}).get("name"))
        used = node_usage(name, pod_list)
        reasons = (
            filter_node(pod, node, used)
            or placement.filter_topology_spread(pod, node, eligible, placed)
            or placement.filter_pod_affinity(pod, node, placed)
        )
        if reasons:
            histogram.update(reasons)
            continue
        score = _score(pod, name, node_allocatable(node), pod_list)
        if best is None or score > best[0]:
            best = (score, name)
    if best is not None:
        return Decision(best[1])
    return Decision(None, unschedulable_message(len(node_list), histogram))


def claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The PersistentVolumeClaims a pod's volumes name (`persistentVolumeClaim.claimName`), in order."""
    names: list[str] = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and str(claim) not in names:
            names.append(str(claim))
    return names


def claim_problem_message(node_count: int, claim: str, deleting: bool) -> str:
    """kube-scheduler's VolumeBinding PreFilter verdict on a claim that is missing or being deleted:
    `0/1 nodes are available: persistentvolumeclaim "data" not found.` (no node is even tried)."""
    problem = "is being deleted" if deleting else "not found"
    return f'0/{node_count} nodes are available: persistentvolumeclaim "{claim}" {problem}.'


def unschedulable_message(node_count: int, histogram: Mapping[str, int]) -> str:
    """`0/2 nodes are available: 2 Insufficient nvidia.com/gpu.` (reasons sorted like the real one)."""
    if node_count == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    return f"0/{node_count} nodes are available: {', '.join(parts)}."


def wants_scheduling(pod: Mapping[str, Any], scheduler_name: str = DEFAULT_SCHEDULER) -> bool:
    """A pod this scheduler must place: unbound, alive, and addressed to it."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or DEFAULT_SCHEDULER) == scheduler_name
        and not meta.get("deletionTimestamp")
        and not is_terminal(pod)
    )
