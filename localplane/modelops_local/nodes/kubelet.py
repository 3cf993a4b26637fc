"""One local node: registers its Node object, heartbeats, and runs the pods bound to it.

Capacity is the machine's (cpu = os.cpu_count(), memory from /proc/meminfo, 110 pods) plus `--gpus`
fake `nvidia.com/gpu` devices, labelled as GPU feature discovery would. Several nodes in one process
share the machine, so their capacities overlap; that is what lets a laptop act as a GPU cluster.

Restart behaviour: container processes die with the kubelet process (PR_SET_PDEATHSIG), so a new
kubelet cannot re-adopt them. It resumes every non-terminal pod bound to its node instead: containers
that were running are reported as terminated (exit code 137, "the local kubelet restarted") and are
restarted per restartPolicy (with Never the pod fails), restart counts continue, init containers are
not run again for an initialized pod, and the pod keeps its IP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from modelops_local.client import ApiError, Client
from modelops_local.nodes.clusterview import ClusterView
from modelops_local.nodes.engine import Engine
from modelops_local.nodes.events import EventRecorder, now_iso
from modelops_local.nodes.podgc import LOCAL_NODE_LABEL
from modelops_local.nodes.pods import PodWorker

log = logging.getLogger(__name__)

Obj = dict[str, Any]

KUBELET_VERSION = "v1.33.0-modelops-local"
HEARTBEAT_SECONDS = 10.0


def memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def gpu_labels(gpus: int) -> dict[str, str]:
    if gpus <= 0:
        return {}
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": "LOCAL-FAKE-GPU",
        "nvidia.com/gpu.count": str(gpus),
    }


class Kubelet:
    def __init__(
        self,
        api: Client,
        node_name: str,
        directory: Path,
        cluster: ClusterView,
        *,
        gpus: int = 0,
        backoff_base: float = 10.0,
        cpus: str | None = None,
        memory: str | None = None,
        config_resync: float = 30.0,
        root: Path | None = None,
        switch_users: bool = False,
        cgroups: Path | None = None,
        expose: str = "",
        engine: Engine | None = None,
        plane_id: str = "",
    ) -> None:
        self.api = api
        self.name = node_name
        self.dir = directory
        # Where the pods' files go (statedir.runtime_root), whether pods run as their runAsUser, and
        # the cgroup v2 directory for containers (None: tracked through /proc; see proctree.py).
        self.root = root or directory
        self.switch_users = switch_users
        self.cgroups = cgroups
        self.expose = expose  # shell run in a private mount namespace first (statedir.expose_image)
        # The container engine of `--runtime podman|docker` (nodes/engine.py), None for processes only.
        self.engine = engine
        self.plane_id = plane_id
        self.runtime_version = "local-process://1"
        if engine is not None:
            self.runtime_version = f"{engine.kind}://{engine.version()}"
        self.cluster = cluster
        self.gpus = gpus
        self.backoff_base = backoff_base
        self.config_resync = config_resync
        self.host_ip = "127.0.0.1"
        self.bin_dir = str(Path(sys.executable).parent)
        self.events = EventRecorder(api, "kubelet", node_name)
        # Overridable so a small machine can still admit pods sized for a real node (the demo).
        cpu = cpus or str(os.cpu_count() or 1)
        disk = shutil.disk_usage(directory).total if directory.exists() else 100 * 2**30
        self.capacity = {
            "cpu": cpu,
            "memory": memory or f"{memory_bytes() // 1024}Ki",
            "pods": "110",
            "ephemeral-storage": f"{disk // 1024}Ki",
            "nvidia.com/gpu": str(gpus),
        }
        self.allocatable = dict(self.capacity)
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()
        self._gpu_owner: dict[int, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._started_at = now_iso()

    # ----- node object -----

    def node_object(self) -> Obj:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"
            if platform.machine() in {"x86_64", "AMD64"}
            else platform.machine(),
            "node-role.kubernetes.io/worker": "",
            LOCAL_NODE_LABEL: "true",
            **gpu_labels(self.gpus),
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {},
        }

    def node_status(self) -> Obj:
        stamp = now_iso()

        def cond(type_: str, status: str, reason: str, message: str) -> Obj:
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self._started_at,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "conditions": [
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
                ),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": self.node_object()["metadata"]["labels"]["kubernetes.io/arch"],
                "osImage": f"{platform.system()} {platform.release()} (modelops local plane)",
                "kernelVersion": platform.release(),
                "containerRuntimeVersion": self.runtime_version,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    async def register(self) -> None:
        """Create or refresh the Node, then report its status (the status subresource)."""
        self._started_at = now_iso()
        body = self.node_object()
        try:
            await self.api.create("v1", "nodes", None, body)
        except ApiError as e:
            if e.status != 409:
                raise
            await self.api.patch("v1", "nodes", None, self.name, {"metadata": body["metadata"]})
        await self.api.patch_status("v1", "nodes", None, self.name, {"status": self.node_status()})
        log.info("node %s registered (%s cpu, %s gpu)", self.name, self.capacity["cpu"], self.gpus)

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.api.patch_status("v1", "nodes", None, self.name, {"status": self.node_status()})
            except ApiError as e:
                if e.status == 404:  # someone deleted the Node: register again, as a kubelet does
                    with contextlib.suppress(ApiError, aiohttp.ClientError, OSError):
                        await self.register()
                else:
                    log.warning("node %s heartbeat failed: %s", self.name, e)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("node %s heartbeat failed: %s", self.name, e)

    def in_cluster_env(self) -> dict[str, str]:
        """KUBERNETES_SERVICE_HOST/PORT naming the API server itself.

        A local pod is a host process, so it reaches the API server's own listener directly (its
        certificate already names 127.0.0.1) rather than the `kubernetes` Service's ClusterIP on the
        privileged port 443. With the projected service-account token, in-cluster clients work.
        """
        url = urlsplit(self.api.config.server)
        host = url.hostname or "127.0.0.1"
        port = str(url.port or (443 if url.scheme == "https" else 80))
        address = f"tcp://{host}:{port}"
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": address,
            f"KUBERNETES_PORT_{port}_TCP": address,
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    # ----- GPUs -----

    def free_gpus(self) -> int:
        return self.gpus - len(self._gpu_owner)

    def assign_gpus(self, uid: str, count: int) -> list[int] | None:
        owned = sorted(i for i, owner in self._gpu_owner.items() if owner == uid)
        if len(owned) >= count:
            return owned[:count]
        free = [i for i in range(self.gpus) if i not in self._gpu_owner]
        if len(free) < count - len(owned):
            return None
        for i in free[: count - len(owned)]:
            self._gpu_owner[i] = uid
        return sorted(i for i, owner in self._gpu_owner.items() if owner == uid)

    def release(self, uid: str) -> None:
        for i in [i for i, owner in self._gpu_owner.items() if owner == uid]:
            del self._gpu_owner[i]
        self.cluster.ips.release(uid)

    # ----- pods -----

    def handle_pod(self, kind: str, pod: Obj) -> None:
        """Dispatch one pod event (called by the shared pod informer)."""
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        if spec.get("nodeName") != self.name:
            return
        uid = str(meta.get("uid"))
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.deleted()
            self._finished.discard(uid)
            return
        if worker is not None:
            worker.update(pod)
            return
        terminal = status.get("phase") in {"Succeeded", "Failed"}
        if meta.get("deletionTimestamp") and (terminal or uid in self._finished or not status.get("podIP")):
            # Nothing runs for it here: finish the deletion the API server is waiting for.
            asyncio.get_running_loop().create_task(self._delete(pod))
            return
        if terminal or uid in self._finished:
            return
        worker = PodWorker(self, pod)
        worker.update(pod)  # a deletion already under way stops it at once
        self.workers[uid] = worker
        self._recover_gpus(worker)
        task = asyncio.get_running_loop().create_task(worker.run(), name=f"pod-{meta.get('name')}")
        self._tasks[uid] = task
        task.add_done_callback(functools.partial(self._done, uid))

    def _recover_gpus(self, worker: PodWorker) -> None:
        # Devices assigned by an earlier kubelet stay with the pod, so its NVIDIA_VISIBLE_DEVICES holds.
        with contextlib.suppress(OSError, ValueError):
            text = (worker.dir / "gpus").read_text().strip()
            for i in (int(x) for x in text.split(",") if x):
                if i < self.gpus and i not in self._gpu_owner:
                    self._gpu_owner[i] = worker.uid

    def _done(self, uid: str, _task: object = None) -> None:
        self.workers.pop(uid, None)
        self._tasks.pop(uid, None)
        self._finished.add(uid)

    async def _delete(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError):
            await self.api.delete(
                "v1",
                "pods",
                str(meta.get("namespace")),
                str(meta.get("name")),
                grace_period_seconds=0,
                uid=str(meta.get("uid")),
            )

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every container (the node is going away); pod objects are left for the next start."""
        for worker in self.workers.values():
            worker.detach(grace)
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace + 5.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
