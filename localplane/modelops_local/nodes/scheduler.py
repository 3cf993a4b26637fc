"""The scheduling loop: watches pods and nodes and binds each pending pod where `scheduling` says.

Every change to a pod or a node re-examines the pending pods (a GPU freed by a finished job lets a
waiting one start), plus a periodic retry. Pods that do not fit get `PodScheduled=False/Unschedulable`
and a `FailedScheduling` event. As kube-scheduler's VolumeBinding PreFilter, a pod whose
PersistentVolumeClaim does not exist (or is being deleted) is not placed at all: its message is
`0/N nodes are available: persistentvolumeclaim "x" not found.`, and it is placed once the claim exists. A binding is remembered locally until the watch shows it, so two pods
decided in one pass cannot both take the last GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

import aiohttp

from modelops_local.client import ApiError, Client, Informer
from modelops_local.nodes.events import EventRecorder, now_iso
from modelops_local.nodes.scheduling import (
    DEFAULT_SCHEDULER,
    claim_names,
    claim_problem_message,
    schedule,
    wants_scheduling,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _uid(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


class Scheduler:
    def __init__(
        self,
        api: Client,
        pods: Informer,
        nodes: Informer,
        *,
        name: str = DEFAULT_SCHEDULER,
        retry_seconds: float = 5.0,
    ) -> None:
        self.api = api
        self.pods = pods
        self.nodes = nodes
        self.name = name
        self.retry_seconds = retry_seconds
        self.events = EventRecorder(api, name)
        self._wake = asyncio.Event()
        # uid -> the pod as bound, until the informer reflects the binding.
        self._assumed: dict[str, Obj] = {}
        self._use_binding = True
        self._background: set[asyncio.Task[None]] = set()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await self.pods.synced.wait()
        await self.nodes.synced.wait()
        while True:
            self._wake.clear()
            try:
                await self.schedule_pending()
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("scheduling pass failed: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.retry_seconds)

    def _bound_pods(self) -> list[Obj]:
        current = {_uid(p): p for p in self.pods.items()}
        for uid, pod in list(self._assumed.items()):
            seen = current.get(uid)
            if seen is None or (seen.get("spec") or {}).get("nodeName"):
                del self._assumed[uid]
            else:
                current[uid] = pod
        return list(current.values())

    async def schedule_pending(self) -> None:
        """Decide every pending pod in creation order, then send the bindings concurrently.

        Each decision is assumed at once, so later pods in the same pass see the capacity it takes.
        """
        pending = [p for p in self._bound_pods() if wants_scheduling(p, self.name)]
        pending.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        actions: list[Coroutine[Any, Any, None]] = []
        claims: dict[tuple[str, str], bool | None] = {}  # this pass's answers: deleting?, None = missing
        for pod in pending:
            if _uid(pod) in self._assumed:
                continue
            claim_message = await self._claim_problem(pod, claims)
            if claim_message is not None:
                actions.append(self._unschedulable(pod, claim_message))
                continue
            decision = schedule(pod, self.nodes.items(), self._bound_pods())
            if decision.node is not None:
                bound = dict(pod)
                bound["spec"] = {**(pod.get("spec") or {}), "nodeName": decision.node}
                self._assumed[_uid(pod)] = bound
                actions.append(self._bind(pod, decision.node))
            else:
                actions.append(self._unschedulable(pod, decision.message))
        limit = asyncio.Semaphore(16)

        async def limited(action: Coroutine[Any, Any, None]) -> None:
            async with limit:
                await action

        results = await asyncio.gather(*(limited(a) for a in actions), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("scheduling action failed: %s", result)

    async def _claim_problem(self, pod: Obj, claims: dict[tuple[str, str], bool | None]) -> str | None:
        """The VolumeBinding PreFilter message for the pod's first missing or deleting claim, or None."""
        ns = str((pod.get("metadata") or {}).get("namespace") or "default")
        for claim in claim_names(pod):
            key = (ns, claim)
            if key not in claims:
                try:
                    found = await self.api.get("v1", "persistentvolumeclaims", ns, claim)
                    claims[key] = bool((found.get("metadata") or {}).get("deletionTimestamp"))
                except ApiError as e:
                    if e.status != 404:
                        raise
                    claims[key] = None
            deleting = claims[key]
            if deleting is None or deleting:
                return claim_problem_message(len(self.nodes.items()), claim, bool(deleting))
        return None

    async def _bind(self, pod: Obj, node: str) -> None:
        meta = pod.get("metadata") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        try:
            await self._post_binding(ns, name, str(meta.get("uid") or ""), node)
        except ApiError as e:
            self._assumed.pop(_uid(pod), None)
            if e.status in {404, 409}:
                log.info("pod %s/%s changed while binding (%s); will retry", ns, name, e.reason)
                return
            raise
        except BaseException:
            self._assumed.pop(_uid(pod), None)
            raise
        log.info("bound %s/%s to %s", ns, name, node)
        # The event is not awaited: the next pass should not wait for bookkeeping.
        task = asyncio.create_task(
            self.events.emit(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _post_binding(self, ns: str, name: str, uid: str, node: str) -> None:
        if self._use_binding:
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            try:
                await self.api.create("v1", "pods", ns, binding, name=name, subresource="binding")
                return
            except ApiError as e:
                if e.status not in {404, 405}:
                    raise
                # 404 means either "no such pod" or "no binding subresource"; only the latter
                # leaves the pod readable.
                await self.api.get("v1", "pods", ns, name)
                log.warning("API server has no pods/binding (%s); binding by patching spec.nodeName", e)
                self._use_binding = False
        await self.api.patch("v1", "pods", ns, name, {"spec": {"nodeName": node}})

    async def _unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod.get("metadata") or {}
        conditions: Iterable[Obj] = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if current and current.get("status") == "False" and current.get("message") == message:
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": now_iso(),
            "lastProbeTime": None,
        }
        # Strategic merge by condition type: conditions other components set are left alone.
        patch = {"status": {"phase": "Pending", "conditions": [condition]}}
        try:
            await self.api.patch_status(
                "v1", "pods", str(meta.get("namespace")), str(meta.get("name")), patch, patch_type="strategic"
            )
        except ApiError as e:
            if e.status != 404:
                raise
            return
        log.info("%s/%s unschedulable: %s", meta.get("namespace"), meta.get("name"), message)
        await self.events.emit(pod, "FailedScheduling", message, type_="Warning")
