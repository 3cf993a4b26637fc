"""`modelops local` as a user drives it: up, kubectl, helm, down, up again.

These run the real command line (`modelops local up`), the real kubectl v1.33 and the real helm v4
against the local plane's processes. They are the few slow tests that prove the pieces fit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from localplane import REPO, Plane

pytestmark = pytest.mark.e2e


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    lp = Plane(tmp_path / "plane")
    yield lp
    lp.modelops("local", "down", "--dir", str(lp.dir), check=False)
    runtime = lp.dir / "runtime"  # a root plane's pod files (modelops_local/statedir.py)
    if runtime.is_symlink():
        shutil.rmtree(os.readlink(runtime), ignore_errors=True)


def _observed(plane: Plane, kind: str, name: str) -> bool:
    obj = plane.get(kind, name)
    return bool(obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"])


def test_up_apply_down_up_keeps_state(plane: Plane) -> None:
    plane.modelops("local", "up", "--dir", str(plane.dir), "--nodes", "2", "--gpus", "1")
    nodes = plane.get("nodes")["items"]
    assert len(nodes) == 2
    assert all(n["status"]["capacity"]["nvidia.com/gpu"] == "1" for n in nodes)
    assert "modelops" in plane.kubectl("api-resources", "--categories", "modelops")

    plane.kubectl("apply", "-f", str(REPO / "examples" / "quickstart"))
    plane.wait_for(
        "the operator to observe the TrainingJob", lambda: _observed(plane, "trainingjob", "digits")
    )
    ready = plane.get("trainingjob", "digits")["status"]["conditions"]
    assert {c["type"] for c in ready} >= {"Ready", "Reconciling", "Stalled"}

    status = plane.modelops("local", "status", "--dir", str(plane.dir))
    assert "2 Ready" in status

    plane.modelops("local", "down", "--dir", str(plane.dir))
    stopped = subprocess.run(
        [sys.executable, "-m", "modelops", "local", "status", "--dir", str(plane.dir)],
        capture_output=True, text=True, timeout=60, env=plane.env,
    )  # fmt: skip
    assert stopped.returncode != 0
    assert "apiserver    stopped" in stopped.stdout

    plane.modelops("local", "up", "--dir", str(plane.dir), "--nodes", "2", "--gpus", "1")
    assert plane.get("trainingjob", "digits")["spec"]["hyperparameters"]["epochs"] == 20, (
        "state survives down/up"
    )


def test_helm_installs_the_chart_and_the_operator_pod_reconciles(plane: Plane) -> None:
    plane.modelops("local", "up", "--dir", str(plane.dir), "--no-operator")
    assert "operator     stopped" in plane.modelops("local", "status", "--dir", str(plane.dir))

    chart = str(REPO / "charts" / "modelops")
    plane.helm(
        "install", "modelops", chart, "-n", "modelops-system", "--create-namespace",
        "--wait", "--timeout", "120s", timeout=200,
    )  # fmt: skip
    pods = plane.get("pods", "-n", "modelops-system", "-l", "app.kubernetes.io/name=modelops")["items"]
    # Two replicas with leader election (the chart's default): both Ready, one holds the Lease.
    assert len(pods) == 2
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions.get("Ready") == "True"
    lease = plane.get("lease", "modelops", "-n", "modelops-system")
    assert lease["spec"]["holderIdentity"] in {p["metadata"]["name"] for p in pods}

    # The operator in the pod logs in with its service account and reconciles like the one `up` starts.
    plane.kubectl("apply", "-f", str(REPO / "examples" / "quickstart" / "10-trainingjob.yaml"))
    plane.wait_for(
        "the in-pod operator to observe the TrainingJob", lambda: _observed(plane, "trainingjob", "digits")
    )

    plane.helm("upgrade", "modelops", chart, "-n", "modelops-system", "--set", "logFormat=text",
               "--wait", "--timeout", "120s", timeout=200)  # fmt: skip
    args = plane.get("deployment", "modelops", "-n", "modelops-system")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "--log-format=text" in args["args"]
    # The rolling update replaced both pods one at a time; a new one leads.
    plane.wait_for(
        "a pod of the new version to hold the Lease",
        lambda: (
            plane.get("lease", "modelops", "-n", "modelops-system")["spec"].get("holderIdentity")
            in {
                p["metadata"]["name"]
                for p in plane.get("pods", "-n", "modelops-system", "-l", "app.kubernetes.io/name=modelops")[
                    "items"
                ]
                if "--log-format=text" in p["spec"]["containers"][0]["args"]
            }
        ),
    )

    plane.helm("uninstall", "modelops", "-n", "modelops-system", "--wait", "--timeout", "120s", timeout=200)
    plane.wait_for(
        "helm uninstall to remove the operator's pods",
        lambda: not plane.get("pods", "-n", "modelops-system")["items"],
    )
    assert "modelops" not in plane.kubectl("get", "deployments", "-n", "modelops-system", "-o", "name")


def test_a_killed_operator_is_restarted_by_the_supervisor_and_reconciles(plane: Plane) -> None:
    plane.modelops("local", "up", "--dir", str(plane.dir))
    first = int((plane.dir / "run" / "operator.pid").read_text())
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        status = plane.modelops("local", "status", "--dir", str(plane.dir), check=False)
        line = next((x for x in status.splitlines() if x.startswith("operator")), "")
        return line.startswith("operator     running") and "1 restart," in line and "SIGKILL" in line

    plane.wait_for("the supervisor to start the operator again", restarted, timeout=60)
    assert int((plane.dir / "run" / "operator.pid").read_text()) != first

    # The new operator reconciles what is applied after the crash.
    plane.kubectl("apply", "-f", str(REPO / "examples" / "quickstart" / "10-trainingjob.yaml"))
    plane.wait_for(
        "the restarted operator to observe the TrainingJob", lambda: _observed(plane, "trainingjob", "digits")
    )
    status = plane.modelops("local", "status", "--dir", str(plane.dir))
    assert "last exit: killed by signal 9 (SIGKILL)" in status
    assert "apiserver    running" in status and "0 restarts" in status
