"""A running local plane (API server + nodes process) for the scheduler and kubelet tests.

Both are started as real subprocesses, exactly as `modelops local up` starts them; the tests talk to
them with the real kubectl and the official kubernetes client.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(ROOT / ".tools" / "bin" / "kubectl")
WORKER_IMAGE = "ghcr.io/modelops/worker:test"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 40.0, interval: float = 0.2) -> Any:
    """Poll until `check()` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@dataclass
class Plane:
    dir: Path
    kubeconfig: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    node_args: list[str] = field(default_factory=list)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout + (result.stderr if not check else "")

    def apply(self, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        out = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def wait_pod(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            pod = self.pod(name)
            return pod if pod is not None and check(pod) else None

        return wait_for(f"pod {name}: {what}", probe, timeout)  # type: ignore[no-any-return]

    def wait_phase(self, name: str, phase: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_pod(
            name, lambda p: p.get("status", {}).get("phase") == phase, f"phase {phase}", timeout
        )

    def pod_dir(self, name: str, namespace: str = "default") -> Path:
        dirs = list((self.dir / "pods" / namespace / name).iterdir())
        assert len(dirs) == 1, dirs
        return dirs[0]

    def start(self, name: str, module: str, *args: str) -> None:
        """`python -m module args` as `modelops local up` starts it, logging to DIR/logs/<name>.log."""
        log = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def start_nodes(self) -> None:
        self.start(
            "nodes",
            "modelops_local.nodes",
            "--kubeconfig",
            str(self.kubeconfig),
            "--dir",
            str(self.dir),
            *self.node_args,
        )

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        """Stop every process, the last started first."""
        for name in reversed(list(self.procs)):
            self.stop(name)

    def logs(self) -> str:
        return (self.dir / "logs" / "nodes.log").read_text(errors="replace")


def start_apiserver(directory: Path, plane: Plane | None = None) -> Plane:
    """Start (or, given `plane`, restart) the API server; it writes a fresh kubeconfig when ready."""
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    plane = plane or Plane(directory, directory / "kubeconfig")
    plane.kubeconfig.unlink(missing_ok=True)
    plane.start("apiserver", "modelops_local.apiserver", "--dir", str(directory), "--port", "0")
    try:
        wait_for("the API server's kubeconfig", plane.kubeconfig.exists, timeout=60)
    except BaseException:
        plane.stop("apiserver")
        raise
    return plane


def start_plane(directory: Path, *node_args: str) -> Iterator[Plane]:
    """Generator for a module-scoped fixture: API server, then nodes, torn down in reverse."""
    plane = start_apiserver(directory)
    plane.node_args = list(node_args)
    try:
        plane.start_nodes()
        wait_for(
            "nodes to register",
            lambda: "Ready" in plane.kubectl("get", "nodes", check=False),
            timeout=60,
        )
        yield plane
    finally:
        plane.stop("nodes")
        plane.stop("apiserver")
        remove_runtime_root(directory)


def remove_runtime_root(directory: Path) -> None:
    """A root plane keeps its pods' files outside DIR (statedir.py); a test plane removes them."""
    link = directory / "runtime"
    if link.is_symlink():
        shutil.rmtree(os.readlink(link), ignore_errors=True)
