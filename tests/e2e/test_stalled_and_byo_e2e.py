"""What a user sees on the local plane when something only they can fix is missing, and their own code.

One plane for the module, driven with the real kubectl:

- bring-your-own training code: a Python script from a ConfigMap, run by the worker image's Python,
  reports progress and checkpoints on the metrics port, writes extra metrics and a TorchScript artifact
  that becomes a Ready ModelVersion carrying those metrics;
- a TrainingJob whose dataset claim does not exist is Stalled/ClaimNotFound at once, and trains as
  soon as the claim is created (no re-apply);
- a TrainingJob whose pod the API server refuses (a ServiceAccount that does not exist) is
  Stalled/ChildRejected with the server's message; once the account exists its pod waits on a missing
  Secret (SecretNotFound, from the kubelet); once the Secret exists it runs;
- a ModelVersion whose artifact claim does not exist is Stalled/ClaimNotFound, and Ready once it does.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from localplane import Plane, operator_calls, ungranted

pytestmark = pytest.mark.e2e

WORKER = "ghcr.io/modelops/worker:e2e"
# Within one reconcile: the change handler runs at once, the sync timer every 3 s; slack for a
# loaded 2-core machine.
ONE_RECONCILE = 30.0

TRAIN_SCRIPT = r'''
"""A user's own training code: plain PyTorch, the modelops contract by hand (docs/trainingjob.md)."""
import hashlib, json, os, time
import torch
from prometheus_client import CollectorRegistry, Gauge, start_http_server

registry = CollectorRegistry()
gauge = lambda name: Gauge(name, name, registry=registry)  # noqa: E731
step_g, total_g, loss_g = gauge("modelops_training_step"), gauge("modelops_training_total_steps"), gauge("modelops_training_loss")
ckpt_step, ckpt_time = gauge("modelops_training_checkpoint_step"), gauge("modelops_training_checkpoint_timestamp_seconds")
start_http_server(int(os.environ["MODELOPS_METRICS_PORT"]), registry=registry)

lr = float(os.environ["LEARNING_RATE"])
steps = int(os.environ.get("STEPS", "40"))
torch.manual_seed(0)
x = torch.randn(256, 4)
y = (x[:, 0] + x[:, 1] > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
opt = torch.optim.SGD(model.parameters(), lr=lr)
total_g.set(steps)
ckpt_dir = os.environ["MODELOPS_CHECKPOINT_DIR"]
for step in range(1, steps + 1):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    step_g.set(step)
    loss_g.set(float(loss))
    if step % 10 == 0:
        torch.save(model.state_dict(), os.path.join(ckpt_dir, f"my-ckpt-{step}.pt"))
        ckpt_step.set(step)
        ckpt_time.set(time.time())
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.3")))

accuracy = float((model(x).argmax(1) == y).float().mean())
out_dir = os.environ["MODELOPS_OUTPUT_DIR"]
os.makedirs(out_dir, exist_ok=True)
path = os.path.join(out_dir, "model.pt")
description = json.dumps({"numFeatures": 4, "numClasses": 2})
torch.jit.save(torch.jit.script(model.eval()), path, _extra_files={"modelops.json": description})
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
result = {
    "status": "Succeeded",
    "reason": "Succeeded",
    "message": f"my own loop: {steps} steps",
    "steps": steps,
    "trainLoss": float(loss),
    "metrics": {"accuracy": accuracy, "loss": float(loss), "margin_score": 0.75, "bad-name": 1},
    "hyperparameters": {"lr": lr, "steps": steps, "optimizer": "sgd"},
    "checkpoint": {"step": steps, "path": f"my-ckpt-{steps}.pt",
                   "sha256": hashlib.sha256(open(os.path.join(ckpt_dir, f"my-ckpt-{steps}.pt"), "rb").read()).hexdigest()},
    "artifact": {"path": "model.pt", "sha256": digest, "sizeBytes": os.path.getsize(path), "format": "torchscript"},
    "myOwnKey": "the contract does not know this one",
}
with open(os.environ.get("MODELOPS_TERMINATION_LOG", "/dev/termination-log"), "w") as f:
    f.write(json.dumps(result))
'''


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("stalled") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        lp.kubectl(
            "create", "configmap", "train-script", f"--from-literal=train.py={TRAIN_SCRIPT}",
            "--from-literal=lr=0.5",
        )  # fmt: skip
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def wait(plane: Plane, what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{plane.logs()}")


def stalled_with(plane: Plane, kind: str, name: str, reason: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        obj = plane.get(kind, name)
        stalled = condition(obj, "Stalled")
        return obj if stalled.get("status") == "True" and stalled.get("reason") == reason else None

    return check


def byo_job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "image": WORKER,
            "command": ["python", "/code/train.py"],
            "env": [
                {
                    "name": "LEARNING_RATE",
                    "valueFrom": {"configMapKeyRef": {"name": "train-script", "key": "lr"}},
                },
                *spec.pop("env", []),
            ],
            "volumes": [{"name": "code", "configMap": {"name": "train-script"}}],
            "volumeMounts": [{"name": "code", "mountPath": "/code", "readOnly": True}],
            **spec,
        },
    }


def test_own_training_code_reports_progress_checkpoints_metrics_and_registers_its_model(plane: Plane) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps(byo_job("byo")))

    def checkpoint_while_running() -> dict[str, Any] | None:
        st = plane.get("trainingjob", "byo").get("status", {})
        return st if st.get("phase") == "Running" and (st.get("checkpoint") or {}).get("step") else None

    running = wait(plane, "a checkpoint step in status while training", checkpoint_while_running, 120)
    assert running["checkpoint"]["step"] % 10 == 0 and running["checkpoint"]["time"].endswith("Z")
    assert running["progress"]["totalSteps"] == 40
    wide = plane.kubectl("get", "trainingjob", "byo", "-o", "wide")
    assert "CHECKPOINT" in wide.splitlines()[0]

    plane.kubectl("wait", "trainingjob/byo", "--for=condition=Succeeded", "--timeout=120s", timeout=130)
    st = plane.get("trainingjob", "byo")["status"]
    # The extra metric is kept, the badly named one left out (with a Warning), the unknown key ignored.
    assert st["metrics"]["margin_score"] == 0.75 and st["metrics"]["accuracy"] > 0.8, st
    assert "bad-name" not in st["metrics"]
    assert st["hyperparameters"] == {"lr": 0.5, "steps": 40, "optimizer": "sgd"}
    assert st["checkpoint"]["step"] == 40 and st["checkpoint"]["path"] == "my-ckpt-40.pt", "from the result"
    events = [e["reason"] for e in plane.get("events")["items"] if e["involvedObject"]["name"] == "byo"]
    assert "MetricsIgnored" in events

    plane.kubectl("wait", "modelversion/byo-1", "--for=condition=Ready", "--timeout=120s", timeout=130)
    mv = plane.get("modelversion", "byo-1")
    assert mv["status"]["metrics"]["margin_score"] == 0.75
    assert mv["status"]["artifact"]["format"] == "torchscript"
    # Lineage: only what the run said it used, not the CRD's defaults for the built-in recipe.
    assert mv["status"]["lineage"]["hyperparameters"] == {"lr": 0.5, "steps": 40, "optimizer": "sgd"}


def test_missing_dataset_claim_stalls_at_once_and_the_job_trains_once_it_exists(plane: Plane) -> None:
    job = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "tabular"},
        "spec": {
            "model": {"architecture": "mlp", "hiddenSize": 32},
            "dataset": {"file": {"claimName": "tabular-data", "path": "iris.csv", "labelColumn": "label"}},
            "hyperparameters": {"epochs": 20, "batchSize": 16, "learningRate": 0.02},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    obj = wait(plane, "Stalled/ClaimNotFound", stalled_with(plane, "trainingjob", "tabular", "ClaimNotFound"),
               ONE_RECONCILE)  # fmt: skip
    message = condition(obj, "Stalled")["message"]
    assert '"tabular-data"' in message and "spec.dataset.file.claimName" in message
    assert obj["status"]["phase"] == "Pending"
    assert not [p for p in plane.get("pods")["items"] if p["metadata"]["name"].startswith("tabular-")]

    # The user creates the claim (its directory filled first: the plane binds claims to DIR/volumes/ns/name).
    data = plane.dir / "volumes" / "default" / "tabular-data"
    data.mkdir(parents=True, exist_ok=True)
    _write_iris(data / "iris.csv")
    plane.kubectl("apply", "-f", "-", input=json.dumps(_claim("tabular-data")))
    plane.kubectl("wait", "trainingjob/tabular", "--for=condition=Succeeded", "--timeout=180s", timeout=190)
    st = plane.get("trainingjob", "tabular")["status"]
    assert st["metrics"]["accuracy"] > 0.6, st  # it really trained on the claim's file (chance: 0.33)
    assert condition(plane.get("trainingjob", "tabular"), "Stalled").get("status") != "True"


def test_refused_pod_then_missing_secret_each_say_why_and_clear_by_themselves(plane: Plane) -> None:
    secret_env = {"name": "HUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}
    job = byo_job(
        "refused", serviceAccountName="trainer", env=[secret_env, {"name": "STEPS", "value": "200"}]
    )
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    obj = wait(plane, "Stalled/ChildRejected", stalled_with(plane, "trainingjob", "refused", "ChildRejected"),
               ONE_RECONCILE)  # fmt: skip
    message = condition(obj, "Stalled")["message"]
    # The API server's own words (the ServiceAccount admission plugin's 403).
    assert 'serviceaccount "trainer" not found' in message and "403" in message, message
    log = (plane.dir / "logs" / "operator.log").read_text()
    assert "Traceback" not in log, "an expected refusal is one line, not a traceback"

    plane.kubectl("create", "serviceaccount", "trainer")
    obj = wait(plane, "Stalled/SecretNotFound", stalled_with(plane, "trainingjob", "refused", "SecretNotFound"),
               ONE_RECONCILE + 30)  # fmt: skip
    message = condition(obj, "Stalled")["message"]
    assert 'secret "hub-token" not found' in message and "CreateContainerConfigError" in message, message

    plane.kubectl("create", "secret", "generic", "hub-token", "--from-literal=token=s3cr3t")
    wait(plane, "the job to run", lambda: plane.get("trainingjob", "refused")["status"].get("phase") == "Running",
         90)  # fmt: skip
    assert condition(plane.get("trainingjob", "refused"), "Stalled").get("status") != "True"
    assert "s3cr3t" not in json.dumps(plane.get("trainingjob", "refused")), "no secret value in status"
    plane.kubectl("delete", "trainingjob", "refused", "--wait=false")


def test_missing_artifact_claim_stalls_the_version_until_the_claim_exists(plane: Plane) -> None:
    source = plane.get("pv", plane.get("pvc", "byo-checkpoints")["spec"]["volumeName"])
    artifact = Path(source["spec"]["hostPath"]["path"]) / "output" / "model.pt"
    target = plane.dir / "volumes" / "default" / "shelf"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(artifact, target / "model.pt")
    mv = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "shelved"},
        "spec": {"model": "shelved", "source": {"uri": "pvc://shelf/model.pt"}, "format": "torchscript"},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(mv))
    obj = wait(plane, "Stalled/ClaimNotFound", stalled_with(plane, "modelversion", "shelved", "ClaimNotFound"),
               ONE_RECONCILE)  # fmt: skip
    assert '"shelf"' in condition(obj, "Stalled")["message"]

    plane.kubectl("apply", "-f", "-", input=json.dumps(_claim("shelf")))
    plane.kubectl("wait", "modelversion/shelved", "--for=condition=Ready", "--timeout=120s", timeout=130)
    assert plane.get("modelversion", "shelved")["status"]["artifact"]["format"] == "torchscript"
    # The lookups behind all this (claims by name, FailedMount events) are granted by the chart's RBAC.
    assert ungranted(operator_calls(plane.dir)) == []


def _claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def _write_iris(path: Path) -> None:
    from sklearn.datasets import load_iris

    data = load_iris()
    lines = [",".join([f"f{i}" for i in range(4)] + ["label"])]
    lines += [
        ",".join([*(str(v) for v in row), str(int(t))]) for row, t in zip(data.data, data.target, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
