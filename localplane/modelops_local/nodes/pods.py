"""One pod on one local node: its containers as processes, probes, restarts and status.

A `PodWorker` is the kubelet's pod worker: it sets up the pod's "sandbox" (IP, GPUs, volumes), runs
init containers in order and then the app containers, restarts them per restartPolicy with the
kubelet's CrashLoopBackOff (10 s doubling to 5 min, reset after 10 min of running), and reports
containerStatuses, conditions and phase through the status subresource. Each container is its own
process group and its own process tree (`proctree.py`: a cgroup, or /proc tracking), so one pod's
crash never touches another pod or the kubelet, and every process it started ends with it; the main
process also dies with the kubelet (PR_SET_PDEATHSIG), and a restarted kubelet kills what is left.
On a root plane each container runs as its securityContext's user (`identity.py`).

On deletion (deletionTimestamp) it sends SIGTERM to every container's process group, waits the
grace period, sends SIGKILL to every process of the container, and then deletes the Pod object with
gracePeriodSeconds=0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from modelops_local import statedir
from modelops_local.client import ApiError
from modelops_local.nodes import containers, enginepods, identity, network, proctree
from modelops_local.nodes.events import now_iso
from modelops_local.nodes.memory import session_of
from modelops_local.nodes.probes import run_probe
from modelops_local.nodes.quantity import parse_quantity
from modelops_local.nodes.scheduling import pod_requests
from modelops_local.sitecustomize import DIRECTORY as SITECUSTOMIZE_DIR


def _image_paths() -> str:
    """What the project's images hold on this machine: the Python environment and our packages' sources.

    A container's volumes never hide its image, but here the "image" is this machine's files: with the
    checkout (an editable install) or the venv under /tmp, an emptyDir at /tmp would otherwise hide
    `modelops` itself from the pod's interpreter. pathmap leaves these prefixes alone.
    """
    paths = [sys.prefix]
    for package in ("modelops", "modelops_local", "modelops_worker"):
        spec = importlib.util.find_spec(package)  # no import: the worker package pulls in torch
        if spec is not None and spec.origin:
            paths.append(str(Path(spec.origin).resolve().parent.parent))
    return os.pathsep.join(dict.fromkeys(paths))


IMAGE_PATHS = _image_paths()


if TYPE_CHECKING:
    from modelops_local.nodes.kubelet import Kubelet

log = logging.getLogger(__name__)

Obj = dict[str, Any]

KUBELET_CONDITIONS = {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0
NAME_WAIT_SECONDS = 60.0
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
DEFAULT_TERMINATION_PATH = "/dev/termination-log"

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
with contextlib.suppress(OSError, AttributeError):  # not Linux: processes then outlive a crashed kubelet
    _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _setpriv() -> str | None:
    """util-linux setpriv, when it can set the parent-death signal before exec'ing the container.

    Preferred over a preexec_fn: Python code in the child forces fork() and makes the event loop
    wait for the child's exec (tens of ms per container start), where exec'ing setpriv allows vfork.
    """
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        ok = subprocess.run([path, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if ok.returncode == 0 else None


_SETPRIV = _setpriv()


def setpriv_path() -> str | None:
    return _SETPRIV


@dataclass
class ContainerState:
    """What the kubelet knows of one container; `status()` is its containerStatuses entry."""

    name: str
    image: str
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    done: bool = False
    exit_code: int | None = None
    container_id: str = ""
    image_id: str = ""

    def status(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    def waiting(self, reason: str, message: str = "") -> None:
        self.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        self.ready = False
        self.started = False


# Failures that say nothing about the pod: retried rather than failing it.
_TRANSIENT: tuple[type[BaseException], ...] = (ApiError, aiohttp.ClientError, OSError, TimeoutError)


_CONFIG_RETRY: tuple[type[BaseException], ...] = (containers.ConfigError, *_TRANSIENT)
_MOUNT_RETRY: tuple[type[BaseException], ...] = (containers.MountError, *_TRANSIENT)


def _parse_time(stamp: str) -> float | None:
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _exit_code(returncode: int) -> int:
    # A process killed by signal N reports 128+N, as container runtimes do (SIGKILL -> 137).
    return 128 - returncode if returncode < 0 else returncode


def _read_tail(path: Path, max_bytes: int, max_lines: int | None = None) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if max_lines is not None:
        text = "\n".join(text.splitlines()[-max_lines:])
    return text


def qos_class(pod: Mapping[str, Any]) -> str:
    all_containers = list((pod.get("spec") or {}).get("containers") or [])
    all_containers += list((pod.get("spec") or {}).get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in all_containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _rewrite_exec(
    probe: Obj | None, rewrite: Mapping[str, Path], env: Mapping[str, str], keep: Iterable[str] = ()
) -> Obj | None:
    if not probe or "exec" not in probe:
        return probe
    command = (probe["exec"] or {}).get("command") or []
    keep = list(keep)
    rewritten = [containers.rewrite_paths(containers.expand(str(a), env), rewrite, keep) for a in command]
    return {**probe, "exec": {"command": rewritten}}


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        self.k = kubelet
        self.pod = pod
        meta = pod.get("metadata") or {}
        self.ns = str(meta.get("namespace") or "default")
        self.name = str(meta.get("name"))
        self.uid = str(meta.get("uid"))
        self.dir = kubelet.root / "pods" / self.ns / self.name / self.uid
        self.access = identity.Access.for_pod(
            pod, root=kubelet.switch_users, plane_uid=os.geteuid(), plane_gid=os.getegid()
        )
        spec = pod.get("spec") or {}
        self.policy = str(spec.get("restartPolicy") or "Always")
        self.init_specs: list[Obj] = list(spec.get("initContainers") or [])
        self.app_specs: list[Obj] = list(spec.get("containers") or [])
        self.inits = {c["name"]: ContainerState(c["name"], str(c.get("image"))) for c in self.init_specs}
        self.apps = {c["name"]: ContainerState(c["name"], str(c.get("image"))) for c in self.app_specs}
        for c in self.apps.values():
            if self.init_specs:
                c.waiting("PodInitializing")
        # `stopping`: end every container and restart none (deletion, deadline, node shutdown);
        # `deleting`: the object is being deleted, so remove it once the containers have ended.
        self.stopping = asyncio.Event()
        self.deleting = False
        self.gone = False
        self.detached: float | None = None
        self.initialized = not self.init_specs
        self.failure: tuple[str, str] | None = None  # pod-level reason, message
        self.pod_ip = ""
        self.gpus: list[int] = []
        self.volumes: dict[str, Path] = {}
        self.start_time = now_iso()
        self._conditions: dict[str, Obj] = {}
        self._dirty = asyncio.Event()
        self._sent: Obj | None = None
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._trackers: dict[str, proctree.Tracker] = {}
        self._sidecars: list[asyncio.Task[int | None]] = []
        self._sidecar_stop = asyncio.Event()
        self._deadline: asyncio.Task[None] | None = None
        self._refreshers: list[asyncio.Task[None]] = []
        self.host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        self._gated = bool((pod.get("spec") or {}).get("readinessGates"))
        self._adopt()

    # ----- inputs from the kubelet -----

    def update(self, pod: Obj) -> None:
        old_conditions = (self.pod.get("status") or {}).get("conditions")
        self.pod = pod
        if (pod.get("status") or {}).get("conditions") != old_conditions and self._gated:
            self._mark()  # a readiness gate may have opened or closed
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.deleting = True
            self.stopping.set()

    def deleted(self) -> None:
        """The object is gone from the API (force deletion): stop without reporting."""
        self.gone = True
        self.deleting = True
        self.stopping.set()

    def detach(self, grace: float) -> None:
        """The node is shutting down: stop the processes, leave the pod object for the next start."""
        self.detached = grace
        self.stopping.set()

    def grace_seconds(self) -> float:
        meta, spec = self.pod.get("metadata") or {}, self.pod.get("spec") or {}
        if self.gone:
            return 0.0
        if self.detached is not None:
            return self.detached
        for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
            if value is not None:
                return float(value)
        return 30.0

    def _adopt(self) -> None:
        """Continue from the status an earlier kubelet reported (see the module docstring)."""
        status = self.pod.get("status") or {}
        self.pod_ip = str(status.get("podIP") or "")
        self.start_time = str(status.get("startTime") or self.start_time)
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Initialized"
                and cond.get("status") == "True"
                and status.get("containerStatuses")
            ):
                self.initialized = True
        for key, states in (("initContainerStatuses", self.inits), ("containerStatuses", self.apps)):
            for old in status.get(key) or []:
                c = states.get(str(old.get("name")))
                if c is None:
                    continue
                c.restart_count = int(old.get("restartCount") or 0)
                c.last_state = dict(old.get("lastState") or {})
                old_state = old.get("state") or {}
                if "running" in old_state:
                    # The process died with the previous kubelet; report it like a killed container.
                    c.state = {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "Error",
                            "message": "the local kubelet restarted while this container ran",
                            "startedAt": old_state["running"].get("startedAt"),
                            "finishedAt": now_iso(),
                        }
                    }
                    c.exit_code = 137
                elif "terminated" in old_state:
                    c.state = dict(old_state)
                    c.exit_code = int(old_state["terminated"].get("exitCode") or 0)
        if status.get("containerStatuses") or status.get("initContainerStatuses"):
            self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """Kill what survived an earlier kubelet of this pod (grandchildren outlive PDEATHSIG).

        Only processes whose environment names this pod are killed: after a reboot a recorded
        process group id may belong to anything.
        """
        if proctree.kill_pod_cgroups(self.k.cgroups, self.uid):
            log.info("pod %s/%s: killed what an earlier kubelet left in its cgroups", self.ns, self.name)
        sessions: set[int] = set()
        for pid_file in self.dir.glob("*/pid"):
            with contextlib.suppress(OSError, ValueError):
                sessions.add(int(pid_file.read_text().split()[0]))
            with contextlib.suppress(OSError):
                pid_file.unlink()
        if not sessions:
            return
        marker = f"MODELOPS_POD_UID={self.uid}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or session_of(int(entry)) not in sessions:
                continue
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker not in f.read().split(b"\0"):
                        continue
                os.kill(int(entry), signal.SIGKILL)

    # ----- main flow -----

    async def run(self) -> None:
        sync = asyncio.create_task(self._sync_loop(), name=f"sync-{self.name}")
        try:
            await self._run()
        except Exception as e:
            log.exception("pod %s/%s: worker failed", self.ns, self.name)
            self.failure = ("KubeletError", f"the local kubelet failed to run the pod: {e}")
        finally:
            await self._stop_all()
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
            if self.detached is None:
                if not self.gone:
                    await self._flush()
                self.k.release(self.uid)
                if self.deleting and not self.gone:
                    await self._delete_object()
                if self.deleting:
                    self._cleanup()

    async def _run(self) -> None:
        requests = pod_requests(self.pod)
        wanted = int(requests.get("nvidia.com/gpu", 0))
        gpus = self.k.assign_gpus(self.uid, wanted)
        if gpus is None:
            self.failure = (
                "UnexpectedAdmissionError",
                "Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. "
                f"Requested: {wanted}, Available: {self.k.free_gpus()}, which is unexpected",
            )
            self._mark()
            return
        self.gpus = gpus
        await self.k.cluster.pods.synced.wait()
        if self.host_network:
            self.pod_ip = self.k.host_ip
        else:
            self.pod_ip = self.pod_ip or self.k.cluster.ips.allocate(self.uid)
            self.k.cluster.ips.reserve(self.uid, self.pod_ip)
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is not None:
            self._deadline = asyncio.create_task(self._enforce_deadline(float(deadline)))
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.k.switch_users:  # other users pass through ROOT/pods/<ns>/<name> to their pod's directory
            statedir.traversable(self.dir, self.k.root)
        self.access.enterable(str(self.dir))
        (self.dir / "gpus").write_text(",".join(map(str, gpus)))
        self._set_condition("PodScheduled", True)
        self._set_condition("PodReadyToStartContainers", True)
        self._mark()
        while not self.stopping.is_set():
            try:
                self.volumes = await containers.prepare_volumes(
                    self.k.api, self.pod, self.dir, self.k.allocatable, access=self.access
                )
                for path in self.volumes.values():
                    if self.k.switch_users and self.dir not in path.parents:  # claims: ROOT/volumes/<ns>/
                        statedir.traversable(path, self.k.root)
                break
            except containers.MountError as e:
                await self.k.events.emit(self.pod, "FailedMount", str(e), type_="Warning")
                await self._sleep(2.0)
            except _TRANSIENT as e:  # the API server is restarting or overloaded: try again
                log.warning("pod %s/%s: volumes not ready (%s); retrying", self.ns, self.name, e)
                await self._sleep(2.0)
        volumes = (self.pod.get("spec") or {}).get("volumes") or []
        refresh = containers.token_refresh_seconds(self.pod)
        if refresh is not None:
            self._refreshers.append(asyncio.create_task(self._refresh(refresh, containers.has_token)))
        if any(containers.is_projection(v) and not containers.has_token(v) for v in volumes):
            # ConfigMap and Secret edits reach mounted files (not subPath ones), as the kubelet's resync.
            resync = lambda v: containers.is_projection(v) and not containers.has_token(v)  # noqa: E731
            self._refreshers.append(asyncio.create_task(self._refresh(self.k.config_resync, resync)))
        if not self.initialized:
            for spec in self.init_specs:
                if spec.get("restartPolicy") == "Always":
                    # A sidecar: the next init container starts once it has started; it runs next to
                    # the app containers and is stopped after them.
                    sidecar = self.inits[spec["name"]]
                    task = asyncio.create_task(self._run_container(spec, sidecar, True, self._sidecar_stop))
                    self._sidecars.append(task)
                    while not (sidecar.started or task.done() or self.stopping.is_set()):
                        await asyncio.sleep(0.05)
                    continue
                code = await self._run_container(spec, self.inits[spec["name"]], True)
                if self.stopping.is_set():
                    return
                if code != 0:
                    return  # restartPolicy Never: the pod has failed
            self.initialized = True
            self._mark()
        tasks = [
            asyncio.create_task(self._run_container(s, self.apps[s["name"]], False)) for s in self.app_specs
        ]
        await asyncio.gather(*tasks)

    async def _refresh(self, every: float, select: Callable[[Mapping[str, Any]], bool]) -> None:
        """Rewrite the selected volumes every `every` seconds (tokens before they expire, config)."""
        while not self.stopping.is_set():
            await self._sleep(every)
            if self.stopping.is_set():
                return
            try:
                await containers.prepare_volumes(
                    self.k.api, self.pod, self.dir, self.k.allocatable, select, access=self.access
                )
            except _MOUNT_RETRY as e:
                log.warning("pod %s/%s: token refresh failed (%s); retrying", self.ns, self.name, e)
                await self._sleep(10.0)

    async def _enforce_deadline(self, seconds: float) -> None:
        started = _parse_time(self.start_time)
        await self._sleep(max(0.0, started + seconds - time.time()) if started else seconds)
        if self.stopping.is_set():
            return
        message = "Pod was active on the node longer than the specified deadline"
        self.failure = ("DeadlineExceeded", message)
        await self.k.events.emit(self.pod, "DeadlineExceeded", message, type_="Warning")
        self.stopping.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the pod is being deleted."""
        await self._sleep_until(self.stopping, seconds)

    @staticmethod
    async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    def _should_restart(self, init: bool, code: int, sidecar: bool = False) -> bool:
        if sidecar:
            return True
        if init:
            return code != 0 and self.policy != "Never"
        return self.policy == "Always" or (self.policy == "OnFailure" and code != 0)

    async def _run_container(
        self, spec: Obj, c: ContainerState, init: bool, stop: asyncio.Event | None = None
    ) -> int | None:
        """Run one container until it needs no restart; its last exit code (None if stopped first).

        `stop` ends it (the pod's `stopping` unless given: sidecars have their own, set after the app
        containers have ended).
        """
        stop = stop or self.stopping
        sidecar = stop is not self.stopping
        backoff = 0.0
        pull_backoff = 0.0
        config_backoff = 0.0
        if c.done or (c.exit_code is not None and not self._should_restart(init, c.exit_code, sidecar)):
            c.done = True
            self._mark()
            return c.exit_code
        if c.exit_code is not None:
            c.last_state, c.restart_count = c.state, c.restart_count + 1
        while not stop.is_set():
            await self._check_pull_secrets()
            command = containers.default_command(str(spec.get("image") or ""))
            # With a container engine (enginepods.py) the engine runs what it holds or can pull.
            pulled = await enginepods.choose(self, spec) if self.k.engine is not None else None
            if pulled is not None:
                command = [] if pulled.ok else None
            if command is None:
                message = pulled.message if pulled else containers.pull_error_message(str(spec.get("image")))
                c.waiting(pulled.reason if pulled else "ErrImagePull", message)
                self._mark()
                await self._event("Failed", message, spec, warning=True)
                await self._sleep_until(stop, 1.0)
                pull_backoff = min(max(pull_backoff * 2, 5.0), BACKOFF_MAX)
                if pulled is None or pulled.reason == "ErrImagePull":  # ErrImageNeverPull stays as it is
                    c.waiting("ImagePullBackOff", f'Back-off pulling image "{spec.get("image")}"')
                self._mark()
                await self._sleep_until(stop, pull_backoff)
                continue
            try:
                image_uid = os.geteuid()
                if pulled is not None and self.k.engine is not None:
                    image_uid = await enginepods.image_uid(self.k.engine, spec)
                refused = identity.verify_run_as_non_root(self.pod, spec, image_uid=image_uid)
                if refused:
                    raise containers.ConfigError(refused)
                env = await self._env(spec)
                mounts = containers.container_mounts(spec, self.volumes)
            except _CONFIG_RETRY as e:
                c.waiting("CreateContainerConfigError", str(e) or type(e).__name__)
                self._mark()
                await self._event("Failed", f"Error: {e}", spec, warning=True)
                # Retried soon at first (the ConfigMap is often created right after the pod).
                config_backoff = min(max(config_backoff * 2, 1.0), 10.0)
                await self._sleep_until(stop, config_backoff)
                continue
            await self._wait_for_names(env)
            if stop.is_set():
                break
            started = time.monotonic()
            if pulled is not None:
                code = await enginepods.run_once(self, spec, c, env, mounts, stop, pulled)
            else:
                code = await self._run_once(spec, c, command, env, mounts, stop)
            if stop.is_set() or not self._should_restart(init, code, sidecar):
                c.done = True
                self._mark()
                return code
            if time.monotonic() - started > BACKOFF_RESET_AFTER:
                backoff = 0.0
            c.last_state = c.state
            if backoff > 0:
                message = (
                    f"back-off {backoff:g}s restarting failed container={c.name} "
                    f"pod={self.name}_{self.ns}({self.uid})"
                )
                c.waiting("CrashLoopBackOff", message)
                self._mark()
                await self._event(
                    "BackOff",
                    f"Back-off restarting failed container {c.name} in pod {self.name}_{self.ns}({self.uid})",
                    spec,
                    warning=True,
                )
                await self._sleep_until(stop, backoff)
                if stop.is_set():
                    break
            backoff = min(max(backoff * 2, self.k.backoff_base), BACKOFF_MAX)
            c.restart_count += 1
        return c.exit_code

    async def _env(self, spec: Obj) -> dict[str, str]:
        env = await containers.container_env(
            self.k.api,
            self._pod_with_ip(),
            spec,
            self.k.allocatable,
            self.k.cluster.service_env(self.ns),
            self.k.in_cluster_env(),
        )
        return env

    def _keep(self, mounts: Mapping[str, Path]) -> list[str]:
        """Host paths a mountPath never hides (see `containers.rewrite_paths`): the interpreter and the
        project's "image", the plane's directory (where a test or the demo keeps a script for a pod)
        and the volumes' host directories."""
        keep = [*IMAGE_PATHS.split(os.pathsep), sys.prefix, self.k.bin_dir, str(self.k.root), str(self.k.dir)]
        keep += [os.path.dirname(str(self.k.cluster.hosts_path)), *(str(p) for p in mounts.values())]
        return [k for k in keep if k]

    def _pod_with_ip(self) -> Obj:
        status = {**(self.pod.get("status") or {}), "podIP": self.pod_ip, "hostIP": self.k.host_ip}
        return {**self.pod, "status": status}

    async def _wait_for_names(self, env: Mapping[str, str]) -> None:
        """Give a starting peer (e.g. rank 0 of a headless service) time to get its address."""
        deadline = time.monotonic() + NAME_WAIT_SECONDS
        services = self.k.cluster.services.items()
        while not self.stopping.is_set() and time.monotonic() < deadline:
            records = self.k.cluster.records()
            missing = [
                name
                for value in env.values()
                for name in network.unresolved_cluster_names(value, self.ns, services)
                if not network.resolve(records, name, self.ns)
            ]
            if not missing:
                return
            await self._sleep(0.5)
        # Start anyway: the program may retry resolution itself.

    def _process_env(
        self,
        env: Mapping[str, str],
        mounts: Mapping[str, Path],
        rewrite: Mapping[str, Path],
        term_file: Path,
        term_from: str,
    ) -> dict[str, str]:
        bin_dir = self.k.bin_dir
        base: dict[str, str] = {
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.dir / "home"),
            "HOSTNAME": str((self.pod.get("spec") or {}).get("hostname") or self.name),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            # Both images set these in their Dockerfiles: logs stream as they are written, and the
            # user 65532 has a name without an /etc/passwd entry (getpass.getuser(), e.g. in kopf).
            "PYTHONUNBUFFERED": "1",
            "LOGNAME": "nonroot",
            "USER": "nonroot",
            "CUDA_VISIBLE_DEVICES": "",
            # With hostNetwork the pod has the host's addresses: binds are left as written.
            "MODELOPS_POD_IP": "" if self.host_network else self.pod_ip,
            "MODELOPS_POD_NAMESPACE": self.ns,
            "MODELOPS_POD_NAME": self.name,
            # The controllers' metrics find a pod's processes by this variable in /proc/<pid>/environ.
            "MODELOPS_POD_UID": self.uid,
            "MODELOPS_LOCAL_HOSTS": str(self.k.cluster.hosts_path),
            "MODELOPS_LOCAL_ROOT": str(self.dir / "rootfs"),
            "MODELOPS_LOCAL_MOUNTS": containers.mounts_json(mounts),
            "MODELOPS_LOCAL_PASSTHROUGH": IMAGE_PATHS,
            "MODELOPS_TERMINATION_MESSAGE_PATH": str(term_file),
            "MODELOPS_TERMINATION_MESSAGE_FROM": term_from,
        }
        if self.gpus:
            base["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        records = self.k.cluster.records()
        keep = self._keep(rewrite)
        rewritten = {
            k: network.rewrite_cluster_names(containers.rewrite_paths(v, rewrite, keep), records, self.ns)
            for k, v in env.items()
        }
        out = {**base, **rewritten}
        user_pp = rewritten.get("PYTHONPATH")
        out["PYTHONPATH"] = f"{user_pp}:{SITECUSTOMIZE_DIR}" if user_pp else str(SITECUSTOMIZE_DIR)
        return out

    async def _run_once(
        self,
        spec: Obj,
        c: ContainerState,
        image_command: list[str],
        env: dict[str, str],
        mounts: dict[str, Path],
        halt: asyncio.Event,
    ) -> int:
        ident = (
            identity.container_identity(self.pod, spec, os.geteuid(), os.getegid())
            if self.k.switch_users
            else None
        )
        cdir = self.dir / c.name
        cdir.mkdir(parents=True, exist_ok=True)
        self.access.enterable(str(cdir))
        (self.dir / "home").mkdir(exist_ok=True)
        self.access.writable(str(self.dir / "home"))
        term_file = cdir / "termination-log"
        term_file.write_bytes(b"")
        self.access.owned_file(str(term_file), ident.uid if ident else None)
        term_path = str(spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
        rootfs = self.dir / "rootfs"
        containers.link_rootfs(rootfs, mounts)
        for here, _dirs, _files in os.walk(rootfs):  # links are not followed: volumes keep their modes
            self.access.writable(here)
        rewrite = {**mounts, term_path: term_file}
        if spec.get("command"):
            argv = [containers.expand(str(a), env) for a in spec["command"]]
            argv += [containers.expand(str(a), env) for a in spec.get("args") or []]
        else:
            argv = list(image_command) + [containers.expand(str(a), env) for a in spec.get("args") or []]
        keep = self._keep(rewrite)
        argv = [containers.rewrite_paths(a, rewrite, keep) for a in argv]
        penv = self._process_env(env, mounts, rewrite, term_file, term_path)
        workdir = str(spec.get("workingDir") or "")
        cwd = rootfs
        if workdir:
            mapped = containers.rewrite_paths(workdir, mounts, keep)
            cwd = Path(mapped) if mapped != workdir else rootfs / workdir.lstrip("/")
            if not cwd.exists():
                cwd.mkdir(parents=True)
                for here, _dirs, _files in os.walk(rootfs):
                    self.access.writable(here)
        log_path = cdir / f"{c.restart_count}.log"
        c.container_id = f"local://{self.uid}/{c.name}/{c.restart_count}"
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=penv["PATH"])
        started_at = now_iso()
        if exe is None or not os.access(exe, os.X_OK):
            message = (
                f'failed to create containerd task: exec: "{argv[0]}": executable file not found in $PATH'
            )
            log_path.write_text(message + "\n")
            return self._terminated(c, spec, 128, "StartError", started_at, message, log_path)
        bad = next((k for k, v in penv.items() if "\0" in k or "\0" in v or "=" in k), None)
        if bad is not None:
            # What runc answers for a variable it cannot set (a Secret value with a NUL byte).
            message = (
                "failed to create containerd task: OCI runtime create failed: unable to start container "
                f"process: setenv: invalid argument (environment variable {bad.split(chr(0))[0]!r})"
            )
            log_path.write_text(message + "\n")
            return self._terminated(c, spec, 128, "StartError", started_at, message, log_path)
        tracker = self._tracker(c)
        penv[proctree.MARKER] = c.container_id
        prefix = self._launcher(tracker, ident)
        with open(log_path, "ab") as log_file:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *prefix,
                    exe,
                    *argv[1:],
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=str(cwd),
                    env=penv,
                    start_new_session=True,
                    preexec_fn=None if _SETPRIV else _die_with_parent,
                )
            except OSError as e:
                tracker.release()
                return self._terminated(
                    c, spec, 128, "StartError", started_at, f"failed to start: {e}", log_path
                )
        if isinstance(tracker, proctree.ProcTracker):
            tracker.main = proc.pid
        self._procs[c.name] = proc
        self._trackers[c.name] = tracker
        await self._event("Pulled", f'Container image "{spec.get("image")}" already present on machine', spec)
        await self._event("Created", f"Created container: {c.name}", spec)
        (cdir / "pid").write_text(f"{proc.pid}\n")
        c.state = {"running": {"startedAt": started_at}}
        c.started = "startupProbe" not in spec
        c.ready = c.started and "readinessProbe" not in spec
        self._mark()
        await self._event("Started", f"Started container {c.name}", spec)
        killed = asyncio.Event()
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        oom: list[int] = []
        if limit is not None:

            def exceeded(used: int) -> None:
                oom.append(used)
                tracker.kill()

            self.k.cluster.memory.watch(c.container_id, tracker, int(parse_quantity(limit)), exceeded)
        probes = asyncio.create_task(self._probe(spec, c, penv, str(cwd), rewrite, killed, prefix))
        waiter = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(halt.wait())
        kill = asyncio.create_task(killed.wait())
        try:
            await asyncio.wait({waiter, stop, kill}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                grace = self.grace_seconds() if halt.is_set() else self._probe_grace(spec)
                if halt.is_set():
                    await self._event("Killing", f"Stopping container {c.name}", spec)
                grace -= await self._pre_stop(spec, penv, str(cwd), rewrite, grace, waiter, prefix)
                await self._terminate(proc, grace)
            await waiter
        finally:
            for t in (probes, stop, kill, waiter):
                t.cancel()
            self.k.cluster.memory.unwatch(c.container_id)
            # Every other process the container started ends with it, whatever session it made.
            await self._end_all(tracker)
            with contextlib.suppress(OSError):
                (cdir / "pid").unlink()
            self._procs.pop(c.name, None)
            self._trackers.pop(c.name, None)
        code = _exit_code(proc.returncode if proc.returncode is not None else -9)
        reason = "Completed" if code == 0 else ("OOMKilled" if oom else "Error")
        if oom:
            await self._event(
                "OOMKilled",
                f"Container {c.name} used {oom[0] // 2**20}Mi (proportional set size), over its memory limit {limit}",
                spec,
                warning=True,
            )
        return self._terminated(c, spec, code, reason, started_at, "", log_path)

    def _terminated(
        self,
        c: ContainerState,
        spec: Obj,
        code: int,
        reason: str,
        started_at: str,
        message: str,
        log_path: Path,
    ) -> int:
        term_file = self.dir / c.name / "termination-log"
        text = message or _read_tail(term_file, TERMINATION_MESSAGE_LIMIT)
        if text and not message:
            # The file is read from its start, as the kubelet does; keep only the first 4 KiB.
            with contextlib.suppress(OSError):
                text = term_file.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "replace")
        if not text and code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            text = _read_tail(log_path, FALLBACK_LOG_BYTES, FALLBACK_LOG_LINES)
        terminated: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": now_iso(),
            "containerID": c.container_id,
        }
        if text:
            terminated["message"] = text
        c.state = {"terminated": terminated}
        c.exit_code = code
        c.ready = False
        c.started = False
        self._mark()
        return code

    async def _pre_stop(
        self,
        spec: Obj,
        env: dict[str, str],
        cwd: str,
        rewrite: Mapping[str, Path],
        grace: float,
        waiter: asyncio.Task[int],
        prefix: list[str],
    ) -> float:
        """Run the preStop hook within the grace period; returns the seconds it used."""
        hook = ((spec.get("lifecycle") or {}).get("preStop")) or {}
        if not hook or grace <= 0:
            return 0.0
        began = time.monotonic()
        if "sleep" in hook:
            seconds = float((hook["sleep"] or {}).get("seconds") or 0)
            await asyncio.wait({waiter}, timeout=min(seconds, grace))
        else:
            probe = _rewrite_exec({**hook, "timeoutSeconds": grace}, rewrite, env, self._keep(rewrite)) or {}
            ok, message = await run_probe(
                probe, spec, pod_ip=self.pod_ip, env=env, cwd=cwd, session=self.k.http(), prefix=prefix
            )
            if not ok:
                await self._event("FailedPreStopHook", f"PreStopHook failed: {message}", spec, warning=True)
        return time.monotonic() - began

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), max(grace, 0.0))
        except TimeoutError:
            tracker = next((t for n, t in self._trackers.items() if self._procs.get(n) is proc), None)
            if tracker is not None:
                await asyncio.to_thread(tracker.kill)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _tracker(self, c: ContainerState) -> proctree.Tracker:
        if self.k.cgroups is not None:
            return proctree.CgroupTracker(self.k.cgroups / self.uid / f"{c.name}-{c.restart_count}")
        return proctree.ProcTracker(c.container_id)

    def _launcher(self, tracker: proctree.Tracker, ident: identity.Identity | None) -> list[str]:
        """What execs a container's command: a shell that sets the runtime's umask and joins the
        container's cgroup (in a private mount namespace that exposes the image when its user could
        not reach it otherwise), then setpriv (user, groups, no_new_privs, death with the kubelet)."""
        expose = self.k.expose if ident is not None else ""
        script = "umask 022; " + tracker.join_script() + expose + 'exec "$@"'
        prefix = ["/bin/sh", "-c", script, "modelops-container"]
        if expose:
            prefix = ["unshare", "--mount", "--propagation", "private", "--", *prefix]
        if _SETPRIV:
            prefix += [_SETPRIV, *(ident.setpriv_args() if ident else []), "--pdeathsig", "KILL", "--"]
        return prefix

    async def _end_all(self, tracker: proctree.Tracker) -> None:
        await asyncio.to_thread(tracker.kill)
        for _ in range(250):
            if await asyncio.to_thread(tracker.empty):
                break
            await asyncio.sleep(0.02)
        else:
            log.warning("pod %s/%s: container processes survived SIGKILL", self.ns, self.name)
        tracker.release()

    def _probe_grace(self, spec: Obj) -> float:
        for kind in ("livenessProbe", "startupProbe"):
            value = (spec.get(kind) or {}).get("terminationGracePeriodSeconds")
            if value is not None:
                return float(value)
        value = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return 30.0 if value is None else float(value)

    async def _probe(
        self,
        spec: Obj,
        c: ContainerState,
        env: dict[str, str],
        cwd: str,
        rewrite: Mapping[str, Path],
        killed: asyncio.Event,
        prefix: list[str],
    ) -> None:
        # Exec probes see the same paths as the container's command: mountPaths rewritten.
        startup, liveness, readiness = (
            _rewrite_exec(spec.get(k), rewrite, env, self._keep(rewrite))
            for k in ("startupProbe", "livenessProbe", "readinessProbe")
        )
        if not (startup or liveness or readiness):
            return
        session = self.k.http()
        started_at = time.monotonic()
        counters: dict[str, tuple[int, int]] = {}  # kind -> (successes, failures) in a row
        next_run: dict[str, float] = {}
        while True:
            now = time.monotonic()
            active = {"startupProbe": startup} if startup and not c.started else {}
            if c.started:
                active = {k: v for k, v in (("livenessProbe", liveness), ("readinessProbe", readiness)) if v}
            due = 1.0
            for kind, probe in active.items():
                first = started_at + float(probe.get("initialDelaySeconds") or 0)
                at = next_run.get(kind, first)
                if now < at:
                    due = min(due, at - now)
                    continue
                next_run[kind] = now + float(probe.get("periodSeconds") or 10)
                ok, message = await run_probe(
                    probe, spec, pod_ip=self.pod_ip, env=env, cwd=cwd, session=session, prefix=prefix
                )
                succ, fail = counters.get(kind, (0, 0))
                succ, fail = (succ + 1, 0) if ok else (0, fail + 1)
                counters[kind] = (succ, fail)
                name = {
                    "startupProbe": "Startup",
                    "livenessProbe": "Liveness",
                    "readinessProbe": "Readiness",
                }[kind]
                if not ok:
                    await self._event("Unhealthy", f"{name} probe failed: {message}", spec, warning=True)
                if kind == "startupProbe":
                    if ok and succ >= 1:
                        c.started = True
                        c.ready = not readiness
                        started_at = time.monotonic()  # liveness/readiness delays count from here
                        next_run.clear()
                        self._mark()
                    elif fail >= int(probe.get("failureThreshold") or 3):
                        await self._event(
                            "Killing", f"Container {c.name} failed startup probe, will be restarted", spec
                        )
                        killed.set()
                        return
                elif kind == "livenessProbe" and not ok and fail >= int(probe.get("failureThreshold") or 3):
                    await self._event(
                        "Killing", f"Container {c.name} failed liveness probe, will be restarted", spec
                    )
                    killed.set()
                    return
                elif kind == "readinessProbe":
                    if ok and succ >= int(probe.get("successThreshold") or 1) and not c.ready:
                        c.ready = True
                        self._mark()
                    elif not ok and fail >= int(probe.get("failureThreshold") or 3) and c.ready:
                        c.ready = False
                        self._mark()
            await asyncio.sleep(max(due, 0.05))

    async def _stop_all(self) -> None:
        for helper in [self._deadline, *self._refreshers]:
            if helper is not None:
                helper.cancel()
        # Sidecars end after the app containers, with the same grace period.
        self._sidecar_stop.set()
        await asyncio.gather(*self._sidecars, return_exceptions=True)
        grace = self.grace_seconds()
        await asyncio.gather(*(self._terminate(p, grace) for p in list(self._procs.values())))

    async def _check_pull_secrets(self) -> None:
        """As the kubelet before each pull: a missing `imagePullSecrets` Secret is a pod Warning event
        (`FailedToRetrieveImagePullSecret`); the pull is still attempted, so a public image runs."""
        missing: list[str] = []
        for ref in (self.pod.get("spec") or {}).get("imagePullSecrets") or []:
            name = str((ref or {}).get("name") or "")
            if not name:
                continue
            try:
                await self.k.api.get("v1", "secrets", self.ns, name)
            except ApiError as e:
                if e.status == 404:
                    missing.append(name)
            except (aiohttp.ClientError, OSError, TimeoutError):
                return  # the API server is away; the next attempt looks again
        if missing:
            message = (
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting to pull the "
                "image may not succeed."
            )
            await self.k.events.emit(self.pod, "FailedToRetrieveImagePullSecret", message, type_="Warning")

    async def _event(self, reason: str, message: str, spec: Obj, *, warning: bool = False) -> None:
        init = any(s is spec for s in self.init_specs)
        field_path = f"spec.{'initContainers' if init else 'containers'}{{{spec.get('name')}}}"
        await self.k.events.emit(
            self.pod, reason, message, type_="Warning" if warning else "Normal", field_path=field_path
        )

    # ----- status -----

    def _set_condition(self, type_: str, ok: bool, reason: str = "", message: str = "") -> None:
        status = "True" if ok else "False"
        old = self._conditions.get(type_)
        # reason/message are always present (null when empty): a strategic merge patch would
        # otherwise keep a stale reason such as Unschedulable next to status True.
        cond: Obj = {"type": type_, "status": status, "lastProbeTime": None, "reason": reason or None}
        cond["message"] = message or None
        cond["lastTransitionTime"] = (
            old["lastTransitionTime"] if old and old["status"] == status else now_iso()
        )
        self._conditions[type_] = cond

    def _unmet_readiness_gates(self, conditions: list[Obj]) -> list[str]:
        gates = [
            str(g.get("conditionType")) for g in (self.pod.get("spec") or {}).get("readinessGates") or []
        ]
        true = {c.get("type") for c in conditions if c.get("status") == "True"}
        return [g for g in gates if g not in true]

    def phase(self) -> str:
        if self.failure is not None:
            return "Failed"
        if not self.initialized:
            failed = any(c.done and c.exit_code not in (None, 0) for c in self.inits.values())
            return "Failed" if failed else "Pending"
        apps = list(self.apps.values())
        if apps and all(c.done for c in apps):
            return "Succeeded" if all(c.exit_code == 0 for c in apps) else "Failed"
        if any("running" in c.state or c.exit_code is not None for c in apps):
            return "Running"
        return "Pending"

    def _mark(self) -> None:
        self._dirty.set()

    def status(self) -> Obj:
        phase = self.phase()
        terminal = phase in {"Succeeded", "Failed"}
        self._set_condition("PodScheduled", True)
        if self.pod_ip:
            self._set_condition("PodReadyToStartContainers", not terminal)
        sidecars = {s["name"] for s in self.init_specs if s.get("restartPolicy") == "Always"}
        pending_inits = [
            n
            for n, c in self.inits.items()
            if not (c.done and c.exit_code == 0) and not (n in sidecars and c.started)
        ]
        if self.initialized:
            self._set_condition("Initialized", True)
        else:
            self._set_condition(
                "Initialized",
                False,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(pending_inits)}]",
            )
        unready = [n for n, c in self.apps.items() if not c.ready]
        # Conditions other components own (readiness gates, DisruptionTarget) are kept as they are:
        # the status patch replaces the whole list.
        foreign = [
            dict(cond)
            for cond in (self.pod.get("status") or {}).get("conditions") or []
            if cond.get("type") not in KUBELET_CONDITIONS
        ]
        if terminal:
            reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            self._set_condition("ContainersReady", False, reason)
            self._set_condition("Ready", False, reason)
        elif unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            self._set_condition("ContainersReady", False, "ContainersNotReady", message)
            self._set_condition("Ready", False, "ContainersNotReady", message)
        else:
            self._set_condition("ContainersReady", True)
            gates = self._unmet_readiness_gates(foreign)
            if gates:
                message = f"corresponding condition of pod readiness gate {gates[0]!r} does not exist or is not True"
                self._set_condition("Ready", False, "ReadinessGatesNotReady", message)
            else:
                self._set_condition("Ready", True)
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        status: Obj = {
            "phase": phase,
            # Only the kubelet's own conditions: the strategic merge patch merges by type, so the
            # conditions other components own survive even when this copy of them is stale.
            "conditions": [self._conditions[t] for t in order if t in self._conditions],
            "hostIP": self.k.host_ip,
            "hostIPs": [{"ip": self.k.host_ip}],
            "startTime": self.start_time,
            "qosClass": qos_class(self.pod),
            "containerStatuses": [self.apps[s["name"]].status() for s in self.app_specs],
        }
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.init_specs:
            status["initContainerStatuses"] = [self.inits[s["name"]].status() for s in self.init_specs]
        if self.failure is not None:
            status["reason"], status["message"] = self.failure
        return status

    async def _sync_loop(self) -> None:
        while True:
            await self._dirty.wait()
            # A container start changes the status several times within milliseconds; one patch
            # for the burst keeps the API server free for everyone else.
            await asyncio.sleep(0.05)
            self._dirty.clear()
            if not await self._flush():
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def _flush(self) -> bool:
        """Send the status if it changed; False when it should be retried."""
        if self.detached is not None:
            return True
        status = self.status()
        if status == self._sent:
            return True
        try:
            await self.k.api.patch_status(
                "v1", "pods", self.ns, self.name, {"status": status}, patch_type="strategic"
            )
        except ApiError as e:
            if e.status == 404:
                self.deleted()
                return True
            log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)
            return False
        self._sent = status
        return True

    async def _delete_object(self) -> None:
        for _ in range(5):
            try:
                await self.k.api.delete(
                    "v1", "pods", self.ns, self.name, grace_period_seconds=0, uid=self.uid
                )
                return
            except ApiError as e:
                if e.status in {404, 409}:
                    return
                log.warning("pod %s/%s: delete failed: %s", self.ns, self.name, e)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("pod %s/%s: delete failed: %s", self.ns, self.name, e)
            await asyncio.sleep(1.0)

    def _cleanup(self) -> None:
        # Logs stay (they are small and help after the fact); volumes and the rootfs go.
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        shutil.rmtree(self.dir / "rootfs", ignore_errors=True)
        shutil.rmtree(self.dir / "home", ignore_errors=True)
        shutil.rmtree(Path("/dev/shm") / "modelops-local" / self.uid, ignore_errors=True)
