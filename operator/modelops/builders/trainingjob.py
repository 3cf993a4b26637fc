"""The children of a TrainingJob: one Pod per node, a headless Service for rendezvous, a checkpoint PVC.

Pods rather than a Job or StatefulSet because restarts are the operator's business: a retryable failure
of any rank restarts every rank together (torchrun's static rendezvous cannot take one new member),
counted against `runPolicy.backoffLimit`. So pods have `restartPolicy: Never` and the operator
recreates the whole set.

The wiring follows the worker contract (`modelops.api.runconfig`, docs/worker.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import modelops.builders as builders
from modelops import __version__
from modelops.api.runconfig import (
    DEFAULT_METRICS_PORT,
    ENV_CHECKPOINT_DIR,
    ENV_METRICS_PORT,
    ENV_OUTPUT_DIR,
    ENV_RUN_CONFIG,
    TrainRunConfig,
)
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import finetune

KIND = "TrainingJob"
LABEL_JOB = "modelops.dev/trainingjob"
LABEL_RANK = "modelops.dev/rank"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_ATTEMPT = "modelops.dev/attempt"

ENV_WORKER_IMAGE = "MODELOPS_WORKER_IMAGE"
DEFAULT_WORKER_IMAGE = f"ghcr.io/modelops/worker:{__version__}"

CONTAINER = "trainer"
CHECKPOINT_MOUNT = "/var/run/modelops/checkpoints"
MASTER_PORT = 29500
# The non-root user of the worker image (distroless "nonroot").
RUN_AS_USER = 65532
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def worker_image(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(ENV_WORKER_IMAGE) or DEFAULT_WORKER_IMAGE


def service_name(job: str) -> str:
    """The headless Service of a job's ranks; suffixed so it never takes the name an InferenceService
    serving the job's model would naturally get (both are Services in one namespace)."""
    return f"{job}-workers"


def pod_name(job: str, rank: int) -> str:
    return f"{job}-{rank}"


def pvc_name(job: str, spec: TrainingJobSpec) -> str:
    return spec.checkpoint.storage.existing_claim or f"{job}-checkpoints"


def claim_field(spec: TrainingJobSpec, claim: str, volume: str) -> str:
    """Where the spec names a claim the pods mount (for messages about a claim that does not exist)."""
    fine_tune_field = finetune.claim_field(spec, claim, volume)
    if fine_tune_field is not None:
        return fine_tune_field
    if spec.dataset is not None and spec.dataset.file is not None and claim == spec.dataset.file.claim_name:
        return "spec.dataset.file.claimName"
    uri = spec.dataset.file.uri if spec.dataset is not None and spec.dataset.file is not None else None
    if uri is not None and uri.startswith(f"pvc://{claim}/"):
        return "spec.dataset.file.uri"
    if claim == spec.checkpoint.storage.existing_claim:
        return "spec.checkpoint.storage.existingClaim"
    if volume == "restore-source":
        return "spec.checkpoint.restoreFrom.backup.claimName"
    return f"spec.volumes[{volume}]"


def master_addr(job: str, namespace: str) -> str:
    return f"{pod_name(job, 0)}.{service_name(job)}.{namespace}.svc.cluster.local"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return builders.owner_reference(KIND, name, uid)


def labels(job: str) -> dict[str, str]:
    return {LABEL_JOB: job, **builders.MANAGED_BY}


# Kueue's plain-Pod integration with pod groups, as documented in "Run Plain Pods"
# (https://kueue.sigs.k8s.io/docs/tasks/run/plain_pods/, kubernetes-sigs/kueue
# site/content/en/docs/tasks/run/plain_pods.md): the LocalQueue in the label
# `kueue.x-k8s.io/queue-name`, and on every member of a group, consistently, the label
# `kueue.x-k8s.io/pod-group-name` and the annotation `kueue.x-k8s.io/pod-group-total-count`. Kueue's
# webhook then gates the pods (scheduling gate `kueue.x-k8s.io/admission`) until the whole group fits
# the ClusterQueue's quota: all ranks start together or none does. Kueue never re-creates pods; the
# operator does (a restart re-creates the group under the same name, which Kueue takes as the
# replacement pods of the admitted Workload). `kueue.x-k8s.io/retriable-in-group: "false"` on the pods
# of the last attempt the backoff limit allows tells Kueue no replacement will come, so it finishes
# the Workload (and frees the quota) once those pods have terminated.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_GROUP_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_RETRIABLE_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"


def is_suspended(spec: TrainingJobSpec) -> bool:
    """Suspended by the spec (`runPolicy.suspend`): the job has no pods until it is cleared."""
    return spec.run_policy.suspend


def kueue_metadata(name: str, spec: TrainingJobSpec, attempt: int) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) that make the job's pods one Kueue pod group; empty without spec.queueName."""
    if not spec.queue_name:
        return {}, {}
    labels_ = {KUEUE_QUEUE_LABEL: spec.queue_name, KUEUE_GROUP_LABEL: name}
    annotations = {KUEUE_GROUP_COUNT_ANNOTATION: str(spec.distributed.nodes)}
    if attempt >= spec.run_policy.backoff_limit:
        annotations[KUEUE_RETRIABLE_ANNOTATION] = "false"
    return labels_, annotations


def headless_service(name: str, namespace: str, uid: str) -> dict[str, Any]:
    """The Service whose DNS gives every rank a stable name, `<job>-<rank>.<job>-workers.<ns>.svc`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": namespace,
            "labels": labels(name),
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "clusterIP": "None",
            # Ranks must resolve each other before they are Ready (rendezvous comes first).
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }


def checkpoint_pvc(name: str, namespace: str, uid: str, spec: TrainingJobSpec) -> dict[str, Any] | None:
    """The claim checkpoints go to, or None when the spec names an existing claim.

    Owned by the job only when it should go with it (`retainOnDelete: false`); a retained claim
    outlives the job so a new job can resume from it.
    """
    storage = spec.checkpoint.storage
    if storage.existing_claim:
        return None
    meta: dict[str, Any] = {"name": pvc_name(name, spec), "namespace": namespace, "labels": labels(name)}
    if not storage.retain_on_delete:
        meta["ownerReferences"] = [owner_reference(name, uid)]
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        pvc_spec["storageClassName"] = storage.storage_class_name
    restore = spec.checkpoint.restore_from
    if restore is not None and restore.volume_snapshot is not None:
        # Provisioned from the snapshot; each checkpoint's manifest is verified before it is loaded.
        pvc_spec["dataSource"] = {
            "apiGroup": "snapshot.storage.k8s.io",
            "kind": "VolumeSnapshot",
            "name": restore.volume_snapshot.name,
        }
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": pvc_spec}


def _env(
    name: str, namespace: str, uid: str, spec: TrainingJobSpec, rank: int, base: finetune.ResolvedBase | None
) -> list[dict[str, Any]]:
    nodes = spec.distributed.nodes
    procs = spec.distributed.procs_per_node
    if procs == "auto":
        procs = spec.resources.gpus or 1
    env: list[dict[str, Any]] = []
    if spec.model is not None:
        config = TrainRunConfig.from_spec(name, namespace, uid, spec)
        env.append(
            {"name": ENV_RUN_CONFIG, "value": config.model_dump_json(by_alias=True, exclude_none=True)}
        )
        # TorchScript orders a module's constants by Python's string hash: a fixed seed makes the
        # exported artifact byte-reproducible without the export re-running itself in a child.
        env.append({"name": "PYTHONHASHSEED", "value": "0"})
    elif spec.fine_tune is not None and base is not None:
        env.append({"name": ENV_RUN_CONFIG, "value": finetune.run_config(name, namespace, uid, spec, base)})
    env += [
        {"name": ENV_CHECKPOINT_DIR, "value": CHECKPOINT_MOUNT},
        {"name": ENV_OUTPUT_DIR, "value": f"{CHECKPOINT_MOUNT}/output"},
        {"name": ENV_METRICS_PORT, "value": str(DEFAULT_METRICS_PORT)},
        {"name": "PET_NNODES", "value": str(nodes)},
        {"name": "PET_NODE_RANK", "value": str(rank)},
        {"name": "PET_NPROC_PER_NODE", "value": str(procs)},
        {"name": "PET_MASTER_PORT", "value": str(MASTER_PORT)},
    ]
    if nodes > 1:
        env.append({"name": "PET_MASTER_ADDR", "value": master_addr(name, namespace)})
    # The user's variables come last so they may override ours, as in a Kubernetes env list.
    env += [e.to_pod() for e in spec.env]
    return env


def _resources(spec: TrainingJobSpec) -> dict[str, Any]:
    res = spec.resources
    # requests == limits: Guaranteed QoS, so a training pod is the last to be evicted under pressure.
    amounts: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    limits = dict(amounts)
    requests = dict(amounts)
    if res.gpus:
        limits[GPU_RESOURCE] = str(res.gpus)
        requests[GPU_RESOURCE] = str(res.gpus)
    return {"requests": requests, "limits": limits}


def _container(
    name: str,
    namespace: str,
    uid: str,
    spec: TrainingJobSpec,
    rank: int,
    image: str | None,
    base: finetune.ResolvedBase | None = None,
) -> dict[str, Any]:
    """The training container: the worker (or the user's image), its wiring and restricted context."""
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or image or worker_image(),
        "env": _env(name, namespace, uid, spec, rank, base),
        "resources": _resources(spec),
        "ports": [
            {"name": "metrics", "containerPort": DEFAULT_METRICS_PORT},
            {"name": "rendezvous", "containerPort": MASTER_PORT},
        ],
        # A crash before the worker writes its result still explains itself through the log tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if spec.image:
        if spec.command:
            container["command"] = list(spec.command)
        if spec.args:
            container["args"] = list(spec.args)
    else:
        container["command"] = ["modelops-worker", "train"]
    return container


def _storage(
    name: str,
    spec: TrainingJobSpec,
    rank: int,
    container: dict[str, Any],
    image: str | None,
    base: finetune.ResolvedBase | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, init containers) of a rank; the mounts go into `container`."""
    init: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}}
    ]
    # Only global rank 0 touches checkpoints, so a ReadWriteOnce claim works across nodes.
    if rank == 0:
        container["volumeMounts"].append({"name": "checkpoints", "mountPath": CHECKPOINT_MOUNT})
        volumes.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": pvc_name(name, spec)}})
        restore = spec.checkpoint.restore_from
        if restore is not None and restore.backup is not None:
            from modelops.builders import backup as backup_builders  # it imports this module

            init = [backup_builders.restore_init_container(restore.backup, CHECKPOINT_MOUNT, image=image)]
            volumes.append(backup_builders.restore_source_volume(restore.backup))
    # The user's volumes and mounts (code from a ConfigMap, credentials from a Secret...), after ours.
    volumes += [v.to_wire() for v in spec.volumes]
    container["volumeMounts"] += [m.to_wire() for m in spec.volume_mounts]
    if spec.dataset is not None and spec.dataset.file is not None:
        if spec.dataset.file.uri is not None:
            from modelops.builders import storage as storage_builders

            # Rank 0 caches on the checkpoint claim, so a pod started again finds the download there.
            cache = f"{CHECKPOINT_MOUNT}/{storage_builders.DATASET_CACHE}" if rank == 0 else None
            storage_builders.dataset(spec.dataset.file, volumes, container, cache_dir=cache)
        else:
            container["volumeMounts"].append({"name": "data", "mountPath": "/data", "readOnly": True})
            claim = {"claimName": spec.dataset.file.claim_name, "readOnly": True}
            volumes.append({"name": "data", "persistentVolumeClaim": claim})
    if spec.fine_tune is not None and base is not None:
        ft_volumes, ft_mounts = finetune.volumes(spec, base)
        volumes += ft_volumes
        container["volumeMounts"] += ft_mounts
    return volumes, init


def _placement(spec: TrainingJobSpec) -> dict[str, Any]:
    """nodeSelector, tolerations, affinity and priority of the pods (GPU product and taint included)."""
    sched = spec.scheduling
    node_selector = dict(sched.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in sched.tolerations]
    if spec.resources.gpus:
        if spec.resources.gpu_type:
            node_selector[GPU_PRODUCT_LABEL] = spec.resources.gpu_type
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if sched.affinity:
        out["affinity"] = sched.affinity
    if sched.priority_class_name:
        out["priorityClassName"] = sched.priority_class_name
    return out


def pod(
    name: str,
    namespace: str,
    uid: str,
    spec: TrainingJobSpec,
    rank: int,
    *,
    attempt: int = 0,
    image: str | None = None,
    base: finetune.ResolvedBase | None = None,
) -> dict[str, Any]:
    """The pod of one rank (one node); `base` is a fine-tune's resolved base model."""
    container = _container(name, namespace, uid, spec, rank, image, base)
    volumes, init = _storage(name, spec, rank, container, image, base)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "hostname": pod_name(name, rank),
        "subdomain": service_name(name),
        # No API token unless asked: training code rarely talks to Kubernetes.
        "automountServiceAccountToken": (
            spec.automount_service_account_token
            if spec.automount_service_account_token is not None
            else spec.service_account_name is not None
        ),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if init:
        pod_spec["initContainers"] = init
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [r.to_wire() for r in spec.image_pull_secrets]
    pod_spec.update(_placement(spec))
    queue_labels, queue_annotations = kueue_metadata(name, spec, attempt)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name, rank),
            "namespace": namespace,
            "labels": {**labels(name), LABEL_RANK: str(rank), LABEL_COMPONENT: "trainer", **queue_labels},
            "annotations": {ANNOTATION_ATTEMPT: str(attempt), **queue_annotations},
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": pod_spec,
    }


def pods(
    name: str,
    namespace: str,
    uid: str,
    spec: TrainingJobSpec,
    *,
    attempt: int = 0,
    image: str | None = None,
    base: finetune.ResolvedBase | None = None,
) -> list[dict[str, Any]]:
    """Every rank's pod; none while the job is suspended, nor for a fine-tune whose base is unresolved."""
    if is_suspended(spec) or (spec.fine_tune is not None and base is None):
        return []
    return [
        pod(name, namespace, uid, spec, rank, attempt=attempt, image=image, base=base)
        for rank in range(spec.distributed.nodes)
    ]
