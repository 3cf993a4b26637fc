"""The backup and restore children as the cluster will see them: valid, restricted, wired to the worker."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.api.backup import BackupPolicy, BackupReference
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import backup as b
from modelops.builders import trainingjob as tj
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

OWNER = b.Owner("TrainingJob", "digits", "team-a", "uid-1")
POLICY = BackupPolicy.model_validate(
    {
        "schedule": "*/5 * * * *",
        "methods": ["copy", "volumeSnapshot"],
        "destination": {"claimName": "backups"},
        "volumeSnapshotClassName": "csi-snap",
        "retention": {"keepLast": 4, "maxAge": "7d"},
    }
)


def assert_valid(obj: dict[str, Any]) -> None:
    assert validate_builtin(obj) == []
    if obj["kind"] in ("CronJob", "Job", "Pod"):
        assert check_restricted(obj) == []


def args_of(obj: dict[str, Any]) -> list[str]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return list(spec["template"]["spec"]["containers"][0]["args"])


def test_the_copy_cronjob_mounts_the_source_read_only_and_passes_the_retention() -> None:
    cj = b.cronjob(OWNER, POLICY, b.Source("digits-checkpoints"), image="ghcr.io/modelops/worker:t")
    assert_valid(cj)
    assert cj["metadata"]["name"] == "digits-backup"
    assert cj["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    assert cj["spec"]["schedule"] == "*/5 * * * *" and cj["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    source = next(v for v in pod["volumes"] if v["name"] == "source")
    assert source["persistentVolumeClaim"] == {"claimName": "digits-checkpoints", "readOnly": True}
    assert {"name": "source", "mountPath": b.SOURCE_MOUNT, "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    assert args_of(cj) == [
        "backup",
        "--source",
        b.SOURCE_MOUNT,
        "--dest",
        f"{b.DEST_MOUNT}/modelops-backups/trainingjob/digits",
        "--prefix",
        "modelops-backups/trainingjob/digits",
        "--keep-last",
        "4",
        "--max-age",
        "7d",
    ]
    # The runs' pods carry the labels the controller finds them by.
    labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert b.selector(OWNER, "copy") == ",".join(
        f"{k}={labels[k]}" for k in (b.LABEL_KIND, b.LABEL_OF, b.LABEL_ROLE)
    )


def test_a_model_artifact_backup_copies_only_the_file() -> None:
    mv = b.Owner("ModelVersion", "digits-1", "team-a", "uid-2")
    cj = b.cronjob(mv, POLICY, b.Source("digits-checkpoints", "output/model.pt"))
    assert args_of(cj)[1:3] == ["--source", f"{b.SOURCE_MOUNT}/output/model.pt"]


def test_long_names_stay_within_the_limits() -> None:
    owner = b.Owner("ModelVersion", "m" * 200, "ns", "u")
    cj = b.cronjob(owner, POLICY, b.Source("c"))
    assert len(cj["metadata"]["name"]) <= 52 and cj["metadata"]["name"].endswith("-backup")
    assert all(len(v) <= 63 for v in cj["metadata"]["labels"].values())
    assert_valid(cj)
    assert len(b.restore_job_name(owner, "abcd1234")) <= 63


def test_volume_snapshot_names_its_class_and_claim() -> None:
    snap = b.volume_snapshot(OWNER, POLICY, "digits-checkpoints", at_compact="20260101120000")
    assert snap["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert snap["metadata"]["name"] == "digits-20260101120000"
    assert snap["spec"] == {
        "source": {"persistentVolumeClaimName": "digits-checkpoints"},
        "volumeSnapshotClassName": "csi-snap",
    }
    # Not owned: a snapshot outlives an accidental delete of the job.
    assert "ownerReferences" not in snap["metadata"]


@pytest.mark.parametrize("from_backup", [True, False])
def test_restore_jobs_verify_the_expected_digest(from_backup: bool) -> None:
    ref = BackupReference(claim_name="backups", path="modelops-backups/modelversion/m/20260101T000000Z")
    job = b.restore_job(
        OWNER,
        token="abcd1234",
        target_claim="ckpt",
        target_path="output",
        expect={"model.pt": "a" * 64},
        backup=ref if from_backup else None,
    )
    assert_valid(job)
    args = args_of(job)
    target = ["--target", f"{b.TARGET_MOUNT}/output", "--expect", f"model.pt={'a' * 64}"]
    if from_backup:
        assert args == ["restore", "--backup", f"{b.RESTORE_MOUNT}/{ref.path}", *target]
    else:
        assert args == ["restore", *target, "--check"]
        mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert all(m["readOnly"] for m in mounts)  # a check never writes


def test_a_claim_from_a_snapshot_has_the_snapshot_as_data_source() -> None:
    pvc = b.claim_from_snapshot(OWNER, "digits-20260101120000", size="2Gi")
    assert_valid(pvc)
    assert pvc["spec"]["dataSource"] == {
        "apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot",
        "name": "digits-20260101120000",
    }


BASE: dict[str, Any] = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}


def test_a_trainingjob_restoring_a_copy_backup_gets_a_verifying_init_container() -> None:
    spec = TrainingJobSpec.model_validate(
        {
            **BASE,
            "checkpoint": {"restoreFrom": {"backup": {"claimName": "backups", "path": "p/20260101T000000Z"}}},
        }
    )
    pod = tj.pod("digits", "ns", "u", spec, 0)
    assert_valid(pod)
    [init] = pod["spec"]["initContainers"]
    assert init["args"] == [
        "restore",
        "--backup",
        f"{b.RESTORE_MOUNT}/p/20260101T000000Z",
        "--target",
        tj.CHECKPOINT_MOUNT,
        "--if-empty",
    ]
    assert {
        "name": "restore-source",
        "persistentVolumeClaim": {"claimName": "backups", "readOnly": True},
    } in pod["spec"]["volumes"]
    # Only rank 0 touches checkpoints.
    spec2 = TrainingJobSpec.model_validate(
        {**spec.model_dump(by_alias=True, exclude_none=True), "distributed": {"nodes": 2}}
    )
    assert "initContainers" not in tj.pod("digits", "ns", "u", spec2, 1)["spec"]


def test_a_trainingjob_restoring_a_snapshot_gets_a_claim_from_it() -> None:
    spec = TrainingJobSpec.model_validate(
        {**BASE, "checkpoint": {"restoreFrom": {"volumeSnapshot": {"name": "s1"}}}}
    )
    pvc = tj.checkpoint_pvc("digits", "ns", "u", spec)
    assert pvc is not None
    assert_valid(pvc)
    assert pvc["spec"]["dataSource"]["name"] == "s1"
    assert "initContainers" not in tj.pod("digits", "ns", "u", spec, 0)["spec"]
