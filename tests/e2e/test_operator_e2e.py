"""The operator end to end: real API server, real kubectl, `modelops operator --kubeconfig` as a process.

One scenario, in the order a user meets it: install the CRDs, start the operator, apply one object
of each kind, see them acknowledged (observedGeneration and kstatus conditions, `kubectl wait`
works), see an object the operator cannot read end Stalled with a message naming the field, and
find health, readiness and metrics answering.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.status import kstatus

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

NS = "e2e-operator"
OBJECTS: dict[str, dict[str, Any]] = {
    "TrainingJob": {
        "metadata": {"name": "tj"},
        # Suspended: this plane has no nodes to train on (tests/e2e/test_trainingjob_e2e.py trains).
        "spec": {
            "model": {"architecture": "mlp"},
            "dataset": {"builtin": "digits"},
            "runPolicy": {"suspend": True},
        },
    },
    "ModelVersion": {
        "metadata": {"name": "mv"},
        "spec": {"model": "fraud", "version": 1, "source": {"uri": "pvc://models/fraud/1/model.pt"}},
    },
    "InferenceService": {
        "metadata": {"name": "isvc"},
        "spec": {"modelRef": {"model": "fraud", "version": 1}},
    },
}
PLURALS = {
    "TrainingJob": "trainingjobs",
    "ModelVersion": "modelversions",
    "InferenceService": "inferenceservices",
}


def manifest(kind: str, obj: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "modelops.dev/v1alpha1", "kind": kind, **obj})


def newer_trainingjob_crd() -> str:
    """The TrainingJob CRD with one field this operator version does not know (a CRD upgraded first)."""
    crd = yaml.safe_load((REPO / "crds" / "modelops.dev_trainingjobs.yaml").read_text())
    crd = copy.deepcopy(crd)
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["futureField"] = {"type": "string", "description": "From a newer modelops."}
    return json.dumps(crd)


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def test_operator_acknowledges_objects_and_stalls_what_it_cannot_read(
    plane: Any, start_operator: Callable[..., Any], wait: Callable[..., None]
) -> None:
    plane.kubectl("apply", "-f", str(REPO / "crds"))
    plane.kubectl("apply", "-f", "-", input=newer_trainingjob_crd())
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )

    operator = start_operator(plane, "--log-format", "json")
    assert operator.http("/healthz")[0] in (0, 200)  # may not be listening yet
    wait(
        "waiting for /readyz",
        lambda: operator.http("/readyz")[0] == 200 or operator.process.poll() is not None,
        log=operator.log,
    )
    assert operator.process.poll() is None, operator.log.read_text()[-4000:]
    assert operator.http("/healthz") == (200, "ok\n")

    # The ModelVersion's claim exists (a missing one is Stalled/ClaimNotFound, tests/e2e/test_stalled_and_byo_e2e.py).
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    plane.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(claim))
    for kind, obj in OBJECTS.items():
        plane.kubectl("apply", "-n", NS, "-f", "-", input=manifest(kind, obj))
    plane.kubectl(
        "apply",
        "-n",
        NS,
        "-f",
        "-",
        input=manifest(
            "TrainingJob",
            {
                "metadata": {"name": "from-the-future"},
                "spec": {**OBJECTS["TrainingJob"]["spec"], "futureField": "x"},
            },
        ),
    )

    # What a user (or a CI pipeline) waits on: plain `kubectl wait`.
    for kind, obj in OBJECTS.items():
        ref = f"{PLURALS[kind]}/{obj['metadata']['name']}"
        plane.kubectl("wait", "-n", NS, ref, "--for=jsonpath={.status.observedGeneration}=1", "--timeout=60s")
        got = plane.get("-n", NS, ref)
        c = conditions(got)
        if kind == "TrainingJob":
            # Suspended with no pods: at rest as the user asked (kstatus Current), and not Ready.
            plane.kubectl("wait", "-n", NS, ref, "--for=condition=Suspended", "--timeout=10s")
            got = plane.get("-n", NS, ref)
            c = conditions(got)
            assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == (
                "False",
                "False",
                "False",
            )
            assert got["status"]["phase"] == "Suspended"
            assert kstatus(got["status"], got["metadata"]["generation"]) == "Current"
        else:
            plane.kubectl("wait", "-n", NS, ref, "--for=condition=Reconciling", "--timeout=10s")
            got = plane.get("-n", NS, ref)
            c = conditions(got)
            # The ModelVersion's verification pod waits for a node this plane does not have, and the
            # InferenceService waits for that ModelVersion to be Ready (creating nothing meanwhile).
            expected = "Verifying" if kind == "ModelVersion" else "ModelVersionNotReady"
            assert (c["Ready"]["status"], c["Reconciling"]["reason"], c["Stalled"]["status"]) == (
                "False",
                expected,
                "False",
            )
            assert got["status"]["phase"] == ("Pending" if kind == "InferenceService" else expected)
            assert kstatus(got["status"], got["metadata"]["generation"]) == "InProgress"
        # kopf needs a finalizer to stop the TrainingJob's and InferenceService's sync timers before
        # the object goes, and a ModelVersion's in-use protection holds its deletion while it is served.
        has_finalizer = "modelops.dev/finalizer" in got["metadata"].get("finalizers", [])
        assert has_finalizer
        # kopf's bookkeeping lives under our own prefix, not kopf.zalando.org.
        annotations = got["metadata"].get("annotations", {})
        assert "modelops.dev/last-handled-configuration" in annotations
        assert not [key for key in annotations if key.startswith(("kopf.zalando.org/", "kopf.dev/"))]

    plane.kubectl(
        "wait", "-n", NS, "trainingjobs/from-the-future", "--for=condition=Stalled", "--timeout=60s"
    )
    stalled = plane.get("-n", NS, "trainingjobs/from-the-future")
    c = conditions(stalled)
    assert c["Stalled"]["reason"] == "InvalidSpec" and c["Ready"]["status"] == "False"
    assert "spec.futureField: unknown field" in c["Stalled"]["message"]
    assert stalled["status"]["phase"] == "Failed"
    assert kstatus(stalled["status"], stalled["metadata"]["generation"]) == "Failed"

    # Each transition is an Event on the object, from our component.
    def events_of(name: str) -> list[dict[str, Any]]:
        return [e for e in plane.get("events", "-n", NS)["items"] if e["involvedObject"]["name"] == name]

    wait(
        "waiting for the events",
        lambda: any(e["reason"] == "InvalidSpec" for e in events_of("from-the-future")),
    )
    (warning,) = [e for e in events_of("from-the-future") if e["reason"] == "InvalidSpec"]
    assert warning["type"] == "Warning" and "spec.futureField" in warning["message"]
    assert warning["source"]["component"] == "modelops-operator"  # the "From" column of kubectl describe
    assert [e["type"] for e in events_of("tj") if e["reason"] == "Suspended"] == ["Normal"]

    # A new generation is observed; with nothing new to say, the status settles (no write loop).
    plane.kubectl(
        "patch", "-n", NS, "inferenceservices/isvc", "--type=merge", "-p", '{"spec":{"maxReplicas":4}}'
    )
    plane.kubectl(
        "wait",
        "-n",
        NS,
        "inferenceservices/isvc",
        "--for=jsonpath={.status.observedGeneration}=2",
        "--timeout=60s",
    )
    before = plane.get("-n", NS, "inferenceservices/isvc")["metadata"]["resourceVersion"]
    time.sleep(2)
    after = plane.get("-n", NS, "inferenceservices/isvc")["metadata"]["resourceVersion"]
    assert before == after, "the operator keeps rewriting an object whose state did not change"

    code, text = operator.http("/metrics")
    assert code == 200
    assert 'modelops_objects{kind="TrainingJob",phase="Suspended"} 1.0' in text
    assert 'modelops_objects{kind="TrainingJob",phase="Failed"} 1.0' in text
    assert 'modelops_reconcile_total{kind="InferenceService",result="progressing"}' in text
    assert "modelops_reconcile_duration_seconds_bucket" in text

    # Deleting needs no operator help (no finalizer yet) and the object leaves the gauge.
    plane.kubectl("delete", "-n", NS, "trainingjobs/from-the-future", "--timeout=30s")
    wait(
        "waiting for the deleted object to leave modelops_objects",
        lambda: 'phase="Failed"' not in operator.http("/metrics")[1],
    )

    logs = operator.log.read_text()
    token = yaml.safe_load(plane.kubeconfig.read_text())["users"][0]["user"].get("token")
    assert not token or token not in logs
    for line in logs.splitlines():
        json.loads(line)  # --log-format json: every line is one JSON object

    # A pod's termination: SIGTERM ends the operator cleanly, with exit code 0.
    assert operator.process.poll() is None
    operator.process.send_signal(signal.SIGTERM)
    assert operator.process.wait(timeout=30) == 0, operator.log.read_text()[-4000:]

    # A restarted operator (a new pod) resumes every object and finds nothing to write.
    def versions() -> dict[str, str]:
        items = [
            plane.get("-n", NS, f"{PLURALS[kind]}/{obj['metadata']['name']}") for kind, obj in OBJECTS.items()
        ]
        return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in items}

    before_restart = versions()
    events_before = len(plane.get("events", "-n", NS)["items"])
    restarted = start_operator(plane)

    def resumed() -> float:
        total = 0.0
        for line in restarted.http("/metrics")[1].splitlines():
            if line.startswith("modelops_reconcile_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    wait("waiting for the restarted operator to resume all objects", lambda: resumed() >= len(OBJECTS))
    time.sleep(1)  # kopf applies a handler's patch right after it returns: give a wrong write time to land
    assert versions() == before_restart
    assert len(plane.get("events", "-n", NS)["items"]) == events_before
    restarted.process.send_signal(signal.SIGTERM)  # the next test wants an operator of its own
    assert restarted.process.wait(timeout=30) == 0


def test_operator_limited_to_a_namespace_leaves_the_others_alone(
    plane: Any, start_operator: Callable[..., Any], wait: Callable[..., None]
) -> None:
    plane.kubectl("apply", "-f", str(REPO / "crds"))
    for ns in ("team-a", "team-b"):
        plane.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
    service = OBJECTS["InferenceService"]
    plane.kubectl("apply", "-n", "team-b", "-f", "-", input=manifest("InferenceService", service))

    operator = start_operator(plane, "--namespace", "team-a")
    wait(
        "waiting for /readyz",
        lambda: operator.http("/readyz")[0] == 200 or operator.process.poll() is not None,
        log=operator.log,
    )
    plane.kubectl("apply", "-n", "team-a", "-f", "-", input=manifest("InferenceService", service))
    plane.kubectl(
        "wait",
        "-n",
        "team-a",
        "inferenceservices/isvc",
        "--for=jsonpath={.status.observedGeneration}=1",
        "--timeout=60s",
    )
    # The object in team-b existed before the operator started, so it would have been handled first.
    untouched = plane.get("-n", "team-b", "inferenceservices/isvc")
    assert "status" not in untouched or not untouched["status"].get("conditions")
    assert not any(k.startswith("modelops.dev/") for k in untouched["metadata"].get("annotations", {}))


def test_operator_started_before_its_crds_says_so_until_they_are_installed(
    empty_plane: Any, start_operator: Callable[..., Any], wait: Callable[..., None]
) -> None:
    # Helm or Argo CD may start the operator before the CRDs exist: not ready, saying why, not crashing.
    operator = start_operator(empty_plane)
    wait(
        "waiting for /readyz to name the missing CRDs",
        lambda: (
            "trainingjobs.modelops.dev" in operator.http("/readyz")[1] or operator.process.poll() is not None
        ),
        log=operator.log,
    )
    code, text = operator.http("/readyz")
    assert code == 503 and "kubectl apply -f crds/" in text
    assert operator.http("/healthz")[0] == 200

    empty_plane.kubectl("apply", "-f", str(REPO / "crds"))
    wait(
        "waiting for /readyz after installing the CRDs",
        lambda: operator.http("/readyz")[0] == 200,
        log=operator.log,
    )
    assert operator.process.poll() is None
