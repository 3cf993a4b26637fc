"""The local scheduler on two one-GPU nodes, driven with kubectl and the official kubernetes client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_nodes import WORKER_IMAGE, Plane, start_plane, wait_for
from kubernetes import client, config

SLEEP = ["python", "-c", "import time; time.sleep(600)"]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    yield from start_plane(
        tmp_path_factory.mktemp("scheduler"), "--nodes", "2", "--gpus", "1", "--cpus", "16"
    )


@pytest.fixture(scope="module")
def core(plane: Plane) -> Any:
    api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
    yield client.CoreV1Api(api_client)
    api_client.close()


def gpu_pod(name: str, gpus: int, **spec: Any) -> Any:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=1,
            containers=[
                client.V1Container(
                    name="main",
                    image=WORKER_IMAGE,
                    command=SLEEP,
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
                )
            ],
            **spec,
        ),
    )


def scheduled(core: Any, name: str) -> Any:
    pod = core.read_namespaced_pod(name, "default")
    conds = {c.type: c for c in pod.status.conditions or []}
    return conds.get("PodScheduled")


def test_nodes_advertise_gpus_with_discovery_labels(core: Any) -> None:
    nodes = core.list_node().items
    assert sorted(n.metadata.name for n in nodes) == ["local-node-1", "local-node-2"]
    for node in nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == "1"
        assert node.status.allocatable["cpu"] == "16"  # --cpus: more than this machine has
        assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
        assert node.metadata.labels["nvidia.com/gpu.product"] == "LOCAL-FAKE-GPU"
        assert node.metadata.labels["kubernetes.io/hostname"] == node.metadata.name
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready[0].status == "True"


def test_too_many_gpus_stays_pending_with_the_reason(plane: Plane, core: Any) -> None:
    core.create_namespaced_pod("default", gpu_pod("huge", 2))
    cond = wait_for("an Unschedulable condition", lambda: scheduled(core, "huge"))
    assert cond.status == "False"
    assert cond.reason == "Unschedulable"
    assert cond.message == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    wait_for(
        "the FailedScheduling event", lambda: "FailedScheduling" in plane.kubectl("describe", "pod", "huge")
    )
    describe = plane.kubectl("describe", "pod", "huge")
    assert "0/2 nodes are available: 2 Insufficient nvidia.com/gpu." in describe
    assert core.read_namespaced_pod("huge", "default").status.phase == "Pending"
    core.delete_namespaced_pod("huge", "default")


def test_waiting_pod_is_scheduled_when_a_gpu_frees_up(plane: Plane, core: Any) -> None:
    for name in ("train-a", "train-b"):
        core.create_namespaced_pod("default", gpu_pod(name, 1))
    for name in ("train-a", "train-b"):
        plane.wait_phase(name, "Running")
    nodes = {core.read_namespaced_pod(n, "default").spec.node_name for n in ("train-a", "train-b")}
    assert nodes == {"local-node-1", "local-node-2"}
    core.create_namespaced_pod("default", gpu_pod("train-c", 1))
    cond = wait_for("train-c to be refused", lambda: scheduled(core, "train-c"))
    assert cond.message == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    freed = core.read_namespaced_pod("train-a", "default").spec.node_name
    core.delete_namespaced_pod("train-a", "default")
    pod = plane.wait_phase("train-c", "Running")
    assert pod["spec"]["nodeName"] == freed
    for name in ("train-b", "train-c"):
        core.delete_namespaced_pod(name, "default")


def test_node_selector_waits_for_a_matching_node(plane: Plane, core: Any) -> None:
    core.create_namespaced_pod("default", gpu_pod("picky", 0, node_selector={"pool": "a100"}))
    cond = wait_for("picky to be refused", lambda: scheduled(core, "picky"))
    assert cond.message == "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    plane.kubectl("label", "node", "local-node-2", "pool=a100")
    pod = plane.wait_phase("picky", "Running")
    assert pod["spec"]["nodeName"] == "local-node-2"
    core.delete_namespaced_pod("picky", "default")
    plane.kubectl("label", "node", "local-node-2", "pool-")


def test_cordoned_and_tainted_nodes_are_avoided(plane: Plane, core: Any) -> None:
    plane.kubectl("cordon", "local-node-1")
    plane.kubectl("taint", "node", "local-node-2", "dedicated=infra:NoSchedule")
    try:
        core.create_namespaced_pod("default", gpu_pod("blocked", 0))
        cond = wait_for("blocked to be refused", lambda: scheduled(core, "blocked"))
        assert cond.message == (
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, "
            "1 node(s) were unschedulable."
        )
        tolerant = gpu_pod(
            "tolerant",
            0,
            tolerations=[
                client.V1Toleration(key="dedicated", operator="Equal", value="infra", effect="NoSchedule")
            ],
        )
        core.create_namespaced_pod("default", tolerant)
        assert plane.wait_phase("tolerant", "Running")["spec"]["nodeName"] == "local-node-2"
        plane.kubectl("uncordon", "local-node-1")
        assert plane.wait_phase("blocked", "Running")["spec"]["nodeName"] == "local-node-1"
    finally:
        plane.kubectl("uncordon", "local-node-1", check=False)
        plane.kubectl("taint", "node", "local-node-2", "dedicated-", check=False)
        for name in ("blocked", "tolerant"):
            plane.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=false", check=False)


def test_anti_affinity_spreads_a_training_job_one_pod_per_node(plane: Plane) -> None:
    term = {"labelSelector": {"matchLabels": {"job": "ddp"}}, "topologyKey": "kubernetes.io/hostname"}
    docs = []
    for rank in range(3):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"ddp-{rank}", "labels": {"job": "ddp"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "affinity": {
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
                    },
                    "containers": [{"name": "main", "image": WORKER_IMAGE, "command": SLEEP}],
                },
            }
        )
    plane.apply(*docs)

    def bound() -> list[dict[str, Any]] | None:
        pods = [plane.pod(f"ddp-{rank}") or {} for rank in range(3)]
        placed = [p for p in pods if p.get("spec", {}).get("nodeName")]
        return placed if len(placed) == 2 else None

    placed = wait_for("two ranks placed", bound)
    assert {p["spec"]["nodeName"] for p in placed} == {"local-node-1", "local-node-2"}
    waiting = next(f"ddp-{r}" for r in range(3) if not (plane.pod(f"ddp-{r}") or {})["spec"].get("nodeName"))
    wait_for(
        "the anti-affinity message", lambda: "anti-affinity" in plane.kubectl("describe", "pod", waiting)
    )
    plane.kubectl("delete", "pod", "ddp-0", "ddp-1", "ddp-2", "--wait=false")


def test_fewer_nodes_on_restart_removes_the_extra_node_and_its_pods(plane: Plane) -> None:
    pinned = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "on-node-2"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {"kubernetes.io/hostname": "local-node-2"},
            "containers": [{"name": "main", "image": WORKER_IMAGE, "command": SLEEP}],
        },
    }
    plane.apply(pinned)
    plane.wait_phase("on-node-2", "Running")
    original = plane.node_args
    plane.stop("nodes")
    plane.node_args = ["--nodes", "1", "--gpus", "1", "--cpus", "16", "--pod-gc-seconds", "0.5"]
    plane.start_nodes()
    try:
        wait_for("local-node-2 to be deleted", lambda: "local-node-2" not in plane.kubectl("get", "nodes"))
        wait_for("its pod to be collected", lambda: plane.pod("on-node-2") is None)
    finally:
        plane.stop("nodes")
        plane.node_args = original
        plane.start_nodes()
        wait_for("both nodes again", lambda: plane.kubectl("get", "nodes").count(" Ready ") == 2)


def test_a_pod_whose_claim_does_not_exist_is_unschedulable_until_it_does(plane: Plane, core: Any) -> None:
    # kube-scheduler's VolumeBinding PreFilter: no node is tried while the claim is missing.
    claimed = client.V1Pod(
        metadata=client.V1ObjectMeta(name="claimed"),
        spec=client.V1PodSpec(
            termination_grace_period_seconds=1,
            containers=[client.V1Container(name="main", image=WORKER_IMAGE, command=SLEEP)],
            volumes=[
                client.V1Volume(
                    name="data",
                    persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="later"),
                )
            ],
        ),
    )
    core.create_namespaced_pod("default", claimed)
    cond = wait_for("an Unschedulable condition", lambda: scheduled(core, "claimed"))
    assert (cond.status, cond.reason) == ("False", "Unschedulable")
    assert cond.message == '0/2 nodes are available: persistentvolumeclaim "later" not found.'
    wait_for(
        "the FailedScheduling event",
        lambda: 'persistentvolumeclaim "later" not found' in plane.kubectl("describe", "pod", "claimed"),
    )
    assert core.read_namespaced_pod("claimed", "default").spec.node_name is None
    core.create_namespaced_persistent_volume_claim(
        "default",
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="later"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    wait_for("the pod to be bound", lambda: core.read_namespaced_pod("claimed", "default").spec.node_name)
    plane.kubectl("delete", "pod", "claimed", "--grace-period=0", "--force", "--wait=false")
    plane.kubectl("delete", "pvc", "later", "--wait=false")
