"""A child the API server refuses, a claim or Secret that does not exist, a pod the kubelet cannot start:
each reaches the object's conditions at once with its reason and the server's or kubelet's words, and
clears by itself once fixed."""

from __future__ import annotations

import datetime
import json
from typing import Any

import kubernetes
import pytest

from modelops import status
from modelops.controllers import children
from modelops.controllers import trainingjob as tj

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def api_error(code: int, reason: str, message: str) -> kubernetes.client.ApiException:
    error = kubernetes.client.ApiException(status=code, reason=reason)
    error.body = json.dumps({"kind": "Status", "status": "Failure", "reason": reason, "message": message})
    return error


QUOTA = 'pods "digits-0" is forbidden: exceeded quota: compute, requested: cpu=4, used: cpu=0, limited: cpu=2'


def test_a_refusal_becomes_a_typed_error_with_the_servers_message() -> None:
    with pytest.raises(children.ChildRejected) as raised, children.creating("Pod", "digits-0"):
        raise api_error(403, "Forbidden", QUOTA)
    rejected = raised.value
    assert (rejected.kind, rejected.name, rejected.code, rejected.reason) == (
        "Pod",
        "digits-0",
        403,
        "Forbidden",
    )
    assert rejected.message == QUOTA
    conclusion = children.rejected_conclusion(rejected, phase="Pending")
    assert conclusion.state is status.State.STALLED and conclusion.reason == "ChildRejected"
    assert QUOTA in conclusion.message and "ResourceQuota" in conclusion.message


@pytest.mark.parametrize("code", [409, 429, 500, 503])
def test_conflicts_throttling_and_server_errors_are_not_refusals(code: int) -> None:
    with pytest.raises(kubernetes.client.ApiException), children.creating("Pod", "p"):
        raise api_error(code, "Whatever", "try again")


def test_a_refusal_without_a_status_body_still_says_what_the_server_said() -> None:
    error = kubernetes.client.ApiException(status=422, reason="Unprocessable Entity")
    rejected = children.refusal(error, "Service", "s")
    assert rejected is not None and rejected.reason == "Invalid" and "Unprocessable" in rejected.message


def test_missing_claims_name_every_claim_and_the_field() -> None:
    conclusion = children.missing_conclusion(
        [children.Missing("PersistentVolumeClaim", "data", "spec.dataset.file.claimName")], phase="Pending"
    )
    assert conclusion is not None and conclusion.reason == "ClaimNotFound"
    assert conclusion.state is status.State.STALLED
    assert '"data"' in conclusion.message and "spec.dataset.file.claimName" in conclusion.message
    assert children.missing_conclusion([], phase="Pending") is None


def pending_pod(name: str = "digits-0", **status_fields: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {"modelops.dev/trainingjob": "digits", "modelops.dev/rank": name.rsplit("-", 1)[1]},
            "annotations": {"modelops.dev/attempt": "0"},
        },
        "status": {"phase": "Pending", **status_fields},
    }


def waiting(reason: str, message: str) -> list[dict[str, Any]]:
    return [{"name": "trainer", "state": {"waiting": {"reason": reason, "message": message}}}]


@pytest.mark.parametrize(
    ("kubelet_reason", "message", "expected"),
    [
        ("CreateContainerConfigError", 'secret "s3-creds" not found', "SecretNotFound"),
        (
            "CreateContainerConfigError",
            "couldn't find key token in Secret ns/creds",
            "CreateContainerConfigError",
        ),
        ("ImagePullBackOff", 'Back-off pulling image "registry.local/train:v9"', "ImagePullBackOff"),
        ("ErrImagePull", "pull access denied", "ErrImagePull"),
    ],
)
def test_the_kubelets_waiting_reasons_are_the_pods_problem(
    kubelet_reason: str, message: str, expected: str
) -> None:
    problem = children.pod_problem(pending_pod(containerStatuses=waiting(kubelet_reason, message)))
    assert problem is not None and problem.reason == expected
    assert kubelet_reason in problem.message and message in problem.message


def test_pulling_or_creating_is_progress_not_a_problem() -> None:
    assert children.pod_problem(pending_pod(containerStatuses=waiting("ContainerCreating", ""))) is None
    running = pending_pod()
    running["status"]["phase"] = "Running"
    running["status"]["containerStatuses"] = waiting("CreateContainerConfigError", "stale")
    assert children.pod_problem(running) is None


def failed_mount(pod: str, message: str, when: str = "2026-01-01T12:00:00Z") -> dict[str, Any]:
    return {
        "reason": "FailedMount",
        "type": "Warning",
        "message": message,
        "lastTimestamp": when,
        "involvedObject": {"kind": "Pod", "name": pod, "uid": f"uid-{pod}"},
    }


def test_failed_mount_events_of_the_pod_name_the_missing_secret_or_claim() -> None:
    events = [
        failed_mount("other-0", 'secret "unrelated" not found'),
        failed_mount("digits-0", 'MountVolume.SetUp failed for volume "creds" : secret "creds" not found'),
    ]
    problem = children.pod_problem(pending_pod(), events)
    assert problem is not None and problem.reason == "SecretNotFound" and '"creds"' in problem.message
    claim = [failed_mount("digits-0", 'persistentvolumeclaim "data" not found')]
    found = children.pod_problem(pending_pod(), claim)
    assert found is not None and found.reason == "ClaimNotFound"
    assert children.pod_problem(pending_pod(), [failed_mount("other-0", 'secret "x" not found')]) is None


def test_the_schedulers_missing_claim_is_claim_not_found() -> None:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": '0/3 nodes are available: persistentvolumeclaim "data" not found.'}  # fmt: skip
    problem = children.pod_problem(pending_pod(conditions=[cond]))
    assert problem is not None and problem.reason == "ClaimNotFound"


# -- the TrainingJob's plan with each blockage --------------------------------------------------------

FILE_SPEC: dict[str, Any] = {
    "model": {"architecture": "mlp"},
    "dataset": {"file": {"claimName": "data", "path": "train.csv"}},
}


def job(st: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "digits", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": FILE_SPEC,
    }
    if st is not None:
        obj["status"] = st
    return obj


def settle(obj: dict[str, Any], p: tj.Plan) -> dict[str, Any]:
    st = {**(obj.get("status") or {}), **p.status_patch}
    return {**obj, "status": {k: v for k, v in st.items() if v is not None}}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return status.get_condition(obj["status"]["conditions"], type_) or {}


MISSING = [children.Missing("PersistentVolumeClaim", "data", "spec.dataset.file.claimName")]


def test_a_missing_dataset_claim_stalls_the_job_at_once_and_it_proceeds_once_created() -> None:
    first = tj.plan(job(), [], None, now=T0, absent=MISSING)
    assert not first.create_pods, "no pod is created to hang in ContainerCreating"
    stalled = settle(job(), first)
    assert stalled["status"]["phase"] == "Pending"
    assert condition(stalled, "Stalled")["status"] == "True"
    assert condition(stalled, "Stalled")["reason"] == "ClaimNotFound"
    assert condition(stalled, "Ready")["reason"] == "ClaimNotFound"
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "ClaimNotFound")]
    again = tj.plan(stalled, [], None, now=T0, absent=MISSING)
    assert again.events == [] and again.status_patch == {}, "one event per transition, no churn"

    # The user creates the claim: the next look creates the pods, no re-apply needed.
    fixed = tj.plan(stalled, [], None, now=T0)
    assert fixed.create_pods
    created = settle(stalled, fixed)
    assert condition(created, "Stalled").get("status") != "True"


def test_a_refused_pod_stalls_with_the_servers_message_and_is_tried_again() -> None:
    rejected = children.ChildRejected("Pod", "digits-0", 403, "Forbidden", QUOTA)
    p = tj.plan(job(), [], None, now=T0, rejected=rejected)
    stalled = settle(job(), p)
    assert condition(stalled, "Stalled")["reason"] == "ChildRejected"
    assert QUOTA in condition(stalled, "Stalled")["message"]
    assert tj.plan(stalled, [], None, now=T0).create_pods, "the next look tries again"


def test_a_pod_waiting_on_a_missing_secret_stalls_the_job_and_running_clears_it() -> None:
    created = {"phase": "Created", "conditions": [], "restarts": 0}
    pods = [pending_pod(containerStatuses=waiting("CreateContainerConfigError", 'secret "creds" not found'))]
    p = tj.plan(job(created), pods, None, now=T0)
    stalled = settle(job(created), p)
    assert condition(stalled, "Stalled")["reason"] == "SecretNotFound"
    assert 'secret "creds" not found' in condition(stalled, "Stalled")["message"]
    assert stalled["status"]["phase"] == "Created"
    running = pending_pod()
    running["status"] = {"phase": "Running", "startTime": "2026-01-01T12:00:00Z"}
    recovered = settle(stalled, tj.plan(stalled, [running], None, now=T0))
    assert recovered["status"]["phase"] == "Running"
    assert condition(recovered, "Stalled").get("status") != "True"
