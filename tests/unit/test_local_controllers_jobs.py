"""Job controller of the local plane: completions, parallelism, backoff, deadlines, indexes, suspend, TTL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelops_local.controllers import common as c
from modelops_local.controllers import jobs
from modelops_local.controllers.actions import Create, Delete, Status

Obj = dict[str, Any]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def job(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "train", "namespace": "ns", "uid": "job-uid"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "t"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]},
            },
            **spec,
        },
    }


class Sim:
    """Applies the Job controller's actions; `finish` plays the kubelet ending pods."""

    def __init__(self, j: Obj) -> None:
        self.job = j
        self.pods: dict[str, Obj] = {}
        self.at = T0
        self.created = 0
        self.deleted_job = False

    def sync(self, backoff: float = 1.0) -> jobs.Result:
        r = jobs.reconcile(self.job, list(self.pods.values()), self.at, backoff)
        for a in r.actions:
            if isinstance(a, Create):
                a.body["metadata"]["uid"] = a.body["metadata"]["name"]
                a.body["metadata"]["creationTimestamp"] = c.fmt_time(self.at)
                a.body["status"] = {"phase": "Running"}
                self.pods[a.body["metadata"]["name"]] = a.body
                self.created += 1
            elif isinstance(a, Delete) and a.kind.plural == "pods":
                self.pods.pop(a.name)
            elif isinstance(a, Delete):
                self.deleted_job = True
            elif isinstance(a, Status):
                self.job["status"] = a.status
        return r

    def finish(self, phase: str, code: int = 0, n: int = 1) -> None:
        running = [p for p in self.pods.values() if p["status"]["phase"] == "Running"][:n]
        for pod in running:
            pod["status"] = {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": "c",
                        "state": {"terminated": {"exitCode": code, "finishedAt": c.fmt_time(self.at)}},
                    }
                ],
            }

    def tick(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)

    def cond(self, ctype: str) -> Obj | None:
        return c.get_condition(self.job.get("status") or {}, ctype)


def test_job_runs_parallel_pods_until_completions_succeed() -> None:
    s = Sim(job(completions=3, parallelism=2))
    s.sync()
    assert s.job["status"]["active"] == 2 and len(s.pods) == 2
    pod = next(iter(s.pods.values()))
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "train"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
    s.finish("Succeeded", n=2)
    s.tick(1)
    s.sync()
    assert s.job["status"]["succeeded"] == 2 and s.job["status"]["active"] == 1, (
        "only one more completion is needed"
    )
    s.finish("Succeeded")
    s.tick(1)
    s.sync()
    assert s.cond("Complete") is not None and s.cond("Complete")["status"] == "True"
    assert s.job["status"]["completionTime"] == c.fmt_time(s.at)
    assert s.job["status"]["startTime"] == c.fmt_time(T0)
    assert s.created == 3


def test_failing_job_backs_off_then_hits_backoff_limit() -> None:
    s = Sim(job(backoffLimit=2))
    s.sync()
    s.finish("Failed", code=1)
    s.tick(0.5)
    r = s.sync(backoff=1.0)
    assert s.created == 1, "a replacement must wait for the backoff"
    assert r.requeue_after is not None and 0 < r.requeue_after <= 0.5
    s.tick(0.6)
    s.sync(backoff=1.0)
    assert s.created == 2 and s.job["status"]["failed"] == 1
    s.finish("Failed", code=1)
    s.tick(1.5)
    s.sync(backoff=1.0)
    assert s.created == 2, "second backoff is twice the base"
    s.tick(1)
    s.sync(backoff=1.0)
    s.finish("Failed", code=1)
    s.tick(10)
    s.sync(backoff=1.0)
    failed = s.cond("Failed")
    assert failed is not None and (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert s.job["status"]["failed"] == 3 and s.created == 3


def test_active_deadline_fails_job_and_stops_pods() -> None:
    s = Sim(job(activeDeadlineSeconds=30))
    s.sync()
    s.tick(31)
    s.sync()
    failed = s.cond("Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert not s.pods


def test_pod_failure_policy_fail_job_and_ignore() -> None:
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    s = Sim(job(backoffLimit=0, podFailurePolicy=policy))
    s.sync()
    pod = next(iter(s.pods.values()))
    pod["status"] = {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}
    s.tick(20)
    s.sync()
    assert s.cond("Failed") is None, "an ignored failure does not count toward backoffLimit 0"
    assert s.created == 2
    s.finish("Failed", code=42)
    s.tick(1)
    s.sync()
    failed = s.cond("Failed")
    assert (
        failed is not None and failed["reason"] == "PodFailurePolicy" and "exit code 42" in failed["message"]
    )


def test_indexed_job_gives_each_index_its_pod_and_env() -> None:
    s = Sim(job(completions=3, parallelism=3, completionMode="Indexed"))
    s.sync()
    indexes = sorted(p["metadata"]["annotations"][jobs.INDEX] for p in s.pods.values())
    assert indexes == ["0", "1", "2"]
    pod0 = next(p for p in s.pods.values() if p["metadata"]["annotations"][jobs.INDEX] == "0")
    assert pod0["spec"]["hostname"] == "train-0"
    assert {"name": "JOB_COMPLETION_INDEX", "value": "0"} in pod0["spec"]["containers"][0]["env"]
    pod0["status"] = {"phase": "Succeeded"}
    pod2 = next(p for p in s.pods.values() if p["metadata"]["annotations"][jobs.INDEX] == "2")
    pod2["status"] = {"phase": "Failed"}
    s.tick(30)
    s.sync()
    assert s.job["status"]["completedIndexes"] == "0"
    recreated = [p for p in s.pods.values() if p["status"]["phase"] == "Running"]
    assert sorted(p["metadata"]["annotations"][jobs.INDEX] for p in recreated) == ["1", "2"]


def test_suspend_deletes_pods_and_resume_restarts() -> None:
    s = Sim(job(parallelism=2, completions=2))
    s.sync()
    s.job["spec"]["suspend"] = True
    s.sync()
    assert not s.pods and s.cond("Suspended")["reason"] == "JobSuspended"  # type: ignore[index]
    s.job["spec"]["suspend"] = False
    s.sync()
    assert len(s.pods) == 2 and s.cond("Suspended")["status"] == "False"  # type: ignore[index]


def test_ttl_after_finished_deletes_the_job() -> None:
    s = Sim(job(ttlSecondsAfterFinished=5))
    s.sync()
    s.finish("Succeeded")
    s.sync()
    s.tick(4)
    s.sync()
    assert not s.deleted_job
    s.tick(2)
    s.sync()
    assert s.deleted_job


def test_index_format_round_trips() -> None:
    assert jobs.format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert jobs.parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}


def test_rejected_pod_create_is_retried_after_a_pause() -> None:
    s = Sim(job())
    r = jobs.reconcile(s.job, [], T0, 1.0, failure=("pods is forbidden", 2.0))
    assert not [a for a in r.actions if isinstance(a, Create)]
    assert r.requeue_after is not None and r.requeue_after <= 8.0
    r = jobs.reconcile(s.job, [], T0, 1.0, failure=("pods is forbidden", 12.0))
    assert len([a for a in r.actions if isinstance(a, Create)]) == 1


def test_job_managed_by_another_controller_is_left_alone() -> None:
    assert jobs.reconcile(job(managedBy="kueue.x-k8s.io/multikueue"), [], T0).actions == []
    assert jobs.reconcile(job(managedBy=jobs.JOB_CONTROLLER), [], T0).actions


def test_pods_failing_while_being_deleted_do_not_count_as_failures() -> None:
    s = Sim(job(parallelism=2, completions=2, backoffLimit=0))
    s.sync()
    s.job["spec"]["suspend"] = True
    dying = [dict(p) for p in s.pods.values()]
    s.sync()
    for pod in dying:
        pod["metadata"]["deletionTimestamp"] = c.fmt_time(s.at)
        pod["status"] = {"phase": "Failed"}
    s.job["spec"]["suspend"] = False
    r = jobs.reconcile(s.job, dying, s.at, 1.0)
    (status,) = [a.status for a in r.actions if isinstance(a, Status)]
    assert c.get_condition(status, "Failed") is None and status.get("failed", 0) == 0
