"""The Argo CD health checks of docs/argocd.md, run with the real Lua interpreter.

The scripts are read from the `argocd-cm` ConfigMap on that page, the one users copy, and run with
`lua5.4` against objects of each kind whose status comes from the operator's own status functions
(`status.summarize`, and the TrainingJob controller's `plan` for real pod histories). The same
objects are judged by the kstatus rules (`status.kstatus`), so the two tool families agree.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops import status
from modelops.api.runconfig import EXIT_BAD_DATA, EXIT_SIGTERM, EXIT_SUCCEEDED
from modelops.builders import trainingjob as tj_builders
from modelops.controllers import trainingjob

ROOT = Path(__file__).resolve().parents[2]
LUA = shutil.which("lua5.4")
NOW = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
KINDS = ("TrainingJob", "ModelVersion", "InferenceService", "TuningJob")

pytestmark = pytest.mark.skipif(LUA is None, reason="needs lua5.4: `make bootstrap` installs it with apt-get")


def health_scripts() -> dict[str, str]:
    text = (ROOT / "docs" / "argocd.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
        doc = yaml.safe_load(block)
        if (
            isinstance(doc, dict)
            and doc.get("kind") == "ConfigMap"
            and doc["metadata"]["name"] == "argocd-cm"
        ):
            prefix = "resource.customizations.health.modelops.dev_"
            return {
                key.removeprefix(prefix): value
                for key, value in doc["data"].items()
                if key.startswith(prefix)
            }
    raise AssertionError("docs/argocd.md has no argocd-cm ConfigMap")


SCRIPTS = health_scripts()


def lua_literal(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Lua string literal for this text
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


def argocd(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(health status, message) as Argo CD computes it with the script of docs/argocd.md."""
    # Argo CD runs the script as a function body with `obj` set; a script that errors shows as Unknown.
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local function check()\n{SCRIPTS[kind]}\nend\n"
        "local hs = check()\n"
        "io.write(hs.status, '\\n', hs.message or '')\n"
    )
    assert LUA is not None
    done = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"the {kind} health check fails in Lua: {done.stderr}"
    health, _, message = done.stdout.partition("\n")
    return health, message


def obj(
    kind: str, generation: int, st: dict[str, Any] | None, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "digits", "namespace": "default", "generation": generation},
        "spec": spec or {},
    }
    if st is not None:
        body["status"] = st
    return body


def summarized(conclusion: status.Conclusion, generation: int) -> dict[str, Any]:
    return status.summarize(conclusion, generation=generation, conditions=None, now=NOW)


def test_every_kind_has_a_health_check() -> None:
    assert sorted(SCRIPTS) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_status_conventions_map_to_argocd_health_and_kstatus(kind: str) -> None:
    cases = [
        (status.progressing("Pending", "Accepted; creating children."), "Progressing", "InProgress"),
        (status.ready("Serving", "All replicas serve version 3."), "Healthy", "Current"),
        (
            status.stalled("InvalidSpec", "spec.modelRef.version: no such version; fix the spec."),
            "Degraded",
            "Failed",
        ),
    ]
    for conclusion, health, kstatus in cases:
        st = summarized(conclusion, generation=4)
        assert argocd(kind, obj(kind, 4, st)) == status.argocd_health(obj(kind, 4, st))
        assert argocd(kind, obj(kind, 4, st))[0] == health, conclusion
        assert status.kstatus(st, 4) == kstatus, conclusion
    stalled = summarized(cases[2][0], generation=4)
    assert (
        argocd(kind, obj(kind, 4, stalled))[1]
        == "InvalidSpec: spec.modelRef.version: no such version; fix the spec."
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_spec_the_operator_has_not_seen_yet_is_progressing_whatever_the_old_status_said(kind: str) -> None:
    # A new commit synced by Argo CD bumps the generation; the old Ready must not count as healthy.
    ready = summarized(status.ready("Serving", "ok"), generation=4)
    health, message = argocd(kind, obj(kind, 5, ready))
    assert health == "Progressing" and "generation 5" in message
    assert status.kstatus(ready, 5) == "InProgress"
    assert argocd(kind, obj(kind, 1, None)) == (
        "Progressing",
        "Waiting for the modelops operator to report status",
    )
    assert argocd(kind, obj(kind, 1, {"observedGeneration": 1})) == (
        "Progressing",
        "Waiting for the modelops operator to report status",
    )


def quickstart(**run_policy: Any) -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples" / "quickstart" / "10-trainingjob.yaml").read_text()
    )
    job["metadata"].update({"namespace": "default", "uid": "u-1", "generation": 2})
    if run_policy:
        job["spec"]["runPolicy"] = run_policy
    return job


def finished_pod(job: dict[str, Any], exit_code: int, message: str) -> dict[str, Any]:
    spec = trainingjob.TrainingJobSpec.model_validate(job["spec"])
    (pod,) = tj_builders.pods("digits", "default", "u-1", spec)
    pod["status"] = {
        "phase": "Succeeded" if exit_code == EXIT_SUCCEEDED else "Failed",
        "startTime": "2026-05-01T11:50:00Z",
        "containerStatuses": [
            {
                "name": tj_builders.CONTAINER,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Completed", "message": message}},
            }
        ],
    }
    return pod


def planned(job: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The job with the status the TrainingJob controller writes for these pods (applied twice, as
    the first write only records the pods' creation)."""
    for _ in range(2):
        plan = trainingjob.plan(job, pods, None, now=NOW)
        job = {**job, "status": {**(job.get("status") or {}), **plan.status_patch}}
    return job


def test_a_suspended_training_job_is_suspended_once_the_operator_has_acted() -> None:
    job = planned(quickstart(suspend=True), [])
    assert job["status"]["phase"] == "Suspended"
    assert argocd("TrainingJob", job) == ("Suspended", "runPolicy.suspend is true: the job has no pods")
    # kstatus has no Suspended: at rest with no pods it is Current (Reconciling=False), not Ready, so
    # `kubectl wait`, Flux and kstatus tools do not wait on it forever.
    assert status.kstatus(job["status"], 2) == "Current"
    assert status.is_condition_true(job["status"]["conditions"], status.READY) is False
    # Suspending a running job is a new generation: Progressing until the operator has seen it.
    running = planned(quickstart(), [])
    suspended_now = {**running, "spec": {**running["spec"], "runPolicy": {"suspend": True}}}
    suspended_now["metadata"] = {**running["metadata"], "generation": 3}
    assert argocd("TrainingJob", suspended_now)[0] == "Progressing"


def test_training_jobs_the_controller_judged_map_to_argocd_health() -> None:
    job = quickstart()
    assert argocd("TrainingJob", planned(job, []))[0] == "Progressing"
    result = json.dumps({"exitCode": 0, "epochs": 20, "steps": 560})
    succeeded = planned(job, [finished_pod(job, EXIT_SUCCEEDED, result)])
    assert succeeded["status"]["phase"] == "Succeeded"
    assert argocd("TrainingJob", succeeded)[0] == "Healthy"
    assert status.kstatus(succeeded["status"], 2) == "Current"
    bad_data = planned(job, [finished_pod(job, EXIT_BAD_DATA, "")])
    assert bad_data["status"]["phase"] == "Failed"
    health, message = argocd("TrainingJob", bad_data)
    assert health == "Degraded" and message, message
    assert status.kstatus(bad_data["status"], 2) == "Failed"
    # A retryable failure (evicted: SIGTERM) is not Degraded: the operator restarts the pods.
    retried = planned(job, [finished_pod(job, EXIT_SIGTERM, "")])
    assert argocd("TrainingJob", retried)[0] == "Progressing"
    assert status.kstatus(retried["status"], 2) == "InProgress"
    # A job that finished stays Healthy even when someone suspends it afterwards.
    late = {**succeeded, "spec": {**succeeded["spec"], "runPolicy": {"suspend": True}}}
    assert argocd("TrainingJob", late)[0] == "Healthy"


@pytest.mark.parametrize("kind", ("ModelVersion", "InferenceService"))
def test_only_training_jobs_are_ever_suspended(kind: str) -> None:
    st = summarized(status.progressing("Pending", "waiting"), generation=1)
    assert argocd(kind, obj(kind, 1, st, spec={"runPolicy": {"suspend": True}}))[0] == "Progressing"


def test_the_scripts_are_lua_5_1_for_argo_cds_gopher_lua() -> None:
    # gopher-lua implements Lua 5.1: none of the 5.2+ syntax it would refuse when Argo CD loads it.
    for kind, script in SCRIPTS.items():
        for construct in ("goto ", "//", "<const>", "<close>", " & ", " | ", "<<", ">>"):
            assert construct not in script, (kind, construct)
