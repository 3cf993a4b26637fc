"""The local scheduler's decisions, as a user of `kubectl describe pod` would read them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from modelops_local.nodes.quantity import parse_quantity
from modelops_local.nodes.scheduling import pod_requests, schedule, wants_scheduling


def node(name: str, cpu: str = "4", memory: str = "8Gi", gpus: int = 0, **extra: Any) -> dict[str, Any]:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **extra.pop("labels", {})}},
        "spec": extra.pop("spec", {}),
        "status": {"allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(name: str = "p", node_name: str = "", phase: str = "Pending", **spec: Any) -> dict[str, Any]:
    resources = spec.pop("resources", {})
    containers = spec.pop("containers", [{"name": "c", "resources": resources}])
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": containers, "nodeName": node_name, **spec},
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("1Gi", str(2**30)),
        ("1e3", "1000"),
        ("2", "2"),
        ("1.5k", "1500"),
        ("100Mi", str(100 * 2**20)),
    ],
)
def test_quantities_follow_kubernetes_suffixes(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


def test_bad_quantity_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="500m"):
        parse_quantity("1 GB")


def test_gpu_request_larger_than_any_node_is_explained_per_node() -> None:
    nodes = [node("n1", gpus=1), node("n2", gpus=1)]
    decision = schedule(pod(resources={"limits": {"nvidia.com/gpu": "2"}}), nodes, [])
    assert decision.node is None
    assert decision.message == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def test_bound_pods_use_up_capacity_but_finished_ones_do_not() -> None:
    nodes = [node("n1", gpus=1)]
    gpu = {"limits": {"nvidia.com/gpu": "1"}}
    running = pod("a", node_name="n1", phase="Running", resources=gpu)
    assert schedule(pod(resources=gpu), nodes, [running]).node is None
    done = pod("a", node_name="n1", phase="Succeeded", resources=gpu)
    assert schedule(pod(resources=gpu), nodes, [done]).node == "n1"


def test_limits_count_as_requests_and_init_containers_take_the_max() -> None:
    p = pod(
        containers=[
            {"name": "a", "resources": {"requests": {"cpu": "500m"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ],
        initContainers=[{"name": "i", "resources": {"requests": {"cpu": "3"}}}],
    )
    req = pod_requests(p)
    assert req["cpu"] == Decimal(3)
    assert req["memory"] == Decimal(2**30)
    assert schedule(p, [node("small", cpu="2")], []).message == "0/1 nodes are available: 1 Insufficient cpu."


def test_several_reasons_are_counted_and_sorted() -> None:
    nodes = [
        node("a", cpu="1"),
        node("b", spec={"unschedulable": True}),
        node("c", spec={"taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]}),
    ]
    decision = schedule(pod(resources={"requests": {"cpu": "2"}}), nodes, [])
    assert decision.message == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: ml}, "
        "1 node(s) were unschedulable."
    )


def test_tolerations_open_tainted_nodes() -> None:
    tainted = node("gpu", spec={"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]})
    assert schedule(pod(), [tainted], []).node is None
    tolerant = pod(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    assert schedule(tolerant, [tainted], []).node == "gpu"
    # PreferNoSchedule is only a preference; it never keeps a pod off a node.
    soft = node("soft", spec={"taints": [{"key": "x", "effect": "PreferNoSchedule"}]})
    assert schedule(pod(), [soft], []).node == "soft"


def test_not_ready_nodes_get_no_new_pods() -> None:
    dead = node("dead")
    dead["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    decision = schedule(pod(), [dead], [])
    assert (
        decision.message
        == "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    )


def test_node_selector_and_required_affinity() -> None:
    nodes = [node("cpu-1", labels={"pool": "cpu"}), node("gpu-1", labels={"pool": "gpu", "gpus": "8"})]
    assert schedule(pod(nodeSelector={"pool": "gpu"}), nodes, []).node == "gpu-1"

    def affinity(*exprs: dict[str, Any]) -> dict[str, Any]:
        terms = [{"matchExpressions": list(exprs)}]
        return {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
        }

    cases = {
        "gpu-1": [
            {"key": "pool", "operator": "In", "values": ["gpu", "tpu"]},
            {"key": "gpus", "operator": "Gt", "values": ["4"]},
            {"key": "gpus", "operator": "Exists"},
            {"key": "pool", "operator": "NotIn", "values": ["cpu"]},
            {"key": "gpus", "operator": "Lt", "values": ["16"]},
        ],
        "cpu-1": [
            {"key": "gpus", "operator": "DoesNotExist"},
            {"key": "pool", "operator": "In", "values": ["cpu"]},
        ],
    }
    for expected, exprs in cases.items():
        for expr in exprs:
            assert schedule(pod(affinity=affinity(expr)), nodes, []).node == expected, expr
    impossible = pod(affinity=affinity({"key": "gpus", "operator": "Gt", "values": ["16"]}))
    assert schedule(impossible, nodes, []).message == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_pods_spread_to_the_least_allocated_node() -> None:
    nodes = [node("n1"), node("n2")]
    busy = pod("busy", node_name="n1", phase="Running", resources={"requests": {"cpu": "2"}})
    assert schedule(pod(resources={"requests": {"cpu": "1"}}), nodes, [busy]).node == "n2"


def test_only_unbound_default_scheduler_pods_are_taken() -> None:
    assert wants_scheduling(pod())
    assert not wants_scheduling(pod(node_name="n1"))
    assert not wants_scheduling(pod(schedulerName="volcano"))
    assert not wants_scheduling(pod(phase="Failed"))


def test_pods_without_requests_still_spread_over_nodes() -> None:
    nodes = [node("n1"), node("n2")]
    first = pod("first", node_name="n1", phase="Running")
    assert schedule(pod("second"), nodes, [first]).node == "n2"


def labelled(name: str, node_name: str = "", **labels: str) -> dict[str, Any]:
    p = pod(name, node_name=node_name, phase="Running" if node_name else "Pending")
    p["metadata"]["labels"] = labels
    return p


def anti_affinity(key: str = "kubernetes.io/hostname", **match: str) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": match}, "topologyKey": key}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def test_required_anti_affinity_puts_one_training_pod_per_node() -> None:
    nodes = [node("n1"), node("n2")]
    first = labelled("rank-0", node_name="n1", job="t")
    second = labelled("rank-1", job="t")
    second["spec"]["affinity"] = anti_affinity(job="t")
    assert schedule(second, nodes, [first]).node == "n2"
    third = labelled("rank-2", job="t")
    third["spec"]["affinity"] = anti_affinity(job="t")
    placed = [first, {**second, "spec": {**second["spec"], "nodeName": "n2"}, "status": {"phase": "Running"}}]
    # n1 fails on the newcomer's own rule; n2 first on rank-1's rule, checked first as upstream does.
    assert schedule(third, nodes, placed).message == (
        "0/2 nodes are available: 1 node(s) didn't match pod anti-affinity rules, "
        "1 node(s) didn't satisfy existing pods anti-affinity rules."
    )


def test_existing_pods_anti_affinity_keeps_newcomers_away() -> None:
    nodes = [node("n1"), node("n2")]
    loner = labelled("loner", node_name="n1", app="db")
    loner["spec"]["affinity"] = anti_affinity(app="web")
    assert schedule(labelled("web", app="web"), nodes, [loner]).node == "n2"


def test_required_pod_affinity_follows_its_peer_and_the_first_pod_may_start() -> None:
    nodes = [node("n1"), node("n2")]
    term = {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    follower = labelled("web")
    follower["spec"]["affinity"] = affinity
    assert schedule(follower, nodes, [labelled("cache", node_name="n2", app="cache")]).node == "n2"
    assert (
        schedule(follower, nodes, []).message
        == "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
    )
    first_cache = labelled("cache", app="cache")
    first_cache["spec"]["affinity"] = affinity
    assert schedule(first_cache, nodes, []).node is not None


def test_topology_spread_limits_the_skew() -> None:
    nodes = [node("n1"), node("n2")]
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]
    bound = [labelled("w0", node_name="n1", app="web")]
    newcomer = labelled("w1", app="web")
    newcomer["spec"]["topologySpreadConstraints"] = spread
    assert schedule(newcomer, nodes, bound).node == "n2"
    # n2 is busier (so least-allocated scoring alone would pick n1), yet n1 would make the skew 2.
    heavy = labelled("other", node_name="n2")
    heavy["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "3"}}
    assert schedule(newcomer, nodes, [*bound, heavy]).node == "n2"
    # A cordoned node still counts as a domain: its zero pods keep n1 from taking a second one.
    cordoned = [nodes[0], node("n2", spec={"unschedulable": True})]
    assert schedule(newcomer, cordoned, bound).message == (
        "0/2 nodes are available: 1 node(s) didn't match pod topology spread constraints, "
        "1 node(s) were unschedulable."
    )
    missing = node("n3")
    del missing["metadata"]["labels"]["kubernetes.io/hostname"]
    assert "missing required label" in schedule(newcomer, [missing], []).message
