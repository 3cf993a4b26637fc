"""An InferenceService on the local plane, driven with the real kubectl: train, verify, serve, roll out.

One plane for the module. A short quickstart TrainingJob registers `digits-1`, the ModelVersion
controller verifies it, and the InferenceService serves it: V2 predictions through the Service are
right for held-out digits, the HPA scales out under load made here and back in after. Then two
canaries: a TorchScript regression model (not a classifier; its signature declared in the
ModelVersion) that passes the verifier's zero-input smoke test but fails on real inputs is rolled
back automatically, and the trained artifact registered again as another version is promoted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import Plane, operator_calls, ungranted

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

NAME = "digits-classifier"
ANALYSIS = {"intervalSeconds": 5, "failureLimit": 2, "minRequests": 5, "minSuccessRate": 0.95}

# Held-out digits exactly as the TrainingJob split them (seed 7, validationSplit 0.2).
_HELD_OUT = """
import json
from modelops.api.trainingjob import DatasetSpec
from modelops_worker import data
s = data.split(data.load(DatasetSpec(builtin="digits")), 0.2, 7)
print(json.dumps({"x": s.x_val[:40].tolist(), "y": s.y_val[:40].tolist()}))
"""

# A TorchScript regression model (not a classifier: one output `y`, no classes, no model card) that
# answers zeros (the verifier's and the server's warm-up input) and fails on anything else: it passes
# verification of its declared signature and readiness, then every real request is a 500. Rollback on
# errors must work for any model, not only for our classifiers.
_BROKEN = """
import sys, torch
class Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.abs().sum() > 0):
            raise RuntimeError("this model only knows zeros")
        return torch.zeros(x.shape[0], 1)
torch.jit.save(torch.jit.script(Broken()), sys.argv[1])
"""
BROKEN_SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}


def wait_for(what: str, check: Callable[[], Any], plane: Plane, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{plane.logs()}")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("serving") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


@pytest.fixture(scope="module")
def held_out() -> dict[str, list[Any]]:
    done = subprocess.run([sys.executable, "-c", _HELD_OUT], capture_output=True, text=True, check=True)
    loaded: dict[str, list[Any]] = json.loads(done.stdout)
    return loaded


def infer(address: str, rows: list[list[float]], *, request_id: str = "r") -> tuple[int, dict[str, Any]]:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32", "data": rows}],
    }
    request = urllib.request.Request(
        f"http://{address}/v2/models/{NAME}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def accuracy(address: str, held_out: dict[str, list[Any]]) -> float:
    code, answer = infer(address, held_out["x"], request_id="accuracy")
    assert code == 200, answer
    assert answer["id"] == "accuracy" and answer["model_name"] == NAME
    predicted = next(o for o in answer["outputs"] if o["name"] == "predicted_class")
    assert predicted["datatype"] == "INT64" and predicted["shape"] == [len(held_out["y"])]
    hits = sum(int(p == y) for p, y in zip(predicted["data"], held_out["y"], strict=True))
    return hits / len(held_out["y"])


class Load:
    """Requests through the Service from a few threads until stopped; counts answers by status code."""

    def __init__(self, address: str, row: list[float], threads: int) -> None:
        self.address, self.row = address, row
        self.codes: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                code, _ = infer(self.address, [self.row])
            except OSError:
                code = 0
            with self._lock:
                self.codes[code] = self.codes.get(code, 0) + 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def isvc_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(
        (REPO / "examples/quickstart/30-inferenceservice.yaml").read_text()
    )
    manifest["spec"]["resources"] = {"cpu": "250m", "memory": "768Mi"}
    manifest["spec"]["autoscaling"] = {"metric": "rps", "target": 5, "scaleDownStabilizationSeconds": 0}
    return manifest


def service_address(plane: Plane) -> str:
    ip = plane.get("service", NAME)["spec"]["clusterIP"]
    return f"{ip}:80"


def test_a_trained_version_serves_right_predictions_and_scales_with_load(
    plane: Plane, held_out: dict[str, list[Any]]
) -> None:
    job = yaml.safe_load((REPO / "examples/quickstart/10-trainingjob.yaml").read_text())
    job["spec"]["hyperparameters"]["epochs"] = 6
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    # Applied at once, as the quickstart does: it waits for its ModelVersion, creating nothing.
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc_manifest()))
    waiting = wait_for(
        "the InferenceService to say it waits for digits-1",
        lambda: plane.get("inferenceservice", NAME).get("status", {}).get("conditions"),
        plane,
    )
    assert any(c["type"] == "Ready" and c["status"] == "False" for c in waiting)
    plane.kubectl("wait", "trainingjob/digits", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    plane.kubectl("wait", "modelversion/digits-1", "--for=condition=Ready", "--timeout=120s", timeout=130)
    plane.kubectl("wait", f"inferenceservice/{NAME}", "--for=condition=Ready", "--timeout=180s", timeout=190)

    st = plane.get("inferenceservice", NAME)["status"]
    mv = plane.get("modelversion", "digits-1")
    assert st["stable"]["modelVersion"] == "digits-1" and st["stable"]["version"] == 1
    assert st["stable"]["sha256"] == mv["status"]["artifact"]["sha256"]
    assert st["url"] == f"http://{NAME}.default.svc.cluster.local/v2/models/{NAME}"
    assert st["trafficSummary"] == "100/0" and st["readyReplicas"] >= 1
    table = plane.kubectl("get", "misvc", NAME)
    for column in ("MODEL", "VERSION", "CANARY", "TRAFFIC", "READY", "URL"):
        assert column in table
    assert "100/0" in table and "digits" in table

    address = service_address(plane)
    assert accuracy(address, held_out) >= 0.85

    # Load through the Service: the HPA (rps per pod) scales the stable track out, then back in.
    def replicas() -> int:
        return int(plane.get("deployment", f"{NAME}-stable")["spec"].get("replicas") or 1)

    with Load(address, held_out["x"][0], threads=6) as load:
        wait_for("the HPA to scale out under load", lambda: replicas() > 1, plane, timeout=120)
    assert load.codes.get(200, 0) > 50, load.codes
    wait_for("the HPA to scale back in", lambda: replicas() == 1, plane, timeout=120)
    hpa = plane.get("hpa", NAME)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "modelops_serving_requests_total"


def register(
    plane: Plane, name: str, version: int, uri: str, signature: dict[str, Any] | None = None
) -> None:
    mv: dict[str, Any] = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {"model": "digits", "version": version, "source": {"uri": uri}, "format": "torchscript"},
    }
    if signature is not None:
        mv["spec"]["signature"] = signature
    plane.kubectl("apply", "-f", "-", input=json.dumps(mv))
    plane.kubectl("wait", f"modelversion/{name}", "--for=condition=Ready", "--timeout=120s", timeout=130)


def history(plane: Plane) -> list[dict[str, Any]]:
    return list(plane.get("inferenceservice", NAME)["status"].get("rolloutHistory") or [])


def test_a_broken_canary_is_rolled_back_automatically(plane: Plane, held_out: dict[str, list[Any]]) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "uploads"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(claim))
    plane.kubectl("wait", "pvc/uploads", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
    target = plane.dir / "volumes" / "default" / "uploads" / "broken.pt"
    # TorchScript compiles from the source file, so the module is written out first.
    script = plane.dir / "broken_model.py"
    script.write_text(_BROKEN)
    done = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    register(plane, "digits-broken", 50, "pvc://uploads/broken.pt", BROKEN_SIGNATURE)
    assert plane.get("modelversion", "digits-broken")["status"]["signature"] == BROKEN_SIGNATURE

    canary = {"modelRef": {"model": "digits", "version": 50}, "trafficPercent": 50, "analysis": ANALYSIS}
    # One stable pod from here on (the canary tests' load must not scale it): 50% is one canary pod.
    patch = {"spec": {"maxReplicas": 1, "canary": canary}}
    plane.kubectl("patch", "misvc", NAME, "--type=merge", "-p", json.dumps(patch))
    address = service_address(plane)
    with Load(address, held_out["x"][1], threads=2) as load:
        record = wait_for(
            "the broken canary to be rolled back",
            lambda: next((r for r in history(plane) if r["outcome"] == "RolledBack"), None),
            plane,
            timeout=150,
        )
    assert load.codes.get(500, 0) > 0, load.codes  # the canary really got traffic and failed it
    assert record["modelVersion"] == "digits-broken" and "success rate" in record["reason"]
    isvc = plane.get("inferenceservice", NAME)
    st = isvc["status"]
    assert "canary" not in st and st["stable"]["modelVersion"] == "digits-1"
    assert st["trafficSummary"] == "100/0"
    rolled = next(c for c in st["conditions"] if c["type"] == "CanaryProgressing")
    assert rolled["reason"] == "RolledBack" and "until spec.canary changes" in rolled["message"]
    assert isvc["spec"]["canary"]["modelRef"]["version"] == 50  # the user's spec is never edited
    events = plane.get("events", "--field-selector", f"involvedObject.name={NAME}")["items"]
    assert any(e["reason"] == "CanaryRolledBack" and e["type"] == "Warning" for e in events)
    wait_for(
        "the canary Deployment to go",
        lambda: f"{NAME}-canary" not in plane.kubectl("get", "deployments", "-o", "name"),
        plane,
        timeout=30,
    )
    assert accuracy(address, held_out) >= 0.85


def test_a_good_canary_is_promoted(plane: Plane, held_out: dict[str, list[Any]]) -> None:
    uri = plane.get("modelversion", "digits-1")["status"]["artifact"]["uri"]
    register(plane, "digits-again", 60, uri)
    canary = {"modelRef": {"model": "digits", "version": 60}, "steps": [50], "analysis": ANALYSIS}
    replace = [{"op": "replace", "path": "/spec/canary", "value": canary}]
    plane.kubectl("patch", "misvc", NAME, "--type=json", "-p", json.dumps(replace))
    address = service_address(plane)
    with Load(address, held_out["x"][2], threads=2) as load:
        record = wait_for(
            "the good canary to be promoted",
            lambda: next((r for r in history(plane) if r["outcome"] == "Promoted"), None),
            plane,
            timeout=150,
        )
    assert load.codes.get(200, 0) > 0 and not any(code >= 500 for code in load.codes), load.codes
    assert record["modelVersion"] == "digits-again" and record["replaced"] == "digits-1"
    plane.kubectl("wait", f"inferenceservice/{NAME}", "--for=condition=Ready", "--timeout=120s", timeout=130)
    st = plane.get("inferenceservice", NAME)["status"]
    assert st["stable"]["modelVersion"] == "digits-again" and st["stable"]["version"] == 60
    assert [r["outcome"] for r in st["rolloutHistory"]] == ["Deployed", "RolledBack", "Promoted"]
    wait_for(
        "the promoted canary's Deployment to go once the stable track serves it",
        lambda: f"{NAME}-canary" not in plane.kubectl("get", "deployments", "-o", "name"),
        plane,
        timeout=90,
    )
    assert accuracy(address, held_out) >= 0.85


def test_a_crash_looping_server_is_not_ready_and_says_why(plane: Plane) -> None:
    """The artifact changed in the model store after verification: the serving pod's fetch refuses it, and
    the status says so. (Serving reads the store, never the source: docs/storage.md.)"""
    sha = plane.get("modelversion", "digits-broken")["status"]["artifact"]["sha256"]
    stored = plane.dir / "volumes" / "default" / "modelops-model-store" / "sha256" / sha
    stored.chmod(0o644)
    stored.write_bytes(b"not the verified file")
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "tampered"},
        "spec": {
            "modelRef": {"model": "digits", "version": 50},
            "resources": {"cpu": "100m", "memory": "512Mi"},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))

    def stalled() -> dict[str, Any] | None:
        conditions = plane.get("inferenceservice", "tampered").get("status", {}).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        return ready if ready and ready["reason"] == "ArtifactDigestMismatch" else None

    ready = wait_for(
        "the InferenceService to report the server's ArtifactDigestMismatch", stalled, plane, 120
    )
    assert ready["status"] == "False" and "sha256" in ready["message"]
    conditions = plane.get("inferenceservice", "tampered")["status"]["conditions"]
    assert next(c for c in conditions if c["type"] == "Stalled")["status"] == "True"
    plane.kubectl("delete", "inferenceservice", "tampered", "--wait=true", timeout=90)


def test_every_call_the_operator_made_is_granted_by_its_rbac_rules(plane: Plane) -> None:
    """The audit log of this plane against `permissions.RULES` (which the chart's ClusterRole equals)."""
    calls = operator_calls(plane.dir)
    # The serving controller's own calls happened above: its children were applied, listed, deleted.
    assert {("apps", "deployments", "list"), ("apps", "deployments", "delete")} <= calls, sorted(calls)
    assert ungranted(calls) == []
