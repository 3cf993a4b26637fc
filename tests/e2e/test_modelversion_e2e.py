"""The model registry on the local plane, driven with the real kubectl as a user drives it.

One plane for the module: a short quickstart TrainingJob registers digits-1, which the operator
verifies in a pod (digest, load, smoke inference) and fills with metrics and lineage; tampering with
the file on the claim makes re-verification fail with ArtifactDigestMismatch. Then versions from a
`pvc://` URI race for one alias behind gates, and deleting a version an InferenceService serves is held
with a message saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import KUBECTL, Plane

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

# The quickstart's InferenceService, serving digits version 1.
SERVICE = "digits-classifier"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("registry") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def eventually(plane: Plane, what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting until {what}\n{plane.logs()}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def artifact_file(plane: Plane) -> Path:
    """The trained artifact on the host: the claim's PersistentVolume is a hostPath directory."""
    volume = plane.get("pvc", "digits-checkpoints")["spec"]["volumeName"]
    return Path(plane.get("pv", volume)["spec"]["hostPath"]["path"]) / "output" / "model.pt"


def kubectl_fails(plane: Plane, *args: str) -> str:
    """Run kubectl expecting a refusal; its error output."""
    done = subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, timeout=60, env=plane.env)
    assert done.returncode != 0, f"kubectl {' '.join(args)} was accepted: {done.stdout}"
    return done.stderr


def serving_pods(plane: Plane) -> dict[str, int]:
    """The InferenceService's Ready pods and their restart counts."""
    pods = plane.get("pods")["items"]
    out: dict[str, int] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
        )
        if name.startswith(f"{SERVICE}-") and ready:
            out[name] = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))
    return out


def prediction(plane: Plane) -> int:
    """The HTTP status of one V2 inference through the InferenceService's Service."""
    ip = plane.get("service", SERVICE)["spec"]["clusterIP"]
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [[0.0] * 64]}]}
    request = urllib.request.Request(
        f"http://{ip}:80/v2/models/{SERVICE}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def events_of(plane: Plane, name: str) -> list[tuple[str, str, str]]:
    items = plane.get("events")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == name]


@pytest.fixture(scope="module")
def trained(plane: Plane) -> dict[str, Any]:
    """digits-1, registered by a 3-epoch quickstart TrainingJob and verified."""
    job = yaml.safe_load((REPO / "examples" / "quickstart" / "10-trainingjob.yaml").read_text())
    job["spec"]["hyperparameters"]["epochs"] = 3
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    plane.kubectl("wait", "trainingjob/digits", "--for=condition=Succeeded", "--timeout=300s", timeout=310)
    eventually(
        plane, "ModelVersion digits-1 exists", lambda: "digits-1" in plane.kubectl("get", "mv", "-o", "name")
    )
    plane.kubectl("wait", "modelversion/digits-1", "--for=condition=Ready", "--timeout=180s", timeout=190)
    mv: dict[str, Any] = plane.get("modelversion", "digits-1")
    return mv


def test_a_trained_version_is_verified_and_a_tampered_file_fails_re_verification(
    plane: Plane, trained: dict[str, Any]
) -> None:
    st = trained["status"]
    job = plane.get("trainingjob", "digits")
    path = artifact_file(plane)
    assert st["phase"] == "Ready" and st["version"] == 1
    # What the registry recorded is the file on the claim, byte for byte.
    assert (
        st["artifact"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == trained["spec"]["sha256"]
    )
    assert st["artifact"]["uri"] == "pvc://digits-checkpoints/output/model.pt"
    assert st["artifact"]["sizeBytes"] == path.stat().st_size and st["artifact"]["format"] == "torchscript"
    assert st["metrics"]["accuracy"] == pytest.approx(job["status"]["metrics"]["accuracy"])
    lineage = st["lineage"]
    assert lineage["trainingJob"] == "digits" and len(lineage["datasetDigest"]) == 64
    assert lineage["hyperparameters"]["epochs"] == 3 and lineage["image"].startswith(
        "ghcr.io/modelops/worker"
    )
    assert lineage["created"]
    assert condition(trained, "Verified")["status"] == "True"
    assert "modelops.dev/in-use-protection" in trained["metadata"]["finalizers"]
    # The verification pod is gone once its answer was read; the printer columns show the version.
    assert not plane.get("pods", "-l", "modelops.dev/verifies=digits-1")["items"]
    table = plane.kubectl("get", "mv", "digits-1")
    assert all(h in table for h in ("MODEL", "VERSION", "PHASE", "ACCURACY", "ALIASES", "AGE"))
    # Verified, the identity is frozen: the API server refuses a new source, naming the field.
    refused = kubectl_fails(
        plane,
        "patch",
        "mv",
        "digits-1",
        "--type=merge",
        "-p",
        '{"spec":{"source":{"trainingJob":{"name":"other"}}}}',
    )
    assert "spec.source" in refused and "immutable" in refused

    # An InferenceService serves the verified file before it is tampered with.
    isvc = yaml.safe_load((REPO / "examples" / "quickstart" / "30-inferenceservice.yaml").read_text())
    isvc["spec"]["resources"] = {"cpu": "250m", "memory": "768Mi"}
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.kubectl(
        "wait", f"inferenceservice/{SERVICE}", "--for=condition=Ready", "--timeout=180s", timeout=190
    )
    serving = serving_pods(plane)
    assert serving and prediction(plane) == 200

    original = path.read_bytes()
    path.write_bytes(original + b"tampered")
    try:
        plane.kubectl("annotate", "mv", "digits-1", "modelops.dev/reverify=after-tamper")
        eventually(
            plane,
            "re-verification finds the tampered file",
            lambda: (
                condition(plane.get("mv", "digits-1"), "Verified").get("reason") == "ArtifactDigestMismatch"
            ),
        )
        failed = plane.get("mv", "digits-1")
        assert failed["status"]["phase"] == "Failed"
        assert condition(failed, "Ready")["status"] == "False"
        assert condition(failed, "Stalled")["reason"] == "ArtifactDigestMismatch"
        message = condition(failed, "Verified")["message"]
        assert st["artifact"]["sha256"] in message and "modelops.dev/reverify" in message
        assert ("Warning", "ArtifactDigestMismatch") in [(t, r) for t, r, _ in events_of(plane, "digits-1")]
        # The pods that loaded the verified file keep serving it: same pods, no restart, answering.
        assert serving_pods(plane) == serving
        assert prediction(plane) == 200
    finally:
        path.write_bytes(original)
    # The file restored, a new request verifies it again.
    plane.kubectl("annotate", "mv", "digits-1", "modelops.dev/reverify=restored", "--overwrite")
    plane.kubectl("wait", "modelversion/digits-1", "--for=condition=Verified", "--timeout=120s", timeout=130)
    assert plane.get("mv", "digits-1")["status"]["phase"] == "Ready"
    plane.kubectl("delete", "inferenceservice", SERVICE, "--timeout=120s", timeout=130)


def uri_version(name: str, gate: float, *, must_beat: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": "digits",
            "source": {"uri": "pvc://digits-checkpoints/output/model.pt"},
            "promotion": {
                "aliases": ["champion"],
                "gates": [{"metric": "accuracy", "op": ">=", "value": gate}],
                "mustBeatCurrent": must_beat,
            },
        },
    }


def test_versions_racing_for_one_alias_leave_one_holder_and_gates_deny_the_weak(
    plane: Plane, trained: dict[str, Any]
) -> None:
    racers = [uri_version("racer-a", 0.5), uri_version("racer-b", 0.5), uri_version("strict", 0.999)]
    plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(r) for r in racers))
    names = ["racer-a", "racer-b", "strict"]

    def decided() -> bool:
        items = {m["metadata"]["name"]: m for m in plane.get("mv")["items"]}
        return all(items.get(n, {}).get("status", {}).get("promotionGeneration") == 1 for n in names)

    eventually(plane, "every version's promotion was decided", decided, timeout=180)
    items = {m["metadata"]["name"]: m["status"] for m in plane.get("mv")["items"]}
    # Numbers were assigned one by one: no two versions of the model share one.
    numbers = sorted(items[n]["version"] for n in ["digits-1", *names])
    assert numbers == [1, 2, 3, 4]
    holders = [n for n, st in items.items() if "champion" in st.get("aliases", [])]
    assert len(holders) == 1 and holders[0] in ("racer-a", "racer-b"), items
    winner = holders[0]
    loser = "racer-b" if winner == "racer-a" else "racer-a"
    # History: the winner's last word on champion is a grant; a grant that moved the alias names the
    # previous holder, and that holder recorded the move to the winner.
    history = {
        n: [e for e in items[n].get("promotionHistory", []) if e["alias"] == "champion"] for n in names
    }
    assert history[winner][-1]["action"] == "Granted"
    for name in names:
        for entry in history[name]:
            if entry["action"] == "Granted" and entry.get("previousHolder"):
                moved = history[entry["previousHolder"]]
                assert any(e["action"] == "Revoked" and name in e["message"] for e in moved), history
    assert [e["action"] for e in history[loser]] in (["Granted", "Revoked"], []), history
    # The strict gate failed, with the result recorded for humans.
    [denied] = history["strict"]
    assert denied["action"] == "Denied"
    [gate] = denied["gates"]
    assert gate["metric"] == "accuracy" and gate["passed"] is False and gate["threshold"] == 0.999
    assert gate["value"] == pytest.approx(items["strict"]["metrics"]["accuracy"])
    assert "not >= 0.999" in denied["message"]
    assert ("Warning", "AliasDenied") in [(t, r) for t, r, _ in events_of(plane, "strict")]
    assert ("Normal", "AliasGranted") in [(t, r) for t, r, _ in events_of(plane, winner)]

    # A newcomer that must beat the holder with the very same file does not: the holder keeps it.
    plane.kubectl("apply", "-f", "-", input=json.dumps(uri_version("challenger", 0.5, must_beat=True)))
    eventually(
        plane,
        "the challenger's promotion was decided",
        lambda: plane.get("mv", "challenger").get("status", {}).get("promotionGeneration") == 1,
    )
    [entry] = plane.get("mv", "challenger")["status"]["promotionHistory"]
    assert entry["action"] == "Denied" and entry["previousHolder"] == winner
    assert "champion" in plane.get("mv", winner)["status"]["aliases"]


def test_deleting_a_served_version_is_held_until_nothing_serves_it(
    plane: Plane, trained: dict[str, Any]
) -> None:
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "frontdoor"},
        "spec": {"modelRef": {"model": "digits", "version": 1}},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.kubectl("delete", "mv", "digits-1", "--wait=false")

    def blocked() -> bool:
        return condition(plane.get("mv", "digits-1"), "DeletionBlocked").get("status") == "True"

    eventually(plane, "the deletion is held", blocked, timeout=60)
    held = plane.get("mv", "digits-1")
    assert held["metadata"]["deletionTimestamp"]
    assert held["status"]["servedBy"] == [{"namespace": "default", "name": "frontdoor"}]
    message = condition(held, "DeletionBlocked")["message"]
    assert message.startswith(
        "cannot delete: served by InferenceService frontdoor; remove it from frontdoor first"
    )
    assert ("Warning", "DeletionBlocked", message) in events_of(plane, "digits-1")
    assert "cannot delete: served by InferenceService frontdoor" in plane.kubectl(
        "describe", "mv", "digits-1"
    )

    # Nothing serves it any more: the deletion completes by itself.
    plane.kubectl("delete", "inferenceservice", "frontdoor", "--timeout=120s", timeout=130)
    plane.kubectl("wait", "mv/digits-1", "--for=delete", "--timeout=60s", timeout=70)
