"""The chart grants exactly the RBAC the operator's code needs: no less (the operator would fail
with 403 in a real cluster) and no more (least privilege, and reviewers read the chart)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from chartkit import Manifests, of_kind, only

permissions = pytest.importorskip(
    "modelops.controllers.permissions", reason="modelops.controllers.permissions is not written yet"
)

Triple = tuple[str, str, str]


def triples(rules: Iterable[dict[str, Any]]) -> set[Triple]:
    """(apiGroup, resource, verb) for every combination a rule grants."""
    found: set[Triple] = set()
    for rule in rules:
        # The comparison below cannot see these narrowing fields, so the chart must not use them.
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        found |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return found


def test_all_namespaces_cluster_role_equals_the_operator_rules(render: Callable[..., Manifests]) -> None:
    manifests = render()
    chart = triples(only(manifests, "ClusterRole")["rules"])
    assert chart == triples(permissions.RULES), (
        f"missing from the chart: {sorted(triples(permissions.RULES) - chart)}; "
        f"not needed by the operator: {sorted(chart - triples(permissions.RULES))}"
    )
    assert [r["metadata"]["name"] for r in of_kind(manifests, "Role")] == ["mo-modelops-leader-election"]


def operator_roles(manifests: Manifests) -> list[dict[str, Any]]:
    """The Roles of the watched namespaces (not the leader election's own Role)."""
    return [r for r in of_kind(manifests, "Role") if not r["metadata"]["name"].endswith("-leader-election")]


def test_leader_election_gets_a_role_for_its_lease_in_its_own_namespace_only(
    render: Callable[..., Manifests],
) -> None:
    from modelops.controllers import leader

    manifests = render({"watchNamespaces": ["team-a"]})
    (role,) = [
        r for r in of_kind(manifests, "Role") if r["metadata"]["name"] == "mo-modelops-leader-election"
    ]
    assert role["metadata"]["namespace"] == "modelops-system"
    assert role["rules"] == leader.rules("mo-modelops")
    (binding,) = [
        b for b in of_kind(manifests, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["subjects"][0]["namespace"] == role["metadata"]["namespace"]
    leases = {r for rule in only(manifests, "ClusterRole")["rules"] for r in rule["resources"]}
    assert "leases" not in leases, "no cluster-wide access to Leases"
    deployment = only(manifests, "Deployment")
    assert (
        "--leader-election-id=mo-modelops" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    # Without leader election, no Role for it.
    off = render({"leaderElection": {"enabled": False}, "replicaCount": 1})
    assert [r for r in of_kind(off, "Role") if "leader" in r["metadata"]["name"]] == []


def test_watched_namespaces_split_rules_into_roles_and_a_cluster_role(
    render: Callable[..., Manifests],
) -> None:
    manifests = render({"watchNamespaces": ["team-a", "team-b"]})
    cluster = triples(only(manifests, "ClusterRole")["rules"])
    assert cluster == triples(permissions.CLUSTER_RULES + permissions.NAMESPACE_LISTING_RULES)
    roles = operator_roles(manifests)
    assert len(roles) == 2
    for role in roles:
        assert triples(role["rules"]) == triples(permissions.NAMESPACED_RULES), role["metadata"]["namespace"]
    # Together they are what the operator needs when it runs with --namespace.
    assert cluster | triples(roles[0]["rules"]) == triples(permissions.rules(clusterwide=False))
