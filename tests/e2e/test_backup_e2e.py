"""Backups on the local plane, driven with kubectl: copy runs, exact retention, verified restore, snapshots.

One plane for the module. A TrainingJob trains for real and carries a copy backup policy; backup runs
are started from the operator's CronJob's template, as `kubectl create job --from=cronjob/...` does
(so the test does not wait for the next minute); retention keeps exactly the
newest two on the destination claim and the status lists exactly those. Then the original checkpoints
are deleted with their claim, and a new TrainingJob restores from the newest backup: the checkpoint
files come back with identical digests, and training resumes from them. VolumeSnapshots: without the
CRDs the condition says so; with them the operator takes scheduled snapshots, the local snapshot
controller makes them ready, and a claim restored from one holds the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from localplane import Plane, operator_calls, ungranted

pytestmark = pytest.mark.e2e

NS = "default"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("backups") / "plane")
    # The operator inherits it: look at each object every 5 s instead of 30 s, so the test waits less.
    lp.env["MODELOPS_BACKUP_SYNC_SECONDS"] = "5"
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def until(what: str, check: Callable[[], Any], plane: Plane, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{plane.logs()}")


def job(name: str, **checkpoint: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"architecture": "mlp", "hiddenSize": 16},
            "dataset": {"builtin": "iris"},
            "hyperparameters": {"epochs": 3, "batchSize": 16, "seed": 3},
            "resources": {"cpu": "500m", "memory": "1Gi"},
            "checkpoint": {"intervalSeconds": 5, "keep": 2, **checkpoint},
            "output": {"createModelVersion": False},
        },
    }


def claim_dir(plane: Plane, claim: str) -> Path:
    return plane.dir / "volumes" / NS / claim


def checkpoint_digests(root: Path) -> dict[str, str]:
    """sha256 of every file of the complete checkpoints (ckpt-*), by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("ckpt-*/**/*"))
        if p.is_file()
    }


def backup_status(plane: Plane, kind: str, name: str) -> dict[str, Any]:
    return dict((plane.get(kind, name).get("status") or {}).get("backup") or {})


def condition(plane: Plane, kind: str, name: str, type_: str) -> dict[str, Any]:
    for c in (plane.get(kind, name).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def apply(plane: Plane, *objs: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


def test_copy_backups_keep_exactly_the_newest_and_restore_identical_checkpoints(plane: Plane) -> None:
    backups_claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "backups", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    src = job("src")
    src["spec"]["backup"] = {
        "schedule": "0 0 1 1 *",  # once a year: the runs below are started by hand
        "methods": ["copy"],
        "destination": {"claimName": "backups"},
        "retention": {"keepLast": 2},
    }
    apply(plane, backups_claim, src)
    plane.kubectl("wait", "trainingjob/src", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    cronjob = until("the backup CronJob", lambda: plane.get("cronjobs")["items"], plane)[0]
    assert cronjob["metadata"]["name"] == "src-backup"
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0][
        "persistentVolumeClaim"
    ] == {
        "claimName": "src-checkpoints",
        "readOnly": True,
    }
    until(
        "BackupHealthy Unknown before the first run",
        lambda: condition(plane, "trainingjob", "src", "BackupHealthy").get("reason") == "NoBackupYet",
        plane,
    )

    original = checkpoint_digests(claim_dir(plane, "src-checkpoints"))
    assert original, "the training wrote no checkpoint"
    made = []
    for run in ("run-1", "run-2", "run-3"):
        # What `kubectl create job --from=cronjob/src-backup` does (kubectl sends that one as protobuf,
        # which the local API server does not read): a Job from the CronJob's template.
        template = cronjob["spec"]["jobTemplate"]
        apply(
            plane,
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": run, "namespace": NS, "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
            },
        )
        plane.kubectl("wait", f"job/{run}", "--for=condition=Complete", "--timeout=90s", timeout=100)
        pod = plane.get("pods", "-l", f"job-name={run}")["items"][0]
        result = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
        made.append(result["backup"]["name"])
        time.sleep(1.1)  # backups are named by the second

    # Retention: exactly the newest two are on the destination claim, each with its manifest.
    dest = claim_dir(plane, "backups") / "modelops-backups" / "trainingjob" / "src"
    assert sorted(p.name for p in dest.iterdir()) == made[1:]
    for name in made[1:]:
        manifest = json.loads((dest / name / "manifest.json").read_text())
        assert {f: e["sha256"] for f, e in manifest["files"].items() if f.startswith("ckpt-")} == original

    # ... and the status says so, with a healthy condition and an event.
    st = until(
        "status.backup to show the third run",
        lambda: (
            (s := backup_status(plane, "trainingjob", "src")).get("kept") == 2
            and [b["name"] for b in s.get("backups", [])] == made[1:]
            and s
        ),
        plane,
        timeout=60,
    )
    assert st["lastSuccessTime"] and st["nextRunTime"].endswith("-01-01T00:00:00Z")
    assert [b["path"] for b in st["backups"]] == [f"modelops-backups/trainingjob/src/{n}" for n in made[1:]]
    assert all(len(b["manifestSha256"]) == 64 and b["claimName"] == "backups" for b in st["backups"])
    assert condition(plane, "trainingjob", "src", "BackupHealthy")["status"] == "True"
    # The kind's own conditions are untouched by the backup controller's.
    assert condition(plane, "trainingjob", "src", "Succeeded")["status"] == "True"
    reasons = [e["reason"] for e in plane.get("events")["items"] if e["involvedObject"]["name"] == "src"]
    assert "BackupSucceeded" in reasons

    # Lose the original: the job and its checkpoint claim go, and with the claim its directory.
    plane.kubectl("delete", "trainingjob", "src", "--wait=true")
    plane.kubectl("delete", "pvc", "src-checkpoints", "--wait=true")
    until(
        "the checkpoint directory to be removed",
        lambda: not claim_dir(plane, "src-checkpoints").exists(),
        plane,
    )

    # Restore into a new job from the newest backup: verified, then copied, then trained from.
    restored = job(
        "restored", restoreFrom={"backup": {"claimName": "backups", "path": st["backups"][-1]["path"]}}
    )
    apply(plane, restored)
    plane.kubectl("wait", "trainingjob/restored", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    assert checkpoint_digests(claim_dir(plane, "restored-checkpoints")) == original
    restore = until(
        "status.backup.restore", lambda: backup_status(plane, "trainingjob", "restored").get("restore"), plane
    )
    assert restore["phase"] == "Succeeded" and "sha256 verified" in restore["message"], restore
    log = plane.kubectl("logs", "restored-0", "-c", "restore")
    assert "restored" in log and "sha256 verified" in log


def test_a_tampered_backup_is_refused_and_nothing_is_restored(plane: Plane) -> None:
    dest = claim_dir(plane, "backups") / "modelops-backups" / "trainingjob" / "src"
    newest = sorted(p for p in dest.iterdir())[-1]
    state = next(newest.glob("ckpt-*/state.pt"))
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF
    state.write_bytes(bytes(data))
    apply(
        plane,
        job(
            "tampered",
            restoreFrom={
                "backup": {
                    "claimName": "backups",
                    "path": str(newest.relative_to(claim_dir(plane, "backups"))),
                }
            },
        ),
    )
    restore = until(
        "the restore to fail",
        lambda: (
            (r := backup_status(plane, "trainingjob", "tampered").get("restore") or {}).get("phase")
            == "Failed"
            and r
        ),
        plane,
        timeout=120,
    )
    assert "state.pt" in restore["message"] and "altered" in restore["message"], restore
    # Nothing was moved into the new claim, and no training ran on it.
    assert not list(claim_dir(plane, "tampered-checkpoints").glob("ckpt-*"))
    events = [
        (e["type"], e["reason"])
        for e in plane.get("events")["items"]
        if e["involvedObject"]["name"] == "tampered"
    ]
    assert ("Warning", "RestoreFailed") in events


def test_a_lost_model_artifact_is_restored_from_its_backup_with_the_same_digest(plane: Plane) -> None:
    trained = job("mvsrc")
    trained["spec"]["output"] = {"createModelVersion": True, "modelName": "mvsrc"}
    apply(plane, trained)
    plane.kubectl("wait", "trainingjob/mvsrc", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    name = plane.get("trainingjob", "mvsrc")["status"]["modelVersion"]
    plane.kubectl("wait", f"modelversion/{name}", "--for=condition=Ready", "--timeout=120s", timeout=130)
    artifact = plane.get("modelversion", name)["status"]["artifact"]
    claim, _, path = artifact["uri"].removeprefix("pvc://").partition("/")
    policy = {"schedule": "@yearly", "destination": {"claimName": "backups"}, "retention": {"keepLast": 3}}
    plane.kubectl(
        "patch", "modelversion", name, "--type=merge", "-p", json.dumps({"spec": {"backup": policy}})
    )
    cronjob = until(
        "the ModelVersion's backup CronJob",
        lambda: plane.get("cronjobs", "-l", "modelops.dev/backup-kind=modelversion")["items"],
        plane,
    )[0]
    template = cronjob["spec"]["jobTemplate"]
    apply(
        plane,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "mv-run", "namespace": NS, "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        },
    )
    plane.kubectl("wait", "job/mv-run", "--for=condition=Complete", "--timeout=90s", timeout=100)
    st = until(
        "the artifact's backup in the status",
        lambda: (b := backup_status(plane, "modelversion", name)).get("kept") == 1 and b,
        plane,
        timeout=60,
    )

    # Lose the artifact, then ask for it back: verified against the backup's manifest and the
    # registry's sha256, then copied into its place.
    lost = claim_dir(plane, claim) / path
    lost.unlink()
    restore = {"backup": {"claimName": "backups", "path": st["backups"][-1]["path"]}}
    plane.kubectl(
        "patch", "modelversion", name, "--type=merge", "-p", json.dumps({"spec": {"restoreFrom": restore}})
    )
    done = until(
        "the restore to finish",
        lambda: (
            (r := backup_status(plane, "modelversion", name).get("restore") or {}).get("phase")
            in ("Succeeded", "Failed")
            and r
        ),
        plane,
    )
    assert done["phase"] == "Succeeded", done
    assert done["sha256"] == artifact["sha256"]
    assert hashlib.sha256(lost.read_bytes()).hexdigest() == artifact["sha256"]


def test_volume_snapshots_need_the_crds_then_are_taken_pruned_and_restored(plane: Plane) -> None:
    snap = job("snap")
    snap["spec"]["backup"] = {
        "schedule": "@every 20s",
        "methods": ["volumeSnapshot"],
        "retention": {"keepLast": 1},
    }
    apply(plane, snap)
    cond = until(
        "the missing-CRD condition",
        lambda: (
            (c := condition(plane, "trainingjob", "snap", "BackupHealthy")).get("reason")
            == "VolumeSnapshotCRDMissing"
            and c
        ),
        plane,
    )
    assert cond["status"] == "False" and "snapshot.storage.k8s.io" in cond["message"]

    crds = subprocess.run(
        [sys.executable, "-m", "modelops_local.controllers.snapshots"],
        capture_output=True, text=True, check=True, env=plane.env,
    ).stdout  # fmt: skip
    plane.kubectl("apply", "-f", "-", input=crds)
    plane.kubectl("wait", "crd/volumesnapshots.snapshot.storage.k8s.io", "--for=condition=Established")
    plane.kubectl("wait", "trainingjob/snap", "--for=condition=Succeeded", "--timeout=240s", timeout=250)

    # Snapshots every 20 s; keepLast 1 leaves exactly one, taken after training ended, and it is ready.
    done = plane.get("trainingjob", "snap")["status"]["completionTime"]

    def one_ready_after_training() -> Any:
        st = backup_status(plane, "trainingjob", "snap")
        items = plane.get("volumesnapshots")["items"]
        ready = [s for s in items if (s.get("status") or {}).get("readyToUse")]
        return (
            len(ready) == 1
            and ready[0]["status"]["creationTime"] > done
            and st.get("kept") == 1
            and [b["name"] for b in st.get("backups", [])] == [ready[0]["metadata"]["name"]]
            and condition(plane, "trainingjob", "snap", "BackupHealthy").get("status") == "True"
            and ready[0]
        )

    first = until("one ready snapshot taken after training", one_ready_after_training, plane, timeout=150)
    # The next scheduled one replaces it: keepLast 1 prunes the older one exactly.
    ready = until(
        "the next snapshot, and the first one pruned",
        lambda: (
            (r := one_ready_after_training()) and r["metadata"]["name"] != first["metadata"]["name"] and r
        ),
        plane,
        timeout=120,
    )
    assert first["metadata"]["name"] not in {
        x["metadata"]["name"] for x in plane.get("volumesnapshots")["items"]
    }
    assert ready["spec"]["source"]["persistentVolumeClaimName"] == "snap-checkpoints"
    # Older snapshots were pruned, and their copies on disk with them.
    until(
        "pruned snapshot copies to be removed",
        lambda: (
            len(list((plane.dir / "snapshots" / NS).iterdir())) == len(plane.get("volumesnapshots")["items"])
        ),
        plane,
    )

    # A new job restores its claim from the snapshot: the same checkpoint bytes.
    original = checkpoint_digests(claim_dir(plane, "snap-checkpoints"))
    apply(plane, job("from-snap", restoreFrom={"volumeSnapshot": {"name": ready["metadata"]["name"]}}))
    plane.kubectl("wait", "trainingjob/from-snap", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    assert plane.get("pvc", "from-snap-checkpoints")["spec"]["dataSource"]["kind"] == "VolumeSnapshot"
    assert checkpoint_digests(claim_dir(plane, "from-snap-checkpoints")) == original


def test_every_call_of_the_backup_controller_is_granted_by_the_rbac_rules(plane: Plane) -> None:
    """This plane's audit log against `permissions.RULES` (which the chart's ClusterRole equals)."""
    calls = operator_calls(plane.dir)
    # The tests above made the operator read and create the CronJobs, create the restore Job, list,
    # create and prune VolumeSnapshots.
    assert {
        ("batch", "cronjobs", "get"),
        ("batch", "cronjobs", "create"),
        ("batch", "jobs", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "delete"),
    } <= calls
    assert ungranted(calls) == []
