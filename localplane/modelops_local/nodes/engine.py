"""The container runtime of the local plane: pods' containers as real containers of podman or docker.

`modelops local up --runtime podman` (or `docker`) makes the kubelet start each container with the
engine's CLI instead of as a process (`pods.py` decides per container, this module builds the
command lines and reads the results). What a container gets, against the process runtime:

| pod spec | container runtime (this module) |
|---|---|
| image, imagePullPolicy | the engine's local image store; `Never`/`IfNotPresent` use a present image, `Always` and a missing image pull (no registry: `ErrImagePull` with the engine's own reason, then `ImagePullBackOff`); the project's images (`ghcr.io/modelops/*`) run as processes while the engine does not hold them |
| command / args | `--entrypoint <command[0]>` and the rest after the image: command replaces ENTRYPOINT and CMD, args replaces CMD, as on a cluster |
| env | `-e` per variable (valueFrom resolved by the kubelet) |
| volumes | bind mounts of the kubelet's host directories (`readOnly` is `:ro`), the termination log file at `terminationMessagePath` |
| securityContext | `--user uid:gid`, `--group-add` (supplementalGroups, fsGroup and the pod's file group), `--read-only`, `no-new-privileges`, `--cap-drop`/`--cap-add`, `--privileged` |
| limits | `--memory` (OOMKilled, 137, read back from the engine), `--cpus` |
| network | the host's (`--network host`): the pod's loopback IP (`MODELOPS_POD_IP`, `status.podIP`) reaches whatever the container binds on all interfaces; cluster names are `--add-host` entries as of the start |
| logs, exit code | the engine's attached output into the kubelet's log file; the engine's exit code and OOM flag |
| termination | `stop -t <grace>` (the image's stop signal, then SIGKILL), then `rm` |

Engines here run as root with `runc` and the cgroupfs manager (crun fails on this project's CI cgroup
layout): `MODELOPS_PODMAN_ARGS` overrides the global options (default `--runtime runc --cgroup-manager
cgroupfs --events-backend file`), and the resource limits (`--ulimit`) are the kubelet's own, with
nproc capped at 32768 because some sandboxes refuse more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelops_local.nodes.quantity import parse_quantity

Obj = Mapping[str, Any]

RUNTIMES = ("process", "podman", "docker")
POD_UID_LABEL = "dev.modelops.local/pod-uid"
PLANE_LABEL = "dev.modelops.local/plane"
DEFAULT_PODMAN_ARGS = "--runtime runc --cgroup-manager cgroupfs --events-backend file"
NPROC_CAP = 32768
PULL_TIMEOUT = 300.0


class EngineError(Exception):
    """The engine is missing or unusable: the nodes process refuses to start with this message."""


@dataclass(frozen=True)
class PullResult:
    """Whether a container's image can run; `reason` is a waiting reason when it cannot."""

    ok: bool
    reason: str = ""
    message: str = ""
    image_id: str = ""
    image_env: tuple[str, ...] = ()  # the image's own ENV (KEY=value), e.g. its PYTHONPATH


def pull_policy(container: Obj) -> str:
    """The container's imagePullPolicy, defaulted as the API server does (Always for :latest/no tag)."""
    policy = str(container.get("imagePullPolicy") or "")
    if policy:
        return policy
    image = str(container.get("image") or "")
    name = image.split("@", 1)[0]
    tagged = ":" in name.rsplit("/", 1)[-1]
    if "@" in image:
        return "IfNotPresent"
    return "Always" if not tagged or name.endswith(":latest") else "IfNotPresent"


def ulimit_args() -> list[str]:
    args = []
    for name, which, cap in (
        ("nofile", resource.RLIMIT_NOFILE, None),
        ("nproc", resource.RLIMIT_NPROC, NPROC_CAP),
    ):
        soft, hard = resource.getrlimit(which)
        if hard == resource.RLIM_INFINITY:
            hard = cap or 1048576
        if soft == resource.RLIM_INFINITY:
            soft = hard
        if cap is not None:
            soft, hard = min(soft, cap), min(hard, cap)
        args += ["--ulimit", f"{name}={soft}:{hard}"]
    return args


def _ints(values: Iterable[Any] | None) -> list[int]:
    out = []
    for v in values or []:
        with contextlib.suppress(TypeError, ValueError):
            out.append(int(v))
    return out


def security_args(pod: Obj, container: Obj, pod_group: int | None) -> list[str]:
    """`--user`, `--group-add`, read-only root, privileges and capabilities from the securityContext."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    user = sc.get("runAsUser", psc.get("runAsUser"))
    group = sc.get("runAsGroup", psc.get("runAsGroup"))
    args: list[str] = []
    if user is not None:
        args += ["--user", f"{int(user)}:{int(group)}" if group is not None else f"{int(user)}"]
    elif group is not None:
        args += ["--group-add", str(int(group))]
    groups = _ints(psc.get("supplementalGroups"))
    if psc.get("fsGroup") is not None:
        groups += _ints([psc.get("fsGroup")])
    if pod_group is not None:
        groups.append(pod_group)
    for g in dict.fromkeys(groups):
        args += ["--group-add", str(g)]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("privileged"):
        args.append("--privileged")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        args += ["--cap-drop", str(cap)]
    for cap in caps.get("add") or []:
        args += ["--cap-add", str(cap)]
    return args


def limit_args(container: Obj) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    args = []
    if limits.get("memory") is not None:
        args += ["--memory", str(int(parse_quantity(str(limits["memory"]))))]
    if limits.get("cpu") is not None:
        args += ["--cpus", f"{float(parse_quantity(str(limits['cpu']))):g}"]
    return args


def command_args(container: Obj, expand: Any) -> tuple[list[str], list[str]]:
    """(options before the image, arguments after it) for command/args with `$(VAR)` expanded."""
    command = [expand(str(a)) for a in container.get("command") or []]
    args = [expand(str(a)) for a in container.get("args") or []]
    if command:
        # The string form both engines take (docker has no JSON form): the first word replaces the
        # ENTRYPOINT, and naming one drops the image's CMD; the rest follow the image as arguments.
        return ["--entrypoint", command[0]], [*command[1:], *args]
    return [], args


class Engine:
    """One engine's CLI (`podman` or `docker`) with the global options every call needs."""

    def __init__(self, kind: str, binary: str, global_args: list[str]) -> None:
        self.kind = kind
        self.binary = binary
        self.base = [binary, *global_args]

    @classmethod
    def detect(cls, kind: str) -> Engine:
        binary = shutil.which(kind)
        if binary is None:
            raise EngineError(
                f"--runtime {kind}: the `{kind}` command is not installed on this machine; install it "
                f"(Debian: apt-get install {kind if kind == 'podman' else 'docker.io'} runc) or use "
                "--runtime process"
            )
        if kind == "podman":
            return cls(kind, binary, shlex.split(os.environ.get("MODELOPS_PODMAN_ARGS", DEFAULT_PODMAN_ARGS)))
        return cls(kind, binary, [])

    def version(self) -> str:
        import subprocess

        try:
            out = subprocess.run([*self.base, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            raise EngineError(f"--runtime {self.kind}: `{self.kind} version` failed: {e}") from None
        if out.returncode != 0:
            raise EngineError(f"--runtime {self.kind}: `{self.kind} version` failed: {out.stderr.strip()}")
        return out.stdout.strip()

    async def call(self, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.base, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return 124, "", f"`{self.kind} {' '.join(args[:2])}` timed out after {timeout:g}s"
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def image_info(self, image: str) -> dict[str, Any] | None:
        """The image's config (`Id`, `User`), or None when the engine does not hold it."""
        code, out, _ = await self.call("image", "inspect", image, timeout=60)
        if code != 0:
            return None
        with contextlib.suppress(ValueError, IndexError, AttributeError):
            data = json.loads(out)[0]
            config = data.get("Config") or {}
            env = tuple(str(e) for e in config.get("Env") or [])
            return {"Id": str(data.get("Id") or ""), "User": str(config.get("User") or ""), "Env": env}
        return None

    async def ensure_image(self, image: str, policy: str) -> PullResult:
        info = await self.image_info(image)
        if info is not None and policy != "Always":
            return PullResult(True, image_id=info["Id"], image_env=info["Env"])
        if policy == "Never":
            return PullResult(
                False,
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
        code, _, err = await self.call("pull", "--quiet", image, timeout=PULL_TIMEOUT)
        if code != 0:
            lines = [line.strip() for line in err.splitlines() if line.strip()]
            last = [line for line in lines if line.startswith("Error:")] or lines or [f"exit code {code}"]
            reason = last[-1].removeprefix("Error: ")[-1500:]
            hint = (
                " (no registry is reachable: build the image locally and set imagePullPolicy: IfNotPresent)"
            )
            return PullResult(False, "ErrImagePull", f'Failed to pull image "{image}": {reason}{hint}')
        info = await self.image_info(image) or {}
        return PullResult(True, image_id=info.get("Id", ""), image_env=info.get("Env", ()))

    async def state(self, name: str) -> tuple[int | None, bool]:
        """(exit code, OOM-killed) of a finished container; (None, False) when it is unknown."""
        fmt = "{{.State.ExitCode}} {{.State.OOMKilled}}"
        code, out, _ = await self.call("inspect", "--type", "container", "--format", fmt, name, timeout=60)
        if code != 0:
            return None, False
        parts = out.split()
        try:
            return int(parts[0]), parts[1:2] == ["true"]
        except (ValueError, IndexError):
            return None, False

    async def status(self, name: str) -> str:
        """The container's state (`created`, `running`, `exited`...), "" when the engine has none yet."""
        code, out, _ = await self.call("inspect", "--type", "container", "--format", "{{.State.Status}}", name,
                                       timeout=60)  # fmt: skip
        return out.strip() if code == 0 else ""

    async def stop(self, name: str, grace: float) -> None:
        await self.call("stop", "-t", str(max(0, int(grace + 0.999))), name, timeout=grace + 60)

    async def remove(self, name: str) -> None:
        await self.call("rm", "-f", name, timeout=120)

    async def remove_labelled(self, label: str, value: str | None = None) -> list[str]:
        """Remove every container carrying `label` (`=value`): what an earlier kubelet left running."""
        selector = f"label={label}" + (f"={value}" if value is not None else "")
        code, out, _ = await self.call("ps", "-a", "-q", "--filter", selector, timeout=60)
        ids = out.split() if code == 0 else []
        if ids:
            await self.call("rm", "-f", *ids, timeout=120)
        return ids

    def exec_prefix(self) -> list[str]:
        return [*self.base, "exec"]


def image_uid(user: str) -> int | None:
    """The numeric user an image runs as (`USER 65532`, `65532:65532`, empty = root), None when named."""
    name = user.split(":", 1)[0]
    if name in ("", "root"):
        return 0
    return int(name) if name.isdigit() else None
