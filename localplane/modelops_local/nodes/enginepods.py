"""One container run of a pod worker on a container engine (see `engine.py` for what a container gets).

`PodWorker` (pods.py) owns the pod: volumes, restarts, back-off, status. When the kubelet has an engine
and the container's image is one the engine can run, `run_once` here replaces the process start of
`PodWorker._run_once`: it builds the `run` command line, attaches the container's output to the
kubelet's log file, runs the probes (exec probes through `<engine> exec`), stops the container with
its grace period, and reads the exit code, the OOM flag and the termination message back.

The kubelet records `runtime.json` (the engine's exec prefix and the container's name) next to the
log, which is how the API server's `kubectl exec`, `cp` and `port-forward` reach the container
(`apiserver/streaming.py`); the file goes when the container ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops_local.nodes import containers, engine, identity
from modelops_local.nodes.events import now_iso
from modelops_local.sitecustomize import DIRECTORY as SITECUSTOMIZE_DIR

if TYPE_CHECKING:
    from modelops_local.nodes.pods import ContainerState, PodWorker

Obj = dict[str, Any]
SITE_MOUNT = "/run/modelops-local/site"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"


def container_name(pod_uid: str, container: str, restart: int) -> str:
    return f"modelops-{pod_uid}-{container}-{restart}"


def is_project_image(image: str) -> bool:
    return containers.default_command(image) is not None


async def choose(worker: PodWorker, spec: Obj) -> engine.PullResult | None:
    """The engine's verdict on the container's image; None when the process runtime runs it instead
    (a project image the engine does not hold: the platform works before its images are built)."""
    eng = worker.k.engine
    assert eng is not None
    image = str(spec.get("image") or "")
    policy = engine.pull_policy(spec)
    if is_project_image(image) and await eng.image_info(image) is None:
        return None
    return await eng.ensure_image(image, policy)


def _run_argv(
    worker: PodWorker,
    spec: Obj,
    c: ContainerState,
    env: Mapping[str, str],
    mounts: Mapping[str, Path],
    term_file: Path,
    name: str,
    image_env: tuple[str, ...] = (),
) -> list[str]:
    eng = worker.k.engine
    assert eng is not None
    pod = worker.pod
    args = ["run", "--name", name, "--network", "host", "--sig-proxy=false", "--pull", "never"]
    args += [
        "--label",
        f"{engine.POD_UID_LABEL}={worker.uid}",
        "--label",
        f"{engine.PLANE_LABEL}={worker.k.plane_id}",
    ]
    args += engine.ulimit_args()
    pod_group = worker.access.group
    args += engine.security_args(pod, spec, pod_group)
    args += engine.limit_args(spec)
    readonly = {
        "/" + str(m.get("mountPath") or "").strip("/"): bool(m.get("readOnly"))
        for m in spec.get("volumeMounts") or []
    }
    for mount_path, host in mounts.items():
        args += ["--volume", f"{host}:{mount_path}{':ro' if readonly.get(mount_path) else ''}"]
    term_path = str(spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
    args += ["--volume", f"{term_file}:{term_path}"]
    args += ["--volume", f"{SITECUSTOMIZE_DIR}:{SITE_MOUNT}:ro"]
    for ip, host_name in dict.fromkeys(worker.k.cluster.records()):
        args += ["--add-host", f"{host_name}:{ip}"]
    full_env = dict(env)
    full_env.setdefault("HOSTNAME", str((pod.get("spec") or {}).get("hostname") or worker.name))
    full_env["MODELOPS_POD_IP"] = "" if worker.host_network else worker.pod_ip
    full_env["MODELOPS_POD_NAMESPACE"] = worker.ns
    full_env["MODELOPS_POD_NAME"] = worker.name
    full_env["MODELOPS_POD_UID"] = worker.uid
    # Python code binds "all interfaces" on the pod's own IP through the plane's sitecustomize, so two
    # pods of one image can listen on one port on the shared host network.
    image_pp = next((e.split("=", 1)[1] for e in image_env if e.startswith("PYTHONPATH=")), "")
    user_pp = full_env.get("PYTHONPATH", image_pp)
    full_env["PYTHONPATH"] = f"{user_pp}:{SITE_MOUNT}" if user_pp else SITE_MOUNT
    if worker.gpus:
        full_env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, worker.gpus))
        full_env["CUDA_VISIBLE_DEVICES"] = ""
    for key, value in full_env.items():
        args += ["--env", f"{key}={value}"]
    if spec.get("workingDir"):
        args += ["--workdir", str(spec["workingDir"])]
    before, after = engine.command_args(spec, lambda text: containers.expand(text, env))
    return [*eng.base, *args, *before, str(spec.get("image")), *after]


async def run_once(
    worker: PodWorker,
    spec: Obj,
    c: ContainerState,
    env: dict[str, str],
    mounts: dict[str, Path],
    halt: asyncio.Event,
    pulled: engine.PullResult,
) -> int:
    eng = worker.k.engine
    assert eng is not None
    cdir = worker.dir / c.name
    cdir.mkdir(parents=True, exist_ok=True)
    worker.access.enterable(str(cdir))
    ident = identity.container_identity(worker.pod, spec, os.geteuid(), os.getegid())
    term_file = cdir / "termination-log"
    term_file.write_bytes(b"")
    user_set = identity.effective_context(worker.pod, spec).get("runAsUser") is not None
    worker.access.owned_file(str(term_file), ident.uid if user_set else None)
    if worker.access.group is None:
        os.chmod(term_file, 0o666)  # the image's own user (any uid) writes it
    log_path = cdir / f"{c.restart_count}.log"
    name = container_name(worker.uid, c.name, c.restart_count)
    await eng.remove(name)  # a leftover of a killed kubelet with the same run number
    argv = _run_argv(worker, spec, c, env, mounts, term_file, name, pulled.image_env)
    started_at = now_iso()
    c.container_id = f"{eng.kind}://{name}"
    with open(log_path, "ab") as log_file:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in an env value, which runc refuses too
            message = f"failed to create the container: {e}"
            return worker._terminated(c, spec, 128, "StartError", started_at, message, log_path)
    # Running only once the engine says so (creating a container takes it a good fraction of a second):
    # until then an exec or an exec probe would find no container.
    while proc.returncode is None and await eng.status(name) not in ("running", "exited", "stopped"):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 0.1)
    runtime = cdir / "runtime.json"
    runtime.write_text(json.dumps({"runtime": eng.kind, "exec": eng.exec_prefix(), "name": name}))
    await worker._event("Pulled", f'Container image "{spec.get("image")}" already present on machine', spec)
    await worker._event("Created", f"Created container: {c.name}", spec)
    c.state = {"running": {"startedAt": started_at}}
    c.image_id = pulled.image_id
    c.started = "startupProbe" not in spec
    c.ready = c.started and "readinessProbe" not in spec
    worker._mark()
    await worker._event("Started", f"Started container {c.name}", spec)
    killed = asyncio.Event()
    prefix = [*eng.exec_prefix(), name]
    host_env = dict(os.environ)
    probes = asyncio.create_task(worker._probe(spec, c, host_env, str(cdir), {}, killed, prefix))
    waiter = asyncio.create_task(proc.wait())
    stop = asyncio.create_task(halt.wait())
    kill = asyncio.create_task(killed.wait())
    began = time.monotonic()
    stopped = False
    try:
        await asyncio.wait({waiter, stop, kill}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            stopped = True
            grace = worker.grace_seconds() if halt.is_set() else worker._probe_grace(spec)
            if halt.is_set():
                await worker._event("Killing", f"Stopping container {c.name}", spec)
            grace -= await worker._pre_stop(spec, host_env, str(cdir), {}, grace, waiter, prefix)
            await eng.stop(name, grace)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        await waiter
    finally:
        for t in (probes, stop, kill):
            t.cancel()
        runtime.unlink(missing_ok=True)
    code, oom = await eng.state(name)
    if code is None:  # the engine lost the container: its CLI's own exit code is all there is
        rc = proc.returncode if proc.returncode is not None else -9
        code = 128 - rc if rc < 0 else rc
    await eng.remove(name)
    if code in (125, 126, 127) and time.monotonic() - began < 5 and not _ran(log_path):
        message = _read(log_path).strip()[-1024:] or f"{eng.kind} run failed with exit code {code}"
        return worker._terminated(c, spec, 128, "StartError", started_at, message, log_path)
    limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    # Not every engine sees the kernel's OOM kill (podman with cgroupfs on cgroup v1 does not): a
    # SIGKILL the kubelet did not send to a memory-limited container is the kernel's OOM killer.
    oom = oom or (code == 137 and limit is not None and not stopped)
    reason = "Completed" if code == 0 else ("OOMKilled" if oom else "Error")
    if oom:
        await worker._event("OOMKilled", f"Container {c.name} was killed by the engine: over its memory limit {limit}",
                            spec, warning=True)  # fmt: skip
    return worker._terminated(c, spec, code, reason, started_at, "", log_path)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _ran(log_path: Path) -> bool:
    """Whether the log shows the container's own output rather than only the engine's start error."""
    text = _read(log_path)
    return bool(text) and not text.lstrip().startswith("Error:")


async def image_uid(eng: engine.Engine, spec: Obj) -> int:
    """The user the container's image runs as, for the kubelet's runAsNonRoot check (-1: a named user,
    which the check cannot judge and lets pass)."""
    info = await eng.image_info(str(spec.get("image") or ""))
    uid = engine.image_uid(str((info or {}).get("User") or ""))
    return -1 if uid is None else uid
