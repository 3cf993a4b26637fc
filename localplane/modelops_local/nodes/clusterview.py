"""What every kubelet of the process shares: watched pods/services, pod IPs, the hosts file, memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from modelops_local.client import Informer
from modelops_local.nodes import network
from modelops_local.nodes.memory import MemoryMonitor

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ClusterView:
    def __init__(self, pods: Informer, services: Informer, hosts_path: Path, seed: str | None = None) -> None:
        self.pods = pods
        self.services = services
        self.hosts_path = hosts_path
        self.ips = network.IPAllocator(seed=seed or str(hosts_path.parent))
        self.memory = MemoryMonitor()
        self._records: list[tuple[str, str]] | None = None
        self._changed = asyncio.Event()
        self._written = ""

    def on_change(self, kind: str, obj: Obj) -> None:
        """Called for every pod and service event."""
        self._records = None
        self._changed.set()
        if obj.get("kind") == "Pod" or "containers" in (obj.get("spec") or {}):
            meta, status = obj.get("metadata") or {}, obj.get("status") or {}
            ip = status.get("podIP")
            terminal = status.get("phase") in {"Succeeded", "Failed"}
            # IPs of pods run by an earlier kubelet stay reserved until those pods are gone.
            if ip and kind != "DELETED" and not terminal:
                self.ips.reserve(str(meta.get("uid")), str(ip))
            elif ip:
                self.ips.seen(str(ip))

    def records(self) -> list[tuple[str, str]]:
        if self._records is None:
            self._records = network.cluster_hosts(self.services.items(), self.pods.items())
        return self._records

    def service_env(self, namespace: str) -> dict[str, str]:
        return network.service_env(self.services.items(), namespace)

    async def run_hosts_writer(self) -> None:
        """Keep DIR/hosts current; writes are coalesced so a burst of events costs one write."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 5.0)
            self._changed.clear()
            text = network.render_hosts(self.records())
            if text != self._written or not self.hosts_path.exists():
                try:
                    network.write_atomic(str(self.hosts_path), text)
                    self._written = text
                except OSError as e:
                    log.warning("cannot write %s: %s", self.hosts_path, e)
            await asyncio.sleep(0.05)
