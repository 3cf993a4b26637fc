"""Helpers of the image tests: podman with the project's setup (scripts/podman_env.py), the build script,
and `podman run` arguments for a container of a pod the operator built, the way the kubelet runs it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)  # build_images imports podman_env beside it
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


podman_env = _script("podman_env")
build_images = _script("build_images")


# Every shell of the image made unusable (an empty device over each): what runs with these mounts
# needs no shell at runtime, as a distroless-style image or a locked-down node would have it.
NO_SHELL = ["--volume", "/dev/null:/usr/bin/dash:ro", "--volume", "/dev/null:/usr/bin/bash:ro"]


def podman_environ() -> dict[str, str]:
    return {**os.environ, **podman_env.environment()}


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_environ()
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


@dataclass(frozen=True)
class BuiltImage:
    name: str
    reference: str
    size: int
    seconds: float | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, container: str) -> None:
    """Wait for `url` to answer 200; fail with the container's log if it does not or the container exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
        if state in {"exited", "stopped", ""}:
            break
        time.sleep(0.5)
    logs = podman("logs", container, check=False)
    pytest.fail(
        f"{url} did not answer within {timeout:.0f}s (container {state}):\n{logs.stdout}{logs.stderr}"
    )


def container_args(
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    volumes: Mapping[str, Path],
    termination_log: Path,
) -> tuple[list[str], list[str]]:
    """`podman run` arguments (before the image) and the arguments after it for one container of a pod the operator built, as the kubelet would run it:
    the pod's user and group, the container's restricted security context, its env, its mounts (each
    volume name mapped to a host directory by `volumes`, an emptyDir without one becomes a tmpfs), the
    termination log file, and its command and args (image entrypoint replaced by `command`)."""
    security = pod_spec.get("securityContext", {})
    own = container.get("securityContext", {})
    args = [
        "--user",
        f"{own.get('runAsUser', security['runAsUser'])}:{own.get('runAsGroup', security['runAsGroup'])}",
    ]
    if own.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if own.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [f"--cap-drop={cap}" for cap in own.get("capabilities", {}).get("drop", [])]
    for env in container.get("env", []):
        assert "value" in env, f"only literal env values here: {env}"
        args += ["--env", f"{env['name']}={env['value']}"]
    declared = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        name, path = mount["name"], mount["mountPath"]
        if name in volumes:
            args += ["--volume", f"{volumes[name]}:{path}:{'ro' if mount.get('readOnly') else 'rw'}"]
        elif "emptyDir" in declared.get(name, {}):
            args += ["--tmpfs", f"{path}:rw,mode=1777"]
        else:
            raise AssertionError(f"volume {name!r} of the pod has no host directory in this test")
    args += ["--volume", f"{termination_log}:/dev/termination-log:rw"]
    command = list(container.get("command", [])) + list(container.get("args", []))
    if command:
        args += ["--entrypoint", command[0]]
    return args, command[1:]


def owned_by_nonroot(path: Path, uid: int = 65532) -> Path:
    """A host directory or file (created empty if missing) the container's non-root user may write, as
    fsGroup and the kubelet's termination-log file would make it."""
    if not path.exists():
        path.touch()
    os.chown(path, uid, uid)
    return path
