"""The backup controller's decisions, from plain dicts: what it creates, prunes and reports."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from modelops.builders import backup as b
from modelops.controllers import backup as c

NOW = dt.datetime(2026, 1, 1, 12, 2, 30, tzinfo=dt.UTC)
TJ_SPEC: dict[str, Any] = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}


def tj(
    backup: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    spec = {**TJ_SPEC, **extra}
    if backup is not None:
        spec["backup"] = backup
    return {
        "metadata": {
            "name": "digits",
            "namespace": "ns",
            "uid": "u1",
            "generation": 1,
            "creationTimestamp": "2026-01-01T11:00:00Z",
        },
        "spec": spec,
        "status": status or {},
    }


COPY = {"schedule": "*/5 * * * *", "destination": {"claimName": "backups"}, "retention": {"keepLast": 2}}


def copy_pod(name: str, finished: str, result: dict[str, Any], code: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": "backup",
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "finishedAt": finished,
                            "message": json.dumps(result),
                        }
                    },
                }
            ],
        },
    }


def ok(name: str, at: str, kept: list[str]) -> dict[str, Any]:
    return {
        "status": "Succeeded",
        "reason": "BackupSucceeded",
        "message": "ok",
        "backup": {"name": name, "time": at, "manifestSha256": "f" * 64},
        "kept": len(kept),
        "backups": [
            {"name": k, "time": at, "manifestSha256": "f" * 64, "files": 2, "sizeBytes": 10} for k in kept
        ],
    }


def test_copy_policy_applies_the_cronjob_and_waits_for_the_first_run() -> None:
    plan = c.plan("TrainingJob", tj(COPY), c.Observed(), now=NOW)
    assert [m["kind"] for m in plan.apply] == ["CronJob"]
    assert plan.backup_status == {"kept": 0, "backups": [], "nextRunTime": "2026-01-01T12:05:00Z"}
    assert plan.condition is not None and plan.condition[:2] == ("Unknown", "NoBackupYet")


def test_runs_are_read_into_status_and_a_newer_failure_flips_the_condition() -> None:
    pods = [
        copy_pod("r1", "2026-01-01T12:00:05Z", ok("20260101T120000Z", "2026-01-01T12:00:00Z", ["a", "b"]))
    ]
    plan = c.plan("TrainingJob", tj(COPY), c.Observed(cronjob={}, copy_pods=pods), now=NOW)
    st = plan.backup_status
    assert st is not None
    assert st["lastSuccessTime"] == "2026-01-01T12:00:00Z" and st["kept"] == 2
    assert [r["path"] for r in st["backups"]] == [
        "modelops-backups/trainingjob/digits/a",
        "modelops-backups/trainingjob/digits/b",
    ]
    assert plan.condition is not None and plan.condition[0] == "True"
    assert [e.reason for e in plan.events] == ["BackupSucceeded"]
    # The same state again: no new event.
    again = c.plan("TrainingJob", tj(COPY, {"backup": st}), c.Observed(cronjob={}, copy_pods=pods), now=NOW)
    assert again.events == [] and again.backup_status == st
    failed = {"status": "Failed", "reason": "BackupCorrupt", "message": "disk full", "exitCode": 1}
    pods.append(copy_pod("r2", "2026-01-01T12:05:09Z", failed, code=1))
    plan = c.plan("TrainingJob", tj(COPY, {"backup": st}), c.Observed(cronjob={}, copy_pods=pods), now=NOW)
    assert plan.backup_status is not None
    assert plan.backup_status["lastFailure"] == {
        "time": "2026-01-01T12:05:09Z",
        "reason": "BackupCorrupt",
        "message": "disk full",
    }
    assert plan.backup_status["lastSuccessTime"] == "2026-01-01T12:00:00Z"  # kept from before
    assert plan.condition == ("False", "BackupCorrupt", "disk full")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "BackupCorrupt")]


def test_a_pod_that_never_ran_is_still_a_failure_with_the_kubelets_words() -> None:
    pod = {"metadata": {"name": "x"}, "status": {"phase": "Failed", "message": "claim backups not found"}}
    plan = c.plan("TrainingJob", tj(COPY), c.Observed(cronjob={}, copy_pods=[pod]), now=NOW)
    assert plan.condition is not None and plan.condition[1:] == ("BackupPodFailed", "claim backups not found")


def test_backing_up_into_the_source_claim_is_refused_with_the_field() -> None:
    bad = {**COPY, "destination": {"claimName": "digits-checkpoints"}}
    plan = c.plan("TrainingJob", tj(bad), c.Observed(), now=NOW)
    assert plan.apply == []
    assert plan.condition is not None and plan.condition[1] == "InvalidBackupDestination"
    assert "spec.backup.destination.claimName" in plan.condition[2]


def test_dropping_the_policy_deletes_the_cronjob_and_clears_the_status() -> None:
    plan = c.plan(
        "TrainingJob", tj(None, {"backup": {"kept": 1}}), c.Observed(cronjob={"metadata": {}}), now=NOW
    )
    assert plan.delete == [("batch/v1", "cronjobs", "digits-backup")]
    assert plan.backup_status is None and plan.condition is None


SNAP = {
    "schedule": "*/5 * * * *",
    "methods": ["volumeSnapshot"],
    "retention": {"keepLast": 2, "maxAge": "1h"},
}


def snapshot(name: str, at: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"readyToUse": ready, "creationTime": at}}


def test_snapshots_are_created_once_per_scheduled_time_and_pruned_exactly() -> None:
    st = {"backup": {"lastScheduleTime": "2026-01-01T11:55:00Z"}}
    snaps = [
        snapshot("digits-a", "2026-01-01T10:00:00Z"),  # older than maxAge
        snapshot("digits-b", "2026-01-01T11:50:00Z"),
        snapshot("digits-c", "2026-01-01T11:55:00Z"),
        snapshot("digits-d", "2026-01-01T12:00:01Z", ready=False),  # not ready: not counted, not pruned
    ]
    plan = c.plan("TrainingJob", tj(SNAP, st), c.Observed(snapshots=snaps), now=NOW)
    [made] = plan.create
    assert made["metadata"]["name"] == "digits-20260101120000"
    assert made["spec"]["source"]["persistentVolumeClaimName"] == "digits-checkpoints"
    # keepLast 2 of the three ready ones: a goes (also too old); b and c stay.
    assert plan.delete == [("snapshot.storage.k8s.io/v1", "volumesnapshots", "digits-a")]
    assert plan.backup_status is not None
    assert plan.backup_status["lastScheduleTime"] == "2026-01-01T12:00:00Z"
    assert plan.backup_status["kept"] == 2
    assert [r["name"] for r in plan.backup_status["backups"]] == ["digits-b", "digits-c"]
    # Next cycle, the schedule has been recorded: nothing is created twice.
    again = c.plan(
        "TrainingJob", tj(SNAP, {"backup": plan.backup_status}), c.Observed(snapshots=snaps), now=NOW
    )
    assert again.create == []


def test_the_newest_snapshot_survives_any_age() -> None:
    late = NOW + dt.timedelta(days=30)
    assert c.to_prune(
        [(NOW, "x"), (NOW + dt.timedelta(minutes=5), "y")],
        keep_last=5,
        max_age=dt.timedelta(hours=1),
        now=late,
    ) == ["x"]


def test_without_the_snapshot_crd_the_condition_says_what_to_install() -> None:
    plan = c.plan("TrainingJob", tj(SNAP), c.Observed(snapshots=None), now=NOW)
    assert plan.create == []
    assert plan.condition is not None and plan.condition[:2] == ("False", "VolumeSnapshotCRDMissing")
    assert "external-snapshotter" in plan.condition[2]
    assert [e.reason for e in plan.events] == ["VolumeSnapshotCRDMissing"]


def test_an_unparseable_schedule_names_the_field() -> None:
    plan = c.plan("TrainingJob", tj({**COPY, "schedule": "every day"}), c.Observed(), now=NOW)
    assert plan.condition is not None and plan.condition[1] == "InvalidBackupSchedule"
    assert plan.condition[2].startswith("spec.backup.schedule:")


def mv(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits-1", "namespace": "ns", "uid": "u2", "generation": 1},
        "spec": {"model": "digits", "source": {"trainingJob": {"name": "digits"}}, **spec},
        "status": status,
    }


VERIFIED = {"artifact": {"uri": "pvc://digits-checkpoints/output/model.pt", "sha256": "a" * 64}}


def test_a_model_version_waits_for_its_artifact_before_backing_up() -> None:
    plan = c.plan("ModelVersion", mv({}, backup=COPY), c.Observed(), now=NOW)
    assert plan.apply == [] and plan.condition is not None and plan.condition[1] == "BackupSourceNotReady"
    plan = c.plan("ModelVersion", mv(VERIFIED, backup=COPY), c.Observed(), now=NOW)
    [cj] = plan.apply
    args = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[2] == f"{b.SOURCE_MOUNT}/output/model.pt"


def test_a_model_version_restore_from_a_backup_runs_a_verifying_job_then_reports() -> None:
    restore = {"backup": {"claimName": "backups", "path": "p/20260101T000000Z"}}
    body = mv(VERIFIED, restoreFrom=restore)
    plan = c.plan("ModelVersion", body, c.Observed(), now=NOW)
    [job] = plan.create
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["restore", "--backup", f"{b.RESTORE_MOUNT}/p/20260101T000000Z"]
    assert ["--expect", f"model.pt={'a' * 64}"] == args[-2:]
    assert plan.backup_status == {
        "restore": {"phase": "Pending", "source": "backup backups/p/20260101T000000Z"}
    }
    pod = copy_pod(
        "r", "2026-01-01T12:01:00Z", {"status": "Failed", "reason": "DigestMismatch", "message": "no"}, 65
    )
    pod["status"]["containerStatuses"][0]["name"] = "restore"
    pod["metadata"]["labels"] = {"job-name": job["metadata"]["name"]}
    plan = c.plan("ModelVersion", body, c.Observed(restore_pods=[pod]), now=NOW)
    assert plan.create == []
    assert plan.backup_status is not None and plan.backup_status["restore"]["phase"] == "Failed"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RestoreFailed")]


def test_a_model_version_restore_from_a_snapshot_provisions_a_claim_and_checks_it() -> None:
    body = mv(VERIFIED, restoreFrom={"volumeSnapshot": {"name": "digits-20260101120000"}})
    plan = c.plan("ModelVersion", body, c.Observed(snapshots=[]), now=NOW)
    pvc, job = plan.create
    assert pvc["spec"]["dataSource"]["name"] == "digits-20260101120000"
    vols = job["spec"]["template"]["spec"]["volumes"]
    assert vols[0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--check"


def test_an_unverified_model_version_cannot_be_restored_blindly() -> None:
    body = mv({}, restoreFrom={"volumeSnapshot": {"name": "s"}})
    plan = c.plan("ModelVersion", body, c.Observed(), now=NOW)
    assert plan.create == []
    assert plan.backup_status is not None and plan.backup_status["restore"]["phase"] == "Failed"


def test_the_condition_is_merged_into_foreign_conditions() -> None:
    body = tj(
        COPY, {"conditions": [{"type": "Ready", "status": "True", "reason": "R", "lastTransitionTime": "x"}]}
    )
    merged = c.conditions_with(body, ("True", "BackupSucceeded", "ok"), now=NOW)
    assert merged is not None and [x["type"] for x in merged] == ["BackupHealthy", "Ready"]
    body["status"]["conditions"] = merged
    assert c.conditions_with(body, ("True", "BackupSucceeded", "ok"), now=NOW) is None
    assert [x["type"] for x in c.conditions_with(body, None, now=NOW) or []] == ["Ready"]


def test_a_destination_with_a_size_is_created_once_and_never_owned() -> None:
    policy = {**COPY, "destination": {"claimName": "backups", "size": "5Gi"}}
    plan = c.plan("TrainingJob", tj(policy), c.Observed(), now=NOW)
    [pvc] = plan.create
    assert pvc["metadata"]["name"] == "backups" and "ownerReferences" not in pvc["metadata"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert c.plan("TrainingJob", tj(policy), c.Observed(cronjob={}), now=NOW).create == []


def test_the_sync_interval_comes_from_the_environment_with_a_safe_default() -> None:
    from modelops.controllers.backup_handlers import sync_interval, wanted

    assert sync_interval({}) == c.SYNC_INTERVAL == 30.0
    assert sync_interval({c.ENV_SYNC_INTERVAL: "5"}) == 5.0
    assert sync_interval({c.ENV_SYNC_INTERVAL: "0"}) == 1.0
    assert sync_interval({c.ENV_SYNC_INTERVAL: "soon"}) == 30.0
    # Objects without a policy, a restore or a leftover status cost nothing.
    assert not wanted("TrainingJob", TJ_SPEC, {})
    assert wanted(
        "TrainingJob", {**TJ_SPEC, "checkpoint": {"restoreFrom": {"volumeSnapshot": {"name": "s"}}}}, {}
    )
    assert wanted("ModelVersion", {"restoreFrom": {"volumeSnapshot": {"name": "s"}}}, {})
    assert wanted("ModelVersion", {}, {"backup": {"kept": 1}})


def test_the_status_patch_drops_what_is_no_longer_there_so_a_restore_can_be_asked_again() -> None:
    current = {"kept": 1, "restore": {"phase": "Succeeded", "source": "backup b/p"}}
    assert c.backup_patch(current, {"kept": 1}) == {"kept": 1, "restore": None}
    assert c.backup_patch(current, current) is None
    assert c.backup_patch(current, None) == {}  # the whole status.backup goes
    assert c.backup_patch({}, None) is None
