"""`modelops local up` driven as a user drives it: the modelops CLI and the real kubectl, by kubeconfig.

Shared by the end-to-end tests of every kind; a test module starts one plane per module:

    @pytest.fixture(scope="module")
    def plane(tmp_path_factory):
        lp = Plane(tmp_path_factory.mktemp("x") / "plane")
        lp.modelops("local", "up", "--dir", str(lp.dir))
        yield lp
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
HELM = REPO / ".tools" / "bin" / "helm"


class Plane:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {**os.environ, "KUBECONFIG": str(directory / "kubeconfig")}

    def modelops(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "modelops", *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=self.env,
        )
        if check and done.returncode != 0:
            pytest.fail(f"modelops {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(KUBECTL), *args], input=input, capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}\n{self.logs()}")
        return done.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 300) -> str:
        """The real helm against this plane (install the chart onto `local up --no-operator`)."""
        done = subprocess.run(
            [str(HELM), *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if done.returncode != 0:
            pytest.fail(
                f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}\n{self.logs()}"
            )
        return done.stdout

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = 120) -> None:
        """Poll `check` until it is true; else fail, saying what was awaited, with the plane's logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((self.dir / "logs").glob("*.log"))
        )


# The user agents of the operator's two clients: kopf's own and the kubernetes client's.
OPERATOR_AGENTS = ("kopf/", "OpenAPI-Generator/")


def operator_calls(plane_dir: Path) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every request the operator made, from the audit log."""
    calls = set()
    for line in (plane_dir / "audit.log").read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if ref.get("resource") and event.get("userAgent", "").startswith(OPERATOR_AGENTS):
            resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            calls.add((ref.get("apiGroup", ""), resource, event["verb"]))
    return calls


def ungranted(calls: set[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The calls `permissions.RULES` (which the chart's ClusterRole equals) does not grant."""
    from modelops.controllers.permissions import RULES

    return [
        call
        for call in sorted(calls)
        if not any(
            call[0] in r["apiGroups"] and call[1] in r["resources"] and call[2] in r["verbs"] for r in RULES
        )
    ]
