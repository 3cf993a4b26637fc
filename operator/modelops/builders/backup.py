"""The backup and restore children of a TrainingJob or ModelVersion, as plain manifests.

- copy: a batch/v1 CronJob whose pod runs `modelops-worker backup` with the source claim mounted
  read-only and the destination claim mounted read-write; the result JSON comes back in the
  container's termination message.
- volumeSnapshot: a snapshot.storage.k8s.io/v1 VolumeSnapshot of the claim, one per scheduled run.
- restore: a Job running `modelops-worker restore` (a copy back, verified first), a PVC whose
  `dataSource` is a VolumeSnapshot, and the init container that restores a TrainingJob's checkpoints.

Pure functions: the operator decides in `controllers/backup.py` and applies what these return.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import modelops.builders as builders
from modelops.api.backup import BackupPolicy, BackupReference
from modelops.api.storage import parse_uri
from modelops.builders import storage as storage_builders
from modelops.builders.trainingjob import RUN_AS_USER, worker_image

SNAPSHOT_API_VERSION = "snapshot.storage.k8s.io/v1"
SNAPSHOT_PLURAL = "volumesnapshots"

LABEL_KIND = "modelops.dev/backup-kind"
LABEL_OF = "modelops.dev/backup-of"
LABEL_ROLE = "modelops.dev/backup-role"
LABEL_COMPONENT = "app.kubernetes.io/component"

SOURCE_MOUNT = "/var/run/modelops/backup-source"
DEST_MOUNT = "/var/run/modelops/backups"
RESTORE_MOUNT = "/var/run/modelops/restore-source"
TARGET_MOUNT = "/var/run/modelops/restore-target"
CONTAINER = "backup"
RESTORE_CONTAINER = "restore"

# Copying is I/O bound; small and fixed, so a backup never competes with training for CPU.
_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
# A backup that cannot finish in this time is reported failed; the next run starts fresh.
BACKUP_DEADLINE_SECONDS = 3600


@dataclass(frozen=True)
class Owner:
    """The object whose data is backed up."""

    kind: str  # TrainingJob or ModelVersion
    name: str
    namespace: str
    uid: str

    @property
    def kind_label(self) -> str:
        return self.kind.lower()


@dataclass(frozen=True)
class Source:
    """What to back up: a claim, and a path inside it ('' is the whole claim)."""

    claim: str
    path: str = ""


def _short(base: str, suffix: str, limit: int) -> str:
    """`base-suffix`, shortened with a stable hash when longer than `limit` (names and label values)."""
    full = f"{base}-{suffix}" if suffix else base
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    keep = limit - len(digest) - len(suffix) - 2
    return (
        f"{base[:keep].rstrip('-.')}-{digest}-{suffix}" if suffix else f"{base[:keep].rstrip('-.')}-{digest}"
    )


def label_value(name: str) -> str:
    return _short(name, "", 63)


def labels(owner: Owner, role: str) -> dict[str, str]:
    return {
        LABEL_KIND: owner.kind_label,
        LABEL_OF: label_value(owner.name),
        LABEL_ROLE: role,
        LABEL_COMPONENT: "backup",
        **builders.MANAGED_BY,
    }


def selector(owner: Owner, role: str) -> str:
    """The label selector of this owner's children of one role (copy, snapshot, restore)."""
    return f"{LABEL_KIND}={owner.kind_label},{LABEL_OF}={label_value(owner.name)},{LABEL_ROLE}={role}"


def owner_reference(owner: Owner) -> dict[str, Any]:
    return builders.owner_reference(owner.kind, owner.name, owner.uid)


def cronjob_name(owner: Owner) -> str:
    # CronJob names are limited to 52 characters (its Jobs append 11).
    return _short(owner.name, "backup", 52)


def destination_prefix(owner: Owner, policy: BackupPolicy) -> str:
    """The directory, inside the destination claim, that holds this owner's backups (for an object
    storage destination: its full URI, `destination_uri`)."""
    assert policy.destination is not None
    uri = destination_uri(owner, policy)
    if uri is not None:
        return uri
    return policy.destination.path or f"modelops-backups/{owner.kind_label}/{owner.name}"


def destination_uri(owner: Owner, policy: BackupPolicy) -> str | None:
    """The object storage prefix holding this owner's backups; None for a claim destination.

    A bare bucket gets the claim's default directory, modelops-backups/<kind>/<name>.
    """
    dest = policy.destination
    if dest is None or dest.uri is None:
        return None
    parsed = parse_uri(dest.uri)
    if not parsed.key.strip("/"):
        return f"{parsed.scheme}://{parsed.bucket}/modelops-backups/{owner.kind_label}/{owner.name}"
    return dest.uri.rstrip("/")


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _under(mount: str, path: str) -> str:
    return posixpath.join(mount, path) if path else mount


def cronjob(
    owner: Owner, policy: BackupPolicy, source: Source, *, image: str | None = None
) -> dict[str, Any]:
    """The CronJob of the copy method."""
    assert policy.destination is not None
    prefix = destination_prefix(owner, policy)
    store = destination_uri(owner, policy)
    wiring = storage_builders.credentials(policy.destination.credentials_secret, role="destination")
    args = ["backup", "--source", _under(SOURCE_MOUNT, source.path)]
    if store is not None:
        args += ["--dest-uri", store, *wiring.args()]
    else:
        args += ["--dest", _under(DEST_MOUNT, prefix), "--prefix", prefix]
    args += ["--keep-last", str(policy.retention.keep_last)]
    if policy.retention.max_age:
        args += ["--max-age", policy.retention.max_age]
    pod_labels = labels(owner, "copy")
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": _pod_security_context(),
        "containers": [
            {
                "name": CONTAINER,
                "image": image or worker_image(),
                "command": ["modelops-worker"],
                "args": args,
                "resources": _RESOURCES,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": _security_context(),
                "volumeMounts": [{"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True}],
            }
        ],
        "volumes": [
            {"name": "source", "persistentVolumeClaim": {"claimName": source.claim, "readOnly": True}},
        ],
    }
    if store is None:
        pod_spec["containers"][0]["volumeMounts"].append({"name": "destination", "mountPath": DEST_MOUNT})
        pod_spec["volumes"].append(
            {"name": "destination", "persistentVolumeClaim": {"claimName": policy.destination.claim_name}}
        )
    else:
        wiring.apply(pod_spec, pod_spec["containers"][0])
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(owner),
            "namespace": owner.namespace,
            "labels": pod_labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "schedule": policy.schedule,
            "timeZone": "Etc/UTC",
            "suspend": policy.suspend,
            # Two copies into one destination at once would race on retention.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    # A failed backup is reported, not retried in a loop: the next run is the retry.
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": BACKUP_DEADLINE_SECONDS,
                    "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
                },
            },
        },
    }


def destination_claim(owner: Owner, policy: BackupPolicy) -> dict[str, Any] | None:
    """The destination claim when the policy asks the operator to create it (not owned: it outlives)."""
    dest = policy.destination
    if dest is None or dest.size is None or dest.claim_name is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": dest.claim_name,
            "namespace": owner.namespace,
            "labels": {LABEL_COMPONENT: "backup", **builders.MANAGED_BY},
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": dest.size}}},
    }


def snapshot_name(owner: Owner, at_compact: str) -> str:
    return _short(owner.name, at_compact, 253)


def volume_snapshot(owner: Owner, policy: BackupPolicy, claim: str, *, at_compact: str) -> dict[str, Any]:
    """One VolumeSnapshot of `claim`, named by its scheduled time (`YYYYMMDDhhmmss`).

    Not owned by the object: like a retained claim, a snapshot should outlive an accidental delete.
    """
    spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": claim}}
    if policy.volume_snapshot_class_name:
        spec["volumeSnapshotClassName"] = policy.volume_snapshot_class_name
    return {
        "apiVersion": SNAPSHOT_API_VERSION,
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": snapshot_name(owner, at_compact),
            "namespace": owner.namespace,
            "labels": labels(owner, "snapshot"),
        },
        "spec": spec,
    }


def snapshot_data_source(name: str) -> dict[str, Any]:
    return {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": name}


def restore_claim_name(owner: Owner) -> str:
    return _short(owner.name, "restore", 253)


def claim_from_snapshot(
    owner: Owner, snapshot: str, *, size: str, access_modes: list[str] | None = None
) -> dict[str, Any]:
    """A new claim whose data comes from a VolumeSnapshot (`dataSource`)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": restore_claim_name(owner),
            "namespace": owner.namespace,
            "labels": labels(owner, "restore"),
        },
        "spec": {
            "accessModes": access_modes or ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "dataSource": snapshot_data_source(snapshot),
        },
    }


def restore_init_container(
    backup: BackupReference, target: str, *, image: str | None = None
) -> dict[str, Any]:
    """The init container that restores a TrainingJob's checkpoints from a copy backup.

    `--if-empty`: a restarted pod finds its own newer checkpoints and leaves them alone.
    """
    container: dict[str, Any] = {
        "name": RESTORE_CONTAINER,
        "image": image or worker_image(),
        "command": ["modelops-worker"],
        "args": ["restore", *_backup_args(backup), "--target", target, "--if-empty"],
        "resources": _RESOURCES,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _security_context(),
        "volumeMounts": [{"name": "checkpoints", "mountPath": target}],
    }
    if backup.uri is None:
        container["volumeMounts"].insert(
            0, {"name": "restore-source", "mountPath": RESTORE_MOUNT, "readOnly": True}
        )
    else:
        container["volumeMounts"] += restore_wiring(backup).volume_mounts
    return container


def restore_wiring(backup: BackupReference) -> storage_builders.StorageWiring:
    """The credentials of a restore from object storage (nothing for a claim backup)."""
    if backup.uri is None:
        return storage_builders.StorageWiring()
    return storage_builders.credentials(backup.credentials_secret, role="restore")


def _backup_args(backup: BackupReference) -> list[str]:
    if backup.uri is not None:
        return ["--backup-uri", backup.uri, *restore_wiring(backup).args()]
    return ["--backup", _under(RESTORE_MOUNT, str(backup.path))]


def restore_source_volume(backup: BackupReference) -> dict[str, Any]:
    """The volume a restore reads from: the backup's claim, or the credentials Secret (object storage)."""
    if backup.uri is not None:
        vols = restore_wiring(backup).volumes
        return vols[0] if vols else {"name": "restore-source", "emptyDir": {"sizeLimit": "1Mi"}}
    return {
        "name": "restore-source",
        "persistentVolumeClaim": {"claimName": backup.claim_name, "readOnly": True},
    }


def restore_job_name(owner: Owner, token: str) -> str:
    return _short(owner.name, f"restore-{token}", 63)


def restore_job(
    owner: Owner,
    *,
    token: str,
    target_claim: str,
    target_path: str,
    expect: Mapping[str, str],
    backup: BackupReference | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """A Job that restores (from `backup`) or checks in place (without) a ModelVersion's artifact.

    `target_path` is the artifact's directory inside `target_claim`; `expect` maps file names in it to
    the sha256 they must have. `token` is a short digest of the restore request: one Job per request.
    """
    target = _under(TARGET_MOUNT, target_path)
    args = ["restore", "--target", target]
    for name, digest in sorted(expect.items()):
        args += ["--expect", f"{name}={digest}"]
    mounts: list[dict[str, Any]] = [{"name": "target", "mountPath": TARGET_MOUNT, "readOnly": backup is None}]
    volumes: list[dict[str, Any]] = [
        {"name": "target", "persistentVolumeClaim": {"claimName": target_claim, "readOnly": backup is None}}
    ]
    if backup is not None:
        args[1:1] = _backup_args(backup)
        if backup.uri is None:
            mounts.append({"name": "restore-source", "mountPath": RESTORE_MOUNT, "readOnly": True})
            volumes.append(restore_source_volume(backup))
        else:
            mounts += restore_wiring(backup).volume_mounts
            volumes += restore_wiring(backup).volumes
    else:
        args.append("--check")
    pod_labels = labels(owner, "restore")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": restore_job_name(owner, token),
            "namespace": owner.namespace,
            "labels": pod_labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": BACKUP_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": _pod_security_context(),
                    "containers": [
                        {
                            "name": RESTORE_CONTAINER,
                            "image": image or worker_image(),
                            "command": ["modelops-worker"],
                            "args": args,
                            "resources": _RESOURCES,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": _security_context(),
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
