"""Pod garbage collection for nodes that are gone, as the kube-controller-manager's PodGC does.

When the local plane is brought up again with fewer nodes, the extra Node objects are deleted and the
pods bound to them would otherwise stay "Running" forever with nothing running them, so their
controllers (Deployment, Job) would never replace them. Such orphans are deleted at once (grace 0)
once seen bound to a missing node on two passes in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from modelops_local.client import ApiError, Client, Informer

log = logging.getLogger(__name__)

LOCAL_NODE_LABEL = "modelops.dev/local-node"


async def remove_stale_nodes(api: Client, current: list[str]) -> None:
    """Delete Node objects an earlier run of this plane registered and this one does not."""
    listed = await api.list("v1", "nodes", label_selector=f"{LOCAL_NODE_LABEL}=true")
    for node in listed.get("items") or []:
        name = str((node.get("metadata") or {}).get("name"))
        if name not in current:
            log.info("node %s is no longer part of the plane; deleting it", name)
            with contextlib.suppress(ApiError):
                await api.delete("v1", "nodes", None, name)


def orphans(pods: list[dict[str, Any]], node_names: set[str]) -> list[dict[str, Any]]:
    return [p for p in pods if (p.get("spec") or {}).get("nodeName") not in (None, "", *node_names)]


async def collect_orphans(api: Client, pods: Informer, nodes: Informer, every: float = 20.0) -> None:
    await pods.synced.wait()
    await nodes.synced.wait()
    suspects: set[str] = set()
    while True:
        await asyncio.sleep(every)
        names = {str((n.get("metadata") or {}).get("name")) for n in nodes.items()}
        found = {str((p.get("metadata") or {}).get("uid")): p for p in orphans(pods.items(), names)}
        for uid, pod in found.items():
            if uid not in suspects:
                continue
            meta = pod.get("metadata") or {}
            log.info("deleting pod %s/%s: its node %s is gone", meta.get("namespace"), meta.get("name"),
                     (pod.get("spec") or {}).get("nodeName"))  # fmt: skip
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError):
                await api.delete(
                    "v1",
                    "pods",
                    str(meta.get("namespace")),
                    str(meta.get("name")),
                    grace_period_seconds=0,
                    uid=uid,
                )
        suspects = set(found)
