"""A TrainingJob trained for real on the local plane, as a user drives it with kubectl.

`modelops local up` (API server, scheduler, kubelet running pods as processes, the operator), then
the quickstart TrainingJob with real PyTorch on the digits dataset: `kubectl wait` for Succeeded,
the validation accuracy in the status, the ModelVersion it registered, and the training log through
`kubectl logs`. A job asking for GPUs the plane does not have must say so in its status.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import Plane, operator_calls, ungranted

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("training") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir), "--nodes", "2")
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def quickstart(epochs: int) -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(
        (REPO / "examples" / "quickstart" / "10-trainingjob.yaml").read_text()
    )
    job["spec"]["hyperparameters"]["epochs"] = epochs
    return job


def test_quickstart_trains_registers_a_model_version_and_keeps_its_logs(plane: Plane) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps(quickstart(epochs=10)))
    plane.kubectl("wait", "trainingjob/digits", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    plane.kubectl("wait", "trainingjob/digits", "--for=condition=Ready", "--timeout=10s")
    job = plane.get("trainingjob", "digits")
    st = job["status"]
    assert st["phase"] == "Succeeded"
    assert st["metrics"]["accuracy"] > 0.9, st
    assert st["progress"]["percent"] == 100 and st["progress"]["step"] > 0
    assert st["checkpoint"]["path"].startswith("ckpt-")
    assert st["startTime"] <= st["completionTime"]
    assert st["restarts"] == 0

    # The registered model: the next free version of model "digits", pointing back at the job.
    assert st["modelVersion"] == "digits-1"
    mv = plane.get("modelversion", "digits-1")
    assert mv["spec"]["model"] == "digits" and mv["spec"]["version"] == 1
    assert mv["spec"]["source"] == {"trainingJob": {"name": "digits"}}
    assert mv["spec"]["format"] == "torchscript"

    # cleanPodPolicy None: the pod stays, so its log is readable; the Service and claim exist.
    log = plane.kubectl("logs", "digits-0")
    assert log.strip(), "the training pod's log is empty"
    pod = plane.get("pod", "digits-0")
    assert pod["metadata"]["ownerReferences"][0]["name"] == "digits"
    assert plane.get("service", "digits-workers")["spec"]["clusterIP"] == "None"
    assert plane.get("pvc", "digits-checkpoints")["metadata"]["name"] == "digits-checkpoints"

    events = [e["reason"] for e in plane.get("events")["items"] if e["involvedObject"]["name"] == "digits"]
    assert "Succeeded" in events and "ModelVersionCreated" in events
    # The operator's log tells the job's story, without a line per job every few seconds.
    log = (plane.dir / "logs" / "operator.log").read_text()
    assert "Phase Succeeded, Succeeded: trained 10 epoch(s)" in log
    assert "Timer 'sync' succeeded" not in log


def test_job_asking_for_missing_gpus_explains_why_it_does_not_start(plane: Plane) -> None:
    job = quickstart(epochs=1)
    job["metadata"]["name"] = "needs-gpus"
    job["spec"]["resources"]["gpus"] = 2
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    deadline = time.monotonic() + 60
    ready: dict[str, Any] = {}
    while time.monotonic() < deadline:
        conditions = plane.get("trainingjob", "needs-gpus").get("status", {}).get("conditions", [])
        ready = next((c for c in conditions if c["type"] == "Ready"), {})
        if ready.get("reason") == "Unschedulable":
            break
        time.sleep(0.5)
    assert ready.get("reason") == "Unschedulable", f"{ready}\n{plane.logs()}"
    assert "nvidia.com/gpu" in ready["message"] and "needs-gpus-0" in ready["message"]
    assert ready["status"] == "False"


def test_deleting_the_job_removes_its_pods_and_service_but_keeps_the_checkpoints(plane: Plane) -> None:
    plane.kubectl("delete", "trainingjob/digits", "--timeout=60s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = {p["metadata"]["name"] for p in plane.get("pods")["items"]}
        services = {s["metadata"]["name"] for s in plane.get("services")["items"]}
        if "digits-0" not in names and "digits-workers" not in services:
            break
        time.sleep(0.5)
    assert "digits-0" not in names and "digits-workers" not in services, plane.logs()
    # retainOnDelete defaults to true: a new job with the same name resumes from these checkpoints.
    assert plane.get("pvc", "digits-checkpoints")["metadata"]["name"] == "digits-checkpoints"
    # The registered model outlives the job that trained it.
    assert plane.get("modelversion", "digits-1")["spec"]["model"] == "digits"


def wait_for(plane: Plane, what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}\n{plane.logs()}")


def test_bad_data_fails_at_once_with_the_workers_reason(plane: Plane) -> None:
    job = quickstart(epochs=1)
    job["metadata"]["name"] = "too-few-rows"
    job["spec"]["dataValidation"] = {"minRows": 100000}  # digits has 1,797
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    plane.kubectl(
        "wait", "trainingjob/too-few-rows", "--for=condition=Stalled", "--timeout=120s", timeout=130
    )
    st = plane.get("trainingjob", "too-few-rows")["status"]
    assert st["phase"] == "Failed" and st["restarts"] == 0
    assert st["failure"]["reason"] == "DataValidationFailed" and st["failure"]["exitCode"] == 65
    assert "minRows" in st["failure"]["message"] or "rows" in st["failure"]["message"]


def test_a_deleted_pod_restarts_the_run_which_resumes(plane: Plane) -> None:
    job = quickstart(epochs=400)
    job["metadata"]["name"] = "long"
    job["spec"]["checkpoint"]["intervalSeconds"] = 5
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))

    def stepping() -> Any:
        st = plane.get("trainingjob", "long").get("status", {})
        return st if st.get("phase") == "Running" and (st.get("progress") or {}).get("step", 0) > 0 else None

    before = wait_for(plane, "the job to run and report progress", stepping)
    assert before["progress"]["totalSteps"] > before["progress"]["step"]
    plane.kubectl("delete", "pod", "long-0", "--wait=false")
    after = wait_for(
        plane,
        "the job to run again after the restart",
        lambda: (lambda st: st if st.get("restarts") == 1 and st.get("phase") == "Running" else None)(
            plane.get("trainingjob", "long").get("status", {})
        ),
    )
    assert after["failure"]["pod"] == "long-0"
    restarting = next(c for c in after["conditions"] if c["type"] == "Restarting")
    assert restarting["status"] == "False"
    pod = plane.get("pod", "long-0")
    assert pod["metadata"]["annotations"]["modelops.dev/attempt"] == "1"
    # The new attempt continues from the checkpoint the deleted pod wrote on SIGTERM: it starts at or
    # after the step the job had reached before, never back at the beginning.
    log = wait_for(
        plane,
        "the new attempt to resume",
        lambda: (lambda text: text if "resumed from checkpoint" in text else None)(
            plane.kubectl("logs", "long-0")
        ),
    )
    resumed = re.search(r"resumed from checkpoint step (\d+)", log)
    assert resumed is not None, log
    assert int(resumed.group(1)) >= before["progress"]["step"], (resumed.group(0), before["progress"])
    progressed = wait_for(
        plane,
        "steps to advance after the restart",
        lambda: (
            lambda st: st if (st.get("progress") or {}).get("step", 0) > int(resumed.group(1)) else None
        )(plane.get("trainingjob", "long").get("status", {})),
    )
    assert progressed["restarts"] == 1
    # Stop burning CPU: suspending removes the pods.
    plane.kubectl(
        "patch", "trainingjob/long", "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":true}}}'
    )
    plane.kubectl("wait", "trainingjob/long", "--for=condition=Suspended", "--timeout=60s")
    wait_for(
        plane,
        "the pods to go",
        lambda: not plane.get("pods", "-l", "modelops.dev/trainingjob=long")["items"],
    )


def test_two_nodes_train_together_through_the_headless_service(plane: Plane) -> None:
    job = quickstart(epochs=3)
    job["metadata"]["name"] = "ddp"
    job["spec"]["distributed"] = {"nodes": 2}
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    plane.kubectl("wait", "trainingjob/ddp", "--for=condition=Succeeded", "--timeout=180s", timeout=190)
    st = plane.get("trainingjob", "ddp")["status"]
    assert st["modelVersion"] == "digits-2"  # the next version of model "digits"
    pods = {
        p["metadata"]["name"]: p for p in plane.get("pods", "-l", "modelops.dev/trainingjob=ddp")["items"]
    }
    assert sorted(pods) == ["ddp-0", "ddp-1"]
    assert {p["spec"]["nodeName"] for p in pods.values()} == {"local-node-1", "local-node-2"}
    results = {
        name: json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
        for name, p in pods.items()
    }
    # One world of two ranks that met at ddp-0.ddp-workers.default.svc.cluster.local; only rank 0 exports.
    assert results["ddp-0"]["worldSize"] == 2 and results["ddp-1"]["worldSize"] == 2
    assert "artifact" in results["ddp-0"] and "artifact" not in results["ddp-1"]
    assert st["progress"]["step"] == results["ddp-0"]["steps"]


def test_every_call_the_operator_made_is_granted_by_its_rbac_rules(plane: Plane) -> None:
    """The audit log of this plane against `permissions.RULES` (which the chart's ClusterRole equals)."""
    calls = operator_calls(plane.dir)
    # The tests above made the operator create and delete pods and register a ModelVersion.
    assert {
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("modelops.dev", "modelversions", "create"),
    } <= calls
    assert ungranted(calls) == []
