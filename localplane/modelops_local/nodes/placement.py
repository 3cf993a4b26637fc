"""Placement rules that depend on other pods: inter-pod (anti-)affinity and topology spread.

Training pods are commonly spread "one per node" with a required pod anti-affinity on
`kubernetes.io/hostname`, or with a topology spread constraint; serving replicas likewise. These are
the kube-scheduler's InterPodAffinity and PodTopologySpread filters (required terms and
DoNotSchedule only; preferences do not filter), with its failure messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Obj = dict[str, Any]

ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
AFFINITY = "node(s) didn't match pod affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
SPREAD = "node(s) didn't match pod topology spread constraints"
SPREAD_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"


def matches_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; a null selector matches nothing, an empty one everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = [str(v) for v in expr.get("values") or []]
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _identity(pod: Mapping[str, Any]) -> str:
    meta = _meta(pod)
    return str(meta.get("uid") or f"{meta.get('namespace') or 'default'}/{meta.get('name')}")


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _term_matches(term: Mapping[str, Any], owner: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether `other` is selected by an affinity term written in pod `owner`."""
    namespaces = term.get("namespaces") or []
    if not namespaces and term.get("namespaceSelector") is None:
        namespaces = [_meta(owner).get("namespace") or "default"]
    if namespaces and (_meta(other).get("namespace") or "default") not in namespaces:
        return False
    return matches_label_selector(term.get("labelSelector"), _labels(other))


def _required(pod: Mapping[str, Any], kind: str) -> list[Obj]:
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    return list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or [])


def _same_domain(key: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    value = _labels(a).get(key)
    return value is not None and value == _labels(b).get(key)


def filter_pod_affinity(
    pod: Mapping[str, Any], node: Mapping[str, Any], placed: Sequence[tuple[Obj, Obj]]
) -> list[str]:
    """InterPodAffinity: the incoming pod's required terms, and existing pods' anti-affinity.

    `placed` is (pod, node) of every live bound pod.
    """
    me = _identity(pod)
    others = [(p, n) for p, n in placed if _identity(p) != me]
    for p, n in others:
        for term in _required(p, "podAntiAffinity"):
            if _term_matches(term, p, pod) and _same_domain(str(term.get("topologyKey")), n, node):
                return [EXISTING_ANTI_AFFINITY]
    for term in _required(pod, "podAffinity"):
        key = str(term.get("topologyKey"))
        matching = [(p, n) for p, n in others if _term_matches(term, pod, p)]
        if any(_same_domain(key, n, node) for _, n in matching):
            continue
        # The first pod of a group that selects itself may go anywhere the key exists.
        if not matching and _term_matches(term, pod, pod) and key in _labels(node):
            continue
        return [AFFINITY]
    for term in _required(pod, "podAntiAffinity"):
        key = str(term.get("topologyKey"))
        if any(_term_matches(term, pod, p) and _same_domain(key, n, node) for p, n in others):
            return [ANTI_AFFINITY]
    return []


def filter_topology_spread(
    pod: Mapping[str, Any],
    node: Mapping[str, Any],
    eligible_nodes: Sequence[Mapping[str, Any]],
    placed: Sequence[tuple[Obj, Obj]],
) -> list[str]:
    """PodTopologySpread with whenUnsatisfiable: DoNotSchedule.

    `eligible_nodes` are the nodes the pod's nodeSelector/affinity allow (nodeAffinityPolicy: Honor);
    their topology values are the domains; `placed` is (pod, node) of every live bound pod.
    """
    constraints = [
        c
        for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"
    ]
    namespace = _meta(pod).get("namespace") or "default"
    me = _identity(pod)
    for c in constraints:
        key = str(c.get("topologyKey"))
        if key not in _labels(node):
            return [SPREAD_MISSING_LABEL]
        selector = c.get("labelSelector")
        counts = {_labels(n)[key]: 0 for n in eligible_nodes if key in _labels(n)}
        for p, n in placed:
            if _identity(p) == me or (_meta(p).get("namespace") or "default") != namespace:
                continue
            domain = _labels(n).get(key)
            if domain in counts and matches_label_selector(selector, _labels(p)):
                counts[domain] += 1
        if not counts:
            continue
        self_match = 1 if matches_label_selector(selector, _labels(pod)) else 0
        min_count = min(counts.values())
        if counts.get(_labels(node)[key], 0) + self_match - min_count > int(c.get("maxSkew") or 1):
            return [SPREAD]
    return []
