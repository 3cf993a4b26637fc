"""What a user reads in a TrainingJob's status as its pods run, fail, restart and finish."""

from __future__ import annotations

import datetime
import json
from typing import Any

from modelops import status
from modelops.controllers import trainingjob as tj
from modelops.controllers.trainingjob import Plan, plan

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SPEC: dict[str, Any] = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}


def job(st: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "digits", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {**SPEC, **spec},
    }
    if st is not None:
        obj["status"] = st
    return obj


def pod(
    rank: int,
    phase: str,
    *,
    attempt: int = 0,
    exit_code: int | None = None,
    reason: str | None = None,
    message: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    st: dict[str, Any] = {"phase": phase, "startTime": "2026-01-01T11:59:00Z"}
    if exit_code is not None:
        terminated = {"exitCode": exit_code, "reason": reason or "Error", "message": message or ""}
        st["containerStatuses"] = [{"name": "trainer", "state": {"terminated": terminated}}]
    if conditions:
        st["conditions"] = conditions
    return {
        "metadata": {
            "name": f"digits-{rank}",
            "labels": {"modelops.dev/trainingjob": "digits", "modelops.dev/rank": str(rank)},
            "annotations": {"modelops.dev/attempt": str(attempt)},
        },
        "status": st,
    }


def apply(obj: dict[str, Any], p: Plan) -> dict[str, Any]:
    """The job as the API server holds it after the status patch (a JSON merge patch)."""
    st = {**(obj.get("status") or {}), **p.status_patch}
    return {**obj, "status": {k: v for k, v in st.items() if v is not None}}


def cond(obj_or_status: dict[str, Any], type_: str) -> dict[str, Any]:
    st = obj_or_status.get("status", obj_or_status)
    c = status.get_condition(st.get("conditions"), type_)
    assert c is not None, f"no {type_} condition in {st.get('conditions')}"
    return c


def test_new_job_creates_its_pods_then_runs_with_progress_from_the_metrics() -> None:
    first = plan(job(), [], None, now=T0)
    assert first.create_pods and first.attempt == 0
    assert first.status_patch["phase"] == "Created"
    obj = apply(job(), first)
    metrics = {
        "modelops_training_step": 50.0,
        "modelops_training_total_steps": 200.0,
        "modelops_training_epoch": 3.0,
        "modelops_training_total_epochs": 10.0,
        "modelops_training_loss": 0.4,
        "modelops_training_samples_per_second": 640.0,
        "modelops_training_last_progress_timestamp_seconds": T0.timestamp(),
    }
    running = plan(obj, [pod(0, "Running")], metrics, now=T0)
    assert not running.create_pods
    st = apply(obj, running)["status"]
    assert st["phase"] == "Running" and st["startTime"] == "2026-01-01T11:59:00Z"
    assert st["progress"] == {
        "step": 50,
        "totalSteps": 200,
        "percent": 25,
        "epoch": 3,
        "totalEpochs": 10,
        "loss": 0.4,
        "samplesPerSecond": 640.0,
        "etaSeconds": 15,  # 150 steps x 64 samples / 640 samples/s
        "lastProgressTime": "2026-01-01T12:00:00Z",
    }
    assert cond(st, "Running")["status"] == "True" and cond(st, "Created")["status"] == "True"
    assert cond(st, "Ready")["status"] == "False" and status.kstatus(st, 1) == "InProgress"
    assert [e.reason for e in running.events] == ["Running"]


def test_unchanged_observation_writes_nothing_and_posts_nothing() -> None:
    obj = apply(job(), plan(job(), [], None, now=T0))
    obj = apply(obj, plan(obj, [pod(0, "Running")], None, now=T0))
    again = plan(obj, [pod(0, "Running")], None, now=T0 + datetime.timedelta(seconds=30))
    assert again.status_patch == {} and again.events == [] and not again.create_pods and not again.delete_pods


def test_success_records_final_metrics_checkpoint_and_is_ready() -> None:
    result = {
        "status": "Succeeded",
        "reason": "Succeeded",
        "message": "trained 10 epoch(s), 230 step(s); validation accuracy 0.9694",
        "exitCode": 0,
        "metrics": {"loss": 0.2, "accuracy": 0.9694},
        "checkpoint": {"step": 230, "path": "ckpt-0000000230", "sha256": "ab" * 32},
        "epochs": 10,
        "steps": 230,
        "trainLoss": 0.0004,
    }
    obj = apply(job(), plan(job(), [], None, now=T0))
    # Scraped before the worker set its totals: a 0 total is "not known yet", never shown as 0.
    scraped = {
        "modelops_training_step": 20.0,
        "modelops_training_loss": 1.99,
        "modelops_training_total_epochs": 0.0,
        "modelops_training_total_steps": 0.0,
    }
    obj = apply(obj, plan(obj, [pod(0, "Running")], scraped, now=T0))
    assert obj["status"]["progress"]["loss"] == 1.99
    assert "totalEpochs" not in obj["status"]["progress"] and "totalSteps" not in obj["status"]["progress"]
    done = plan(
        obj, [pod(0, "Succeeded", exit_code=0, reason="Completed", message=json.dumps(result))], None, now=T0
    )
    st = apply(obj, done)["status"]
    assert st["phase"] == "Succeeded" and st["completionTime"] == "2026-01-01T12:00:00Z"
    assert st["metrics"]["accuracy"] == 0.9694
    assert st["checkpoint"]["path"] == "ckpt-0000000230"
    assert st["progress"]["percent"] == 100 and st["progress"]["step"] == 230
    assert st["progress"]["epoch"] == st["progress"]["totalEpochs"] == 10
    # The last scrape came early in the run; the status shows the final loss, not that one.
    assert st["progress"]["loss"] == 0.0004
    assert cond(st, "Succeeded")["status"] == "True" and cond(st, "Ready")["status"] == "True"
    assert cond(st, "Running")["status"] == "False"
    assert "0.9694" in cond(st, "Ready")["message"]
    assert status.kstatus(st, 1) == "Current"
    assert done.register_model_version and not done.delete_pods  # cleanPodPolicy None keeps the logs
    # Finished is final: a later look at the (now gone) pods changes nothing.
    later = plan(apply(obj, done), [], None, now=T0 + datetime.timedelta(minutes=5))
    assert later.status_patch == {} and not later.create_pods


def test_permanent_failure_fails_at_once_with_the_workers_reason() -> None:
    result = {
        "status": "Failed",
        "reason": "DataValidationFailed",
        "message": "column 3 has 12 NaN values; clean the data",
        "exitCode": 65,
    }
    obj = apply(job(), plan(job(), [], None, now=T0))
    failed = plan(obj, [pod(0, "Failed", exit_code=65, message=json.dumps(result))], None, now=T0)
    st = apply(obj, failed)["status"]
    assert st["phase"] == "Failed" and st["restarts"] == 0
    assert st["failure"] == {
        "reason": "DataValidationFailed",
        "message": "column 3 has 12 NaN values; clean the data",
        "exitCode": 65,
        "pod": "digits-0",
    }
    assert cond(st, "Stalled")["status"] == "True" and cond(st, "Stalled")["reason"] == "DataValidationFailed"
    assert cond(st, "Failed")["status"] == "True" and status.kstatus(st, 1) == "Failed"
    assert not failed.create_pods
    assert [e.type for e in failed.events] == ["Warning"]


def test_a_restore_that_fails_verification_fails_the_job_at_once_with_its_reason() -> None:
    # The checkpoint restore runs as rank 0's init container; the trainer never starts.
    result = {
        "status": "Failed",
        "reason": "BackupCorrupt",
        "message": "ckpt-000040.pt: sha256 differs from the backup's manifest; pick another backup",
        "exitCode": 65,
    }
    obj = apply(job(), plan(job(), [], None, now=T0))
    failed_pod = pod(0, "Failed")
    terminated = {"exitCode": 65, "reason": "Error", "message": json.dumps(result)}
    failed_pod["status"]["initContainerStatuses"] = [{"name": "restore", "state": {"terminated": terminated}}]
    failed_pod["status"]["containerStatuses"] = [
        {"name": "trainer", "state": {"waiting": {"reason": "PodInitializing"}}}
    ]
    failed = plan(obj, [failed_pod], None, now=T0)
    st = apply(obj, failed)["status"]
    assert st["phase"] == "Failed" and st["restarts"] == 0  # a retry cannot mend a corrupt backup
    assert st["failure"]["reason"] == "BackupCorrupt" and "pick another backup" in st["failure"]["message"]
    assert not failed.create_pods


def test_retryable_failure_restarts_every_rank_then_counts_against_the_backoff_limit() -> None:
    spec = {"distributed": {"nodes": 2}, "runPolicy": {"backoffLimit": 1}}
    obj = apply(job(**spec), plan(job(**spec), [], None, now=T0))
    oom = plan(obj, [pod(0, "Running"), pod(1, "Failed", exit_code=137, reason="OOMKilled")], None, now=T0)
    assert sorted(oom.delete_pods) == ["digits-0", "digits-1"] and not oom.create_pods
    obj = apply(obj, oom)
    assert obj["status"]["phase"] == "Restarting" and obj["status"]["restarts"] == 1
    assert obj["status"]["failure"]["reason"] == "OOMKilled" and obj["status"]["failure"]["pod"] == "digits-1"
    assert cond(obj, "Restarting")["status"] == "True"
    # Old pods gone: the next attempt is created, labelled with its attempt number.
    recreate = plan(obj, [], None, now=T0)
    assert recreate.create_pods and recreate.attempt == 1
    obj = apply(obj, recreate)
    obj = apply(obj, plan(obj, [pod(0, "Running", attempt=1), pod(1, "Running", attempt=1)], None, now=T0))
    assert obj["status"]["phase"] == "Running" and cond(obj, "Restarting")["status"] == "False"
    # A second failure exceeds backoffLimit 1.
    crash = plan(obj, [pod(0, "Failed", attempt=1, exit_code=1), pod(1, "Running", attempt=1)], None, now=T0)
    st = apply(obj, crash)["status"]
    assert st["phase"] == "Failed" and cond(st, "Stalled")["reason"] == "BackoffLimitExceeded"
    assert "runPolicy.backoffLimit (1)" in cond(st, "Ready")["message"]


def test_a_deleted_pod_is_a_retryable_failure() -> None:
    obj = apply(
        job(**{"distributed": {"nodes": 2}}), plan(job(**{"distributed": {"nodes": 2}}), [], None, now=T0)
    )
    gone = plan(obj, [pod(0, "Running")], None, now=T0)
    st = apply(obj, gone)["status"]
    assert st["phase"] == "Restarting" and st["failure"]["reason"] == "PodDeleted"
    assert gone.delete_pods == ("digits-0",)


def test_evicted_pod_is_retried_with_the_eviction_reason() -> None:
    obj = apply(job(), plan(job(), [], None, now=T0))
    evicted = pod(0, "Failed")
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    st = apply(obj, plan(obj, [evicted], None, now=T0))["status"]
    assert st["phase"] == "Restarting" and st["failure"]["reason"] == "Evicted"


def test_unschedulable_pod_explains_itself_with_the_schedulers_message() -> None:
    msg = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    unsched = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}]
    obj = apply(job(), plan(job(), [], None, now=T0))
    p = plan(obj, [pod(0, "Pending", conditions=unsched)], None, now=T0)
    st = apply(obj, p)["status"]
    assert cond(st, "Ready")["reason"] == "Unschedulable"
    assert msg in cond(st, "Ready")["message"] and "digits-0" in cond(st, "Ready")["message"]
    assert [e.reason for e in p.events] == ["Unschedulable"] and not p.create_pods


def test_suspending_deletes_the_pods_and_resuming_recreates_them() -> None:
    obj = apply(job(), plan(job(), [], None, now=T0))
    obj = apply(obj, plan(obj, [pod(0, "Running")], None, now=T0))
    suspended = job(obj["status"], runPolicy={"suspend": True})
    p = plan(suspended, [pod(0, "Running")], None, now=T0)
    assert p.delete_pods == ("digits-0",) and not p.create_pods
    st = apply(suspended, p)["status"]
    assert st["phase"] == "Suspended" and cond(st, "Suspended")["status"] == "True"
    resumed = plan(job(st), [], None, now=T0)
    assert resumed.create_pods and resumed.status_patch["phase"] == "Created"
    assert cond(apply(job(st), resumed), "Suspended")["status"] == "False"


def test_active_deadline_fails_the_job_and_stops_its_pods() -> None:
    obj = apply(job(runPolicy={"activeDeadlineSeconds": 60}), plan(job(), [], None, now=T0))
    obj = apply(obj, plan(obj, [pod(0, "Running")], None, now=T0))
    late = plan(obj, [pod(0, "Running")], None, now=T0 + datetime.timedelta(seconds=61))
    st = apply(obj, late)["status"]
    assert st["phase"] == "Failed" and cond(st, "Stalled")["reason"] == "DeadlineExceeded"
    assert late.delete_pods == ("digits-0",)


def test_active_deadline_also_ends_a_job_that_never_got_scheduled() -> None:
    unsched = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPUs"}]
    obj = apply(job(runPolicy={"activeDeadlineSeconds": 60}), plan(job(), [], None, now=T0))
    pending = [pod(0, "Pending", conditions=unsched)]
    obj = apply(obj, plan(obj, pending, None, now=T0 + datetime.timedelta(seconds=30)))
    assert obj["status"]["phase"] == "Created"
    late = plan(obj, pending, None, now=T0 + datetime.timedelta(seconds=60))
    assert apply(obj, late)["status"]["phase"] == "Failed" and late.delete_pods == ("digits-0",)


def test_clean_pod_policy_and_ttl_after_finished() -> None:
    result = json.dumps({"status": "Succeeded", "reason": "Succeeded", "message": "ok"})
    spec = {
        "distributed": {"nodes": 2},
        "runPolicy": {"cleanPodPolicy": "Running", "ttlSecondsAfterFinished": 600},
    }
    obj = apply(job(**spec), plan(job(**spec), [], None, now=T0))
    done = plan(obj, [pod(0, "Succeeded", exit_code=0, message=result), pod(1, "Running")], None, now=T0)
    assert done.delete_pods == ("digits-1",)  # Running: only pods still running go
    obj = apply(obj, done)
    finished = [pod(0, "Succeeded", exit_code=0, message=result)]
    assert plan(obj, finished, None, now=T0 + datetime.timedelta(seconds=599)).delete_pods == ()
    assert plan(obj, finished, None, now=T0 + datetime.timedelta(seconds=600)).delete_pods == ("digits-0",)


def test_pods_of_an_earlier_attempt_are_replaced() -> None:
    obj = apply(job(), plan(job(), [], None, now=T0))
    obj["status"]["restarts"] = 1
    p = plan(obj, [pod(0, "Running", attempt=0)], None, now=T0)
    assert p.delete_pods == ("digits-0",)


def test_decide_accepts_a_valid_spec() -> None:
    from modelops.api.trainingjob import TrainingJobSpec

    assert tj.decide(TrainingJobSpec.model_validate(SPEC)).state is status.State.PROGRESSING


def test_a_checkpoint_that_failed_verification_is_reported_once() -> None:
    obj = apply(job(), plan(job(), [], None, now=T0))
    metrics = {"modelops_training_step": 10.0, "modelops_training_total_steps": 200.0}
    obj = apply(obj, plan(obj, [pod(0, "Running")], metrics, now=T0))
    skipped = {**metrics, "modelops_training_checkpoint_fallbacks_total": 1.0}
    first = plan(obj, [pod(0, "Running")], skipped, now=T0)
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "CheckpointSkipped")]
    obj = apply(obj, first)
    assert obj["status"]["checkpoint"]["skippedCorrupt"] == 1
    again = plan(obj, [pod(0, "Running")], skipped, now=T0)
    assert again.events == [] and "checkpoint" not in again.status_patch
