"""The model store on object storage: a real S3-compatible server (moto, IAM auth on) and the local plane.

The operator runs with `MODELOPS_MODEL_STORE_URI=s3://<bucket>/models` and the credentials Secret
`model-store-creds` (what the chart's `modelStore.uri`/`modelStore.credentialsSecret` set). A version
verified from a claim is published into the bucket under its sha256; its serving pod fetches it from
there with the Secret mounted only into the init container. The object is then changed in the bucket:
the running pod keeps serving, a new pod's fetch refuses the object (exit 65, ArtifactDigestMismatch,
which the InferenceService reports), and a re-verification publishes it again, after which a new pod
serves. Then a version whose source is itself in the bucket (`spec.source.uri: s3://...`): the object
changed after verification fails re-verification with ArtifactDigestMismatch, while the serving pods,
a new one included, keep serving the verified bytes from the store. No credential value ever appears
in the plane's logs, a status or an event.
"""

from __future__ import annotations

import base64
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from s3server import S3Server

pytestmark = pytest.mark.e2e

NAME = "tiny-s3"
PREFIX = "models"
SECRET = "model-store-creds"

_MODEL = """
import sys, torch
class Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 3.0
torch.jit.save(torch.jit.script(Tiny()), sys.argv[1])
"""
SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 2]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}],
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
def s3() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("modelstore-s3") / "plane")
    lp.env["MODELOPS_MODEL_STORE_URI"] = f"s3://{s3.bucket}/{PREFIX}"
    lp.env["MODELOPS_MODEL_STORE_CREDENTIALS_SECRET"] = SECRET
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def ready_pods(plane: Plane, name: str = NAME) -> list[dict[str, Any]]:
    items = plane.get("pods", "-l", f"modelops.dev/inferenceservice={name}")["items"]
    return [
        p
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]


def infer(plane: Plane, name: str = NAME) -> int:
    import urllib.error
    import urllib.request

    ip = plane.get("service", name)["spec"]["clusterIP"]
    body = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2]]}]}
    request = urllib.request.Request(
        f"http://{ip}:80/v2/models/{name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
            assert answer["outputs"][0]["data"] == [3.0, 6.0], answer
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_verified_version_is_published_into_the_bucket_and_served_from_it(
    plane: Plane, s3: S3Server
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in s3.secret_data(s3.admin).items()},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(secret))
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "uploads"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(claim))
    plane.kubectl("wait", "pvc/uploads", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
    target = plane.dir / "volumes" / "default" / "uploads" / "model.pt"
    script = plane.dir / "tiny_model.py"
    script.write_text(_MODEL)
    done = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    mv = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "tiny-s3-1"},
        "spec": {
            "model": NAME,
            "version": 1,
            "source": {"uri": "pvc://uploads/model.pt"},
            "signature": SIGNATURE,
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(mv))
    plane.kubectl("wait", "modelversion/tiny-s3-1", "--for=condition=Ready", "--timeout=150s", timeout=160)
    sha = hashlib.sha256(target.read_bytes()).hexdigest()
    artifact = plane.get("modelversion", "tiny-s3-1")["status"]["artifact"]
    assert artifact["storeUri"] == f"s3://{s3.bucket}/{PREFIX}/sha256/{sha}"
    assert s3.get(f"{PREFIX}/sha256/{sha}") == target.read_bytes()
    assert s3.keys(f"{PREFIX}/") == [f"{PREFIX}/sha256/{sha}"]  # no staging object left
    # No store claim in object-store mode.
    assert "modelops-model-store" not in plane.kubectl("get", "pvc", "-o", "name")

    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "modelRef": {"model": NAME, "version": 1},
            "minReplicas": 1,
            "maxReplicas": 1,
            "resources": {"cpu": "100m", "memory": "512Mi"},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.kubectl("wait", f"inferenceservice/{NAME}", "--for=condition=Ready", "--timeout=180s", timeout=190)
    (pod,) = ready_pods(plane)
    assert not any("persistentVolumeClaim" in v for v in pod["spec"]["volumes"])
    assert infer(plane) == 200


def test_an_object_changed_in_the_bucket_stops_new_pods_while_the_running_one_serves(
    plane: Plane, s3: S3Server
) -> None:
    sha = plane.get("modelversion", "tiny-s3-1")["status"]["artifact"]["sha256"]
    key = f"{PREFIX}/sha256/{sha}"
    good = s3.get(key)
    s3.put(key, b"changed in the bucket after it was published")
    (running,) = ready_pods(plane)
    # A second replica (as the HPA would add) must fetch the object now.
    plane.kubectl(
        "patch",
        "misvc",
        NAME,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"minReplicas": 2, "maxReplicas": 2}}),
    )

    def refused() -> dict[str, Any] | None:
        for pod in plane.get("pods", "-l", f"modelops.dev/inferenceservice={NAME}")["items"]:
            for cs in pod.get("status", {}).get("initContainerStatuses") or []:
                for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                    done = state.get("terminated") or {}
                    if done.get("exitCode") == 65:
                        return dict(json.loads(done["message"]))
        return None

    result = wait_for("the new pod's fetch to refuse the changed object", refused, plane, 120)
    assert result["reason"] == "ArtifactDigestMismatch" and sha in result["message"]
    assert running["metadata"]["name"] in {p["metadata"]["name"] for p in ready_pods(plane)}
    assert infer(plane) == 200

    def reported() -> bool:
        conditions = plane.get("inferenceservice", NAME).get("status", {}).get("conditions") or []
        return any("ArtifactDigestMismatch" in f"{c.get('reason')} {c.get('message')}" for c in conditions)

    wait_for("the InferenceService to name the mismatch", reported, plane, 90)

    # A re-verification publishes the verified bytes again (the stored object is hashed, found wrong,
    # replaced), and the second replica comes up by itself.
    plane.kubectl(
        "annotate", "modelversion", "tiny-s3-1", "modelops.dev/reverify=after-bucket-change", "--overwrite"
    )
    wait_for("the object to be published again", lambda: s3.get(key) == good, plane, 150)
    wait_for("both replicas to be ready", lambda: len(ready_pods(plane)) == 2, plane, 180)
    assert infer(plane) == 200


def test_an_s3_source_changed_after_verification_fails_reverification_while_pods_serve_from_the_store(
    plane: Plane, s3: S3Server
) -> None:
    """The source itself in the bucket (spec.source.uri s3://...): changed after verification, a
    re-verification fails with ArtifactDigestMismatch, and the serving pods, old and new, keep serving
    the verified bytes from the model store."""
    source_key = "sources/tiny.pt"
    model = plane.dir / "volumes" / "default" / "uploads" / "model.pt"
    s3.put(source_key, model.read_bytes())
    name = "tiny-src"
    mv = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{name}-1"},
        "spec": {
            "model": name,
            "version": 1,
            "source": {"uri": f"s3://{s3.bucket}/{source_key}", "credentialsSecret": {"name": SECRET}},
            "signature": SIGNATURE,
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(mv))
    plane.kubectl("wait", f"modelversion/{name}-1", "--for=condition=Ready", "--timeout=150s", timeout=160)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert plane.get("modelversion", f"{name}-1")["status"]["artifact"]["storeUri"].endswith(f"/sha256/{sha}")
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "modelRef": {"model": name, "version": 1},
            "minReplicas": 1,
            "maxReplicas": 1,
            "resources": {"cpu": "100m", "memory": "512Mi"},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.kubectl("wait", f"inferenceservice/{name}", "--for=condition=Ready", "--timeout=180s", timeout=190)
    assert infer(plane, name) == 200

    s3.put(source_key, b"changed in the bucket after verification")
    plane.kubectl(
        "annotate", "modelversion", f"{name}-1", "modelops.dev/reverify=bucket-changed", "--overwrite"
    )

    def verified() -> dict[str, Any] | None:
        conditions = plane.get("modelversion", f"{name}-1").get("status", {}).get("conditions") or []
        cond = next((c for c in conditions if c["type"] == "Verified"), None)
        return cond if cond and cond["status"] == "False" else None

    cond = wait_for("the re-verification to fail", verified, plane, 150)
    assert cond["reason"] == "ArtifactDigestMismatch", cond
    assert infer(plane, name) == 200
    # A new pod still comes up: it fetches the verified bytes from the store, not the changed source.
    plane.kubectl(
        "patch",
        "misvc",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"minReplicas": 2, "maxReplicas": 2}}),
    )
    wait_for("a second replica from the store", lambda: len(ready_pods(plane, name)) == 2, plane, 180)
    assert infer(plane, name) == 200


def test_no_credential_value_leaks_and_every_call_is_granted(plane: Plane, s3: S3Server) -> None:
    secret_value = s3.admin.secret_access_key
    logs = "".join(p.read_text(errors="replace") for p in sorted((plane.dir / "logs").glob("*.log")))
    everything = logs + plane.kubectl("get", "modelversions,inferenceservices,events,pods", "-o", "json")
    assert "modelops-worker" in everything  # the logs and objects were really read
    assert secret_value not in everything
    assert ungranted(operator_calls(plane.dir)) == []
