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


def test_pods_gated_by_kueue_say_the_job_is_queued_not_stuck() -> None:
    obj = job({"phase": "Created", "conditions": [], "restarts": 0})
    obj["spec"] = {**FILE_SPEC, "queueName": "team-a"}
    gated = pending_pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}])
    queued = settle(obj, tj.plan(obj, [gated], None, now=T0))
    assert condition(queued, "Ready")["reason"] == "Queued"
    assert "team-a" in condition(queued, "Ready")["message"]
    assert condition(queued, "Stalled").get("status") != "True"


# -- the API client raises the typed refusal itself, over real HTTP -----------------------------------


def test_the_clusters_create_and_apply_raise_the_typed_refusal_with_the_servers_message(
    tmp_path: Any,
) -> None:
    import http.server
    import threading

    from modelops.controllers.cluster import Cluster, resource_path

    refusal = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
               "message": 'pods "p" is forbidden: violates PodSecurity "restricted:latest": hostPath volumes'}  # fmt: skip

    class Refuse(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            code = 403 if "/pods" in self.path else 409
            body = json.dumps(
                refusal if code == 403 else {"kind": "Status", "reason": "AlreadyExists", "code": 409}
            )
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        do_POST = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        cluster = Cluster(str(kubeconfig))
        container = {"name": "c", "image": "i"}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [container]},
        }
        for attempt in (
            lambda: cluster.create_at(resource_path("v1", "pods", "ns"), pod),
            lambda: cluster.apply(resource_path("v1", "pods", "ns", "p"), pod),
            lambda: cluster.create(pod),
        ):
            with pytest.raises(children.ChildRejected) as raised:
                attempt()
            assert (raised.value.kind, raised.value.name, raised.value.status) == ("Pod", "p", 403)
            assert "violates PodSecurity" in raised.value.message
            assert isinstance(raised.value, kubernetes.client.ApiException), "old handlers keep working"
        # A conflict is not a refusal: it stays what it was (here: already exists, so None).
        assert (
            cluster.create_at(
                resource_path("v1", "services", "ns"), {"kind": "Service", "metadata": {"name": "s"}}
            )
            is None
        )
    finally:
        server.shutdown()


def test_a_failing_pull_with_a_missing_pull_secret_is_secret_not_found() -> None:
    event = {
        "reason": "FailedToRetrieveImagePullSecret",
        "type": "Warning",
        "message": "Unable to retrieve some image pull secrets (regcred); attempting to pull the image may not succeed.",
        "involvedObject": {"kind": "Pod", "name": "digits-0", "uid": "uid-digits-0"},
    }
    pulling = pending_pod(containerStatuses=waiting("ImagePullBackOff", 'Back-off pulling image "private/x"'))
    problem = children.pod_problem(pulling, [event])
    assert problem is not None and problem.reason == "SecretNotFound"
    assert "regcred" in problem.message and "ImagePullBackOff" in problem.message
    # A public image pulls fine despite the warning: no problem is claimed.
    assert children.pod_problem(pending_pod(), [event]) is None
