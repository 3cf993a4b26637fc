"""The model store on the local plane: serving pods fetch the verified artifact by digest, never mount its source.

One plane with two nodes for the module, the operator's embedded default store (a claim per
namespace, `pvc://modelops-model-store`). A TorchScript model on a claim of its own is registered and
verified; verification publishes it into the store under its sha256. An InferenceService with three
replicas then serves it from pods spread over both nodes, none of which mounts the source claim: each
pod's init container copied the object into its own emptyDir and checked its digest. The source claim
is then deleted, and the version still serves, a replacement pod included.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from localplane import Plane, operator_calls, ungranted

pytestmark = pytest.mark.e2e

NAME = "tiny"
SOURCE_CLAIM = "uploads"
STORE_CLAIM = "modelops-model-store"

_MODEL = """
import sys, torch
class Tiny(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 + 1.0
torch.jit.save(torch.jit.script(Tiny()), sys.argv[1])
"""
SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
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
    lp = Plane(tmp_path_factory.mktemp("modelstore") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir), "--nodes", "2")
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def infer(plane: Plane) -> tuple[int, dict[str, Any]]:
    ip = plane.get("service", NAME)["spec"]["clusterIP"]
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2, 3, 4]]}]}
    request = urllib.request.Request(
        f"http://{ip}:80/v2/models/{NAME}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except OSError as error:
        return 0, {"error": str(error)}


def serving_pods(plane: Plane) -> list[dict[str, Any]]:
    items = plane.get("pods", "-l", f"modelops.dev/inferenceservice={NAME}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pods(plane: Plane) -> list[dict[str, Any]]:
    return [
        p
        for p in serving_pods(plane)
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]


def claims_of(pod: dict[str, Any]) -> set[str]:
    return {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }


def test_a_verified_version_is_published_into_the_store_under_its_digest(plane: Plane) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": SOURCE_CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(claim))
    plane.kubectl("wait", f"pvc/{SOURCE_CLAIM}", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
    target = plane.dir / "volumes" / "default" / SOURCE_CLAIM / "model.pt"
    script = plane.dir / "tiny_model.py"
    script.write_text(_MODEL)
    done = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    mv = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "tiny-1"},
        "spec": {
            "model": "tiny",
            "version": 1,
            "source": {"uri": f"pvc://{SOURCE_CLAIM}/model.pt"},
            "format": "torchscript",
            "signature": SIGNATURE,
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(mv))
    plane.kubectl("wait", "modelversion/tiny-1", "--for=condition=Ready", "--timeout=150s", timeout=160)

    artifact = plane.get("modelversion", "tiny-1")["status"]["artifact"]
    sha = hashlib.sha256(target.read_bytes()).hexdigest()
    assert artifact["sha256"] == sha
    assert artifact["storeUri"] == f"pvc://{STORE_CLAIM}/sha256/{sha}"
    # The operator created the store's claim; the object under the digest name is the verified bytes,
    # read-only, and no partial file is left next to it.
    store = plane.get("pvc", STORE_CLAIM)
    assert store["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelops"
    objects = plane.dir / "volumes" / "default" / STORE_CLAIM / "sha256"
    assert hashlib.sha256((objects / sha).read_bytes()).hexdigest() == sha
    assert (objects / sha).stat().st_mode & 0o222 == 0
    assert [p.name for p in objects.iterdir()] == [sha]


def test_three_replicas_on_two_nodes_serve_without_mounting_the_source_claim(plane: Plane) -> None:
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "modelRef": {"model": "tiny", "version": 1},
            "minReplicas": 3,
            "maxReplicas": 3,
            "resources": {"cpu": "100m", "memory": "512Mi"},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.kubectl("wait", f"inferenceservice/{NAME}", "--for=condition=Ready", "--timeout=180s", timeout=190)
    pods = wait_for(
        "three ready serving pods", lambda: (p := ready_pods(plane)) and len(p) == 3 and p, plane, 180
    )
    assert len({p["spec"]["nodeName"] for p in pods}) == 2, [p["spec"]["nodeName"] for p in pods]
    sha = plane.get("modelversion", "tiny-1")["status"]["artifact"]["sha256"]
    for pod in pods:
        assert SOURCE_CLAIM not in claims_of(pod), pod["spec"]["volumes"]
        model = next(v for v in pod["spec"]["volumes"] if v["name"] == "model")
        assert "emptyDir" in model, model
        (fetch,) = pod["spec"]["initContainers"]
        assert fetch["args"][:1] == ["fetch"] and sha in fetch["args"]
        assert (
            fetch["securityContext"]["runAsNonRoot"]
            and not fetch["securityContext"]["allowPrivilegeEscalation"]
        )
        # The init container reported what it fetched and checked before the server started.
        done = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
        assert done["exitCode"] == 0 and json.loads(done["message"])["artifact"]["sha256"] == sha
    code, answer = infer(plane)
    assert code == 200, answer
    assert answer["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0]


def test_the_version_still_serves_after_its_source_is_deleted(plane: Plane) -> None:
    plane.kubectl("delete", "pvc", SOURCE_CLAIM, "--wait=true", timeout=90)
    wait_for(
        "the source claim's directory to go",
        lambda: not (plane.dir / "volumes" / "default" / SOURCE_CLAIM / "model.pt").exists(),
        plane,
        60,
    )
    # A new pod (as the HPA or a drained node would make) comes up from the store alone.
    old = {p["metadata"]["name"] for p in serving_pods(plane)}
    victim = sorted(old)[0]
    plane.kubectl("delete", "pod", victim, "--wait=false")
    pods = wait_for(
        "a replacement pod to be Ready",
        lambda: (p := ready_pods(plane)) and len(p) == 3 and {q["metadata"]["name"] for q in p} != old and p,
        plane,
        180,
    )
    assert victim not in {p["metadata"]["name"] for p in pods}
    code, answer = infer(plane)
    assert code == 200 and answer["outputs"][0]["data"] == [3.0, 5.0, 7.0, 9.0], answer
    wait_for(
        "the InferenceService to count three ready replicas again",
        lambda: plane.get("inferenceservice", NAME)["status"].get("readyReplicas") == 3,
        plane,
        60,
    )


def test_a_changed_store_object_stops_new_pods_with_the_reason(plane: Plane) -> None:
    """Bit rot in the store: a new pod's fetch refuses the object (exit 65), the running pods keep serving,
    and the InferenceService names ArtifactDigestMismatch."""
    sha = plane.get("modelversion", "tiny-1")["status"]["artifact"]["sha256"]
    stored = plane.dir / "volumes" / "default" / STORE_CLAIM / "sha256" / sha
    stored.chmod(0o644)
    stored.write_bytes(b"not the verified bytes")
    victim = sorted(p["metadata"]["name"] for p in serving_pods(plane))[0]
    plane.kubectl("delete", "pod", victim, "--wait=false")

    def refused() -> dict[str, Any] | None:
        for pod in serving_pods(plane):
            for cs in pod.get("status", {}).get("initContainerStatuses") or []:
                for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                    done = state.get("terminated") or {}
                    if done.get("exitCode") == 65:
                        return dict(json.loads(done["message"]))
        return None

    result = wait_for("the new pod's fetch to refuse the changed object", refused, plane, 120)
    assert result["reason"] == "ArtifactDigestMismatch" and sha in result["message"]
    code, _ = infer(plane)
    assert code == 200  # the two pods that fetched it before keep serving

    def reported() -> str:
        conditions = plane.get("inferenceservice", NAME).get("status", {}).get("conditions") or []
        return " ".join(f"{c.get('reason')} {c.get('message')}" for c in conditions)

    wait_for(
        "the InferenceService to name the mismatch", lambda: "ArtifactDigestMismatch" in reported(), plane, 90
    )


def test_every_call_the_operator_made_is_granted_by_its_rbac_rules(plane: Plane) -> None:
    calls = operator_calls(plane.dir)
    assert ("", "persistentvolumeclaims", "create") in calls, sorted(calls)
    assert ungranted(calls) == []
