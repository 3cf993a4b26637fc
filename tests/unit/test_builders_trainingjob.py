"""The TrainingJob's children as the cluster will see them: valid, restricted, wired to the worker."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.api.runconfig import TrainRunConfig
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import trainingjob as b
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

BASE: dict[str, Any] = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}


def spec(**extra: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({**BASE, **extra})


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def assert_valid(obj: dict[str, Any]) -> None:
    assert validate_builtin(obj) == []
    if obj["kind"] == "Pod":
        assert check_restricted(obj) == []


SPECS = {
    "default": spec(),
    "distributed-gpu": spec(
        resources={
            "cpu": "4",
            "memory": "16Gi",
            "gpus": 2,
            "gpuType": "NVIDIA-A100-SXM4-80GB",
            "shmSize": "8Gi",
        },
        distributed={"nodes": 3},
        scheduling={
            "nodeSelector": {"pool": "train"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "priorityClassName": "training",
            "affinity": {"nodeAffinity": {}},
        },
        checkpoint={"storage": {"size": "20Gi", "storageClassName": "fast", "retainOnDelete": False}},
    ),
    "custom-image": TrainingJobSpec.model_validate(
        {
            "image": "registry.example/train:1",
            "command": ["python", "train.py"],
            "args": ["--lr", "0.1"],
            "env": [{"name": "FOO", "value": "bar"}],
            "checkpoint": {"storage": {"existingClaim": "ckpts"}},
        }
    ),
    "file-dataset": spec(dataset={"file": {"claimName": "data", "path": "train.csv"}}),
    "bring-your-own": TrainingJobSpec.model_validate(
        {
            "image": "ghcr.io/modelops/worker:0.1.0",
            "command": ["python", "/code/train.py"],
            "env": [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
            "volumes": [
                {"name": "code", "configMap": {"name": "train-script", "defaultMode": 0o444}},
                {"name": "creds", "secret": {"secretName": "s3", "defaultMode": 0o400}},
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
            ],
            "volumeMounts": [
                {"name": "code", "mountPath": "/code", "readOnly": True},
                {"name": "creds", "mountPath": "/etc/s3", "readOnly": True},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccountName": "trainer",
            "queueName": "team-a",
            "distributed": {"nodes": 2},
        }
    ),
}


@pytest.mark.parametrize("name", SPECS)
def test_every_child_validates_and_every_pod_is_restricted(name: str) -> None:
    s = SPECS[name]
    children = [*b.pods("job", "ns", "uid-1", s), b.headless_service("job", "ns", "uid-1")]
    pvc = b.checkpoint_pvc("job", "ns", "uid-1", s)
    if pvc is not None:
        children.append(pvc)
    for obj in children:
        assert_valid(obj)


def test_one_pod_per_node_wired_for_torchrun_rendezvous() -> None:
    pods = b.pods("job", "ns", "uid-1", SPECS["distributed-gpu"])
    assert [p["metadata"]["name"] for p in pods] == ["job-0", "job-1", "job-2"]
    for rank, p in enumerate(pods):
        env = env_of(p)
        assert env["PET_NNODES"] == "3"
        assert env["PET_NODE_RANK"] == str(rank)
        assert env["PET_NPROC_PER_NODE"] == "2"  # auto: one per GPU
        assert env["PET_MASTER_ADDR"] == "job-0.job-workers.ns.svc.cluster.local"
        assert p["spec"]["hostname"] == f"job-{rank}" and p["spec"]["subdomain"] == "job-workers"
        assert p["spec"]["restartPolicy"] == "Never"
        assert p["metadata"]["labels"][b.LABEL_JOB] == "job"
        assert p["metadata"]["labels"][b.LABEL_RANK] == str(rank)
        assert p["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    svc = b.headless_service("job", "ns", "uid-1")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"] == {b.LABEL_JOB: "job"}
    assert svc["metadata"]["name"] == "job-workers"  # never the name an InferenceService would take


def test_run_config_round_trips_and_checkpoints_are_on_the_claim_of_rank_0() -> None:
    s = spec(hyperparameters={"epochs": 3})
    (p,) = b.pods("job", "ns", "uid-1", s)
    env = env_of(p)
    config = TrainRunConfig.model_validate_json(env["MODELOPS_RUN_CONFIG"])
    assert env["PYTHONHASHSEED"] == "0"  # the export is byte-reproducible without a child interpreter
    assert (
        config.hyperparameters.epochs == 3 and config.job.uid == "uid-1" and config.output.model_name == "job"
    )
    mounts = {m["name"]: m["mountPath"] for m in p["spec"]["containers"][0]["volumeMounts"]}
    assert env["MODELOPS_CHECKPOINT_DIR"] == mounts["checkpoints"]
    assert env["MODELOPS_OUTPUT_DIR"].startswith(mounts["checkpoints"])
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in p["spec"]["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claims == ["job-checkpoints"]
    assert "PET_MASTER_ADDR" not in env  # a single node is standalone
    assert p["spec"]["containers"][0]["command"] == ["modelops-worker", "train"]


def test_gpu_resources_selector_toleration_and_shm() -> None:
    p = b.pods("job", "ns", "u", SPECS["distributed-gpu"])[1]
    c = p["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert p["spec"]["nodeSelector"] == {"pool": "train", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in p["spec"]["tolerations"]
    assert p["spec"]["priorityClassName"] == "training"
    shm = next(v for v in p["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    # Only rank 0 mounts the (ReadWriteOnce) checkpoint claim.
    assert not any(v["name"] == "checkpoints" for v in p["spec"]["volumes"])


def test_custom_image_gets_the_same_wiring_and_its_own_command() -> None:
    (p,) = b.pods("job", "ns", "u", SPECS["custom-image"])
    c = p["spec"]["containers"][0]
    assert c["image"] == "registry.example/train:1"
    assert c["command"] == ["python", "train.py"] and c["args"] == ["--lr", "0.1"]
    env = env_of(p)
    assert "MODELOPS_RUN_CONFIG" not in env and env["FOO"] == "bar" and "MODELOPS_CHECKPOINT_DIR" in env
    assert b.checkpoint_pvc("job", "ns", "u", SPECS["custom-image"]) is None
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in p["spec"]["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claims == ["ckpts"]


def test_worker_image_from_environment() -> None:
    assert b.worker_image({"MODELOPS_WORKER_IMAGE": "local/worker:dev"}) == "local/worker:dev"
    assert b.worker_image({}).startswith("ghcr.io/modelops/worker:")


def test_suspended_job_has_no_pods() -> None:
    assert b.pods("job", "ns", "u", spec(runPolicy={"suspend": True})) == []


def test_checkpoint_claim_is_owned_only_when_not_retained() -> None:
    kept = b.checkpoint_pvc("job", "ns", "u", spec())
    dropped = b.checkpoint_pvc("job", "ns", "u", SPECS["distributed-gpu"])
    assert kept is not None and "ownerReferences" not in kept["metadata"]
    assert dropped is not None and dropped["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert dropped["spec"]["storageClassName"] == "fast"
    assert dropped["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_bring_your_own_fields_reach_every_pod_as_kubernetes_spells_them() -> None:
    for pod in b.pods("byo", "ns", "uid-1", SPECS["bring-your-own"]):
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["HF_TOKEN"] == {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}},
        }
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["code"] == {
            "name": "code",
            "configMap": {"name": "train-script", "defaultMode": 0o444},
        }
        assert volumes["creds"]["secret"] == {"secretName": "s3", "defaultMode": 0o400}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["code"] == {"name": "code", "mountPath": "/code", "readOnly": True}
        assert {"dshm", "code", "creds", "scratch"} <= set(mounts), "ours and the user's, side by side"
        assert pod["spec"]["imagePullSecrets"] == [{"name": "registry"}]
        assert pod["spec"]["serviceAccountName"] == "trainer"
        assert pod["spec"]["automountServiceAccountToken"] is True, "a named account is asked for"


def test_the_default_service_account_gets_no_token_unless_asked() -> None:
    [pod] = b.pods("job", "ns", "u", spec())
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod["spec"]
    [asked] = b.pods("job", "ns", "u", spec(automountServiceAccountToken=True))
    assert asked["spec"]["automountServiceAccountToken"] is True
    [refused] = b.pods("job", "ns", "u", spec(serviceAccountName="sa", automountServiceAccountToken=False))
    assert refused["spec"]["automountServiceAccountToken"] is False


# Kueue's documented names ("Run Plain Pods", https://kueue.sigs.k8s.io/docs/tasks/run/plain_pods/),
# written out here rather than imported, so a typo in the builder cannot pass its own test.
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_RETRIABLE = "kueue.x-k8s.io/retriable-in-group"


def test_a_queued_job_is_one_kueue_pod_group_on_every_pod() -> None:
    pods = b.pods("byo", "ns", "uid-1", SPECS["bring-your-own"])
    assert len(pods) == 2
    for pod in pods:
        meta = pod["metadata"]
        assert meta["labels"][KUEUE_QUEUE] == "team-a"
        assert meta["labels"][KUEUE_GROUP] == "byo", "one group name for all ranks, consistently"
        assert meta["annotations"][KUEUE_COUNT] == "2", "the group is complete with every rank"
        assert KUEUE_RETRIABLE not in meta["annotations"], "restarts are still allowed: Kueue waits for them"
    # The last attempt the backoff limit allows: no replacement will come, Kueue may finish the Workload.
    last = b.pods("byo", "ns", "uid-1", SPECS["bring-your-own"], attempt=3)
    assert all(p["metadata"]["annotations"][KUEUE_RETRIABLE] == "false" for p in last)


def test_without_a_queue_no_kueue_label_is_set() -> None:
    for pod in b.pods("job", "ns", "u", SPECS["distributed-gpu"]):
        assert not [
            k for k in {**pod["metadata"]["labels"], **pod["metadata"]["annotations"]} if "kueue" in k
        ]
