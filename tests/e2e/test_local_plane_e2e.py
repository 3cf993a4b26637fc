"""`modelops local` as a user drives it: up, kubectl, helm, down, up again.

These run the real command line (`modelops local up`), the real kubectl v1.33 and the real helm v4
against the local plane's processes. They are the few slow tests that prove the pieces fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools" / "bin"
MODELOPS = [sys.executable, "-m", "modelops"]

pytestmark = pytest.mark.e2e


class LocalPlane:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.kubeconfig = directory / "kubeconfig"
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def modelops(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*MODELOPS, *args], capture_output=True, text=True, timeout=180, env=self.env, check=False
        )
        if check and done.returncode != 0:
            pytest.fail(f"modelops {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def tool(self, name: str, *args: str, check: bool = True, timeout: float = 180) -> str:
        done = subprocess.run(
            [str(TOOLS / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(f"{name} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.tool("kubectl", *args, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait_for(self, what: str, check: Any, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((self.dir / "logs").glob("*.log"))
        )
        pytest.fail(f"timed out waiting for {what}\n{logs}")


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[LocalPlane]:
    lp = LocalPlane(tmp_path / "plane")
    yield lp
    lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def _observed(plane: LocalPlane, kind: str, name: str) -> bool:
    obj = plane.get(kind, name)
    return bool(obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"])


def test_up_apply_down_up_keeps_state(plane: LocalPlane) -> None:
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
    assert "2 Ready" in status.stdout

    plane.modelops("local", "down", "--dir", str(plane.dir))
    stopped = plane.modelops("local", "status", "--dir", str(plane.dir), check=False)
    assert stopped.returncode != 0
    assert "apiserver    stopped" in stopped.stdout

    plane.modelops("local", "up", "--dir", str(plane.dir), "--nodes", "2", "--gpus", "1")
    assert plane.get("trainingjob", "digits")["spec"]["hyperparameters"]["epochs"] == 20, (
        "state survives down/up"
    )


def test_helm_installs_the_chart_and_the_operator_pod_reconciles(plane: LocalPlane) -> None:
    plane.modelops("local", "up", "--dir", str(plane.dir), "--no-operator")
    assert "operator     stopped" in plane.modelops("local", "status", "--dir", str(plane.dir)).stdout

    chart = str(REPO / "charts" / "modelops")
    plane.tool(
        "helm", "install", "modelops", chart, "-n", "modelops-system", "--create-namespace",
        "--wait", "--timeout", "120s", timeout=200,
    )  # fmt: skip
    pods = plane.get("pods", "-n", "modelops-system", "-l", "app.kubernetes.io/name=modelops")["items"]
    assert len(pods) == 1
    conditions = {c["type"]: c["status"] for c in pods[0]["status"]["conditions"]}
    assert conditions.get("Ready") == "True"

    # The operator in the pod logs in with its service account and reconciles like the one `up` starts.
    plane.kubectl("apply", "-f", str(REPO / "examples" / "quickstart" / "10-trainingjob.yaml"))
    plane.wait_for(
        "the in-pod operator to observe the TrainingJob", lambda: _observed(plane, "trainingjob", "digits")
    )

    plane.tool("helm", "upgrade", "modelops", chart, "-n", "modelops-system", "--set", "logFormat=text",
               "--wait", "--timeout", "120s", timeout=200)  # fmt: skip
    args = plane.get("deployment", "modelops", "-n", "modelops-system")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "--log-format=text" in args["args"]

    plane.tool(
        "helm", "uninstall", "modelops", "-n", "modelops-system", "--wait", "--timeout", "120s", timeout=200
    )
    plane.wait_for(
        "helm uninstall to remove the operator's pods",
        lambda: not plane.get("pods", "-n", "modelops-system")["items"],
    )
    assert "modelops" not in plane.kubectl("get", "deployments", "-n", "modelops-system", "-o", "name")
