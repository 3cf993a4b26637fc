"""The controllers' shared view of the cluster: informers plus what we just wrote ourselves.

Upstream controllers keep "expectations" so that a sync running before the watch has delivered
their own creates and deletes does not create or delete the same pods twice. Here the store plays
that part: the answer of every write goes into an overlay that wins over older cached versions, and
deleted objects are tombstoned by uid until their DELETED event (or a timeout) arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from modelops_local.client import Client, Informer

from .actions import Kind

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_OVERLAY_TTL = 30.0
_TOMBSTONE_TTL = 60.0


def _rv(obj: Obj) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


def _key(obj: Obj) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


class Store:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.informers: dict[Kind, Informer] = {}
        self._overlay: dict[tuple[Kind, str, str], tuple[Obj, float]] = {}
        self._tombstones: dict[str, float] = {}
        self._listeners: list[tuple[frozenset[Kind], Callable[[], None]]] = []
        self.unavailable: set[Kind] = set()
        # Owner uid -> (why creating its child failed, when): lets ReplicaSets report ReplicaFailure
        # and back off instead of retrying a rejected pod on every event.
        self.failures: dict[str, tuple[str, float]] = {}

    def watch(self, kind: Kind) -> None:
        if kind not in self.informers:
            self.informers[kind] = self._informer(kind)

    def _informer(self, kind: Kind) -> Informer:
        def handler(event: str, obj: Obj, old: Obj | None) -> None:
            self._on_event(kind, event, obj)

        return Informer(self.client, kind.api_version, kind.plural, None, handler=handler)

    async def supervise(self, every: float = 10.0, sync_timeout: float = 30.0) -> None:
        """Restart informers whose watch ended with an error (a 5xx, a kind served only later).

        The old cache stays in use until the new informer has listed, so a controller never sees an
        empty cluster in between (and, say, creates every pod again).
        """
        while True:
            await asyncio.sleep(every)
            for kind, informer in list(self.informers.items()):
                task = informer.start()
                if not task.done():
                    continue
                failure = None if task.cancelled() else task.exception()
                log.debug("informer for %s ended: %s", kind.plural, failure)
                fresh = self._informer(kind)
                new_task = fresh.start()
                synced = asyncio.ensure_future(fresh.synced.wait())
                done, _ = await asyncio.wait(
                    {new_task, synced}, timeout=sync_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if synced in done:
                    self.informers[kind] = fresh
                    if kind in self.unavailable:
                        self.unavailable.discard(kind)
                        log.info("now watching %s", kind.plural)
                    else:
                        log.warning("watch of %s had stopped; restarted", kind.plural)
                    for kinds, callback in self._listeners:
                        if kind in kinds:
                            callback()
                else:
                    synced.cancel()
                    # stop() re-raises the failed list (a kind still not served): that must not end
                    # the supervisor, or a CRD installed later is never watched.
                    with contextlib.suppress(Exception):
                        await fresh.stop()

    def subscribe(self, kinds: frozenset[Kind], callback: Callable[[], None]) -> None:
        self._listeners.append((kinds, callback))

    async def start(self) -> None:
        for informer in self.informers.values():
            informer.start()
        for kind, informer in self.informers.items():
            task = informer.start()
            synced = asyncio.ensure_future(informer.synced.wait())
            done, _ = await asyncio.wait({task, synced}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                synced.cancel()
                exc = task.exception()
                # A resource the API server does not serve (say, EndpointSlices) just stays empty.
                log.warning("not watching %s: %s", kind.plural, exc)
                self.unavailable.add(kind)

    async def stop(self) -> None:
        for informer in self.informers.values():
            await informer.stop()

    def _on_event(self, kind: Kind, event: str, obj: Obj) -> None:
        ns, name = _key(obj)
        entry = self._overlay.get((kind, ns, name))
        if entry is not None:
            mine, _ = entry
            ours, theirs = _rv(mine), _rv(obj)
            if event == "DELETED" or ours is None or theirs is None or theirs >= ours:
                self._overlay.pop((kind, ns, name), None)
        if event == "DELETED":
            self._tombstones.pop(str((obj.get("metadata") or {}).get("uid") or ""), None)
        for kinds, callback in self._listeners:
            if kind in kinds:
                callback()

    def wrote(self, kind: Kind, obj: Obj) -> None:
        """Record the server's answer to one of our writes, so the next sync sees it."""
        if not obj.get("metadata"):
            return
        ns, name = _key(obj)
        cached = self.informers[kind].cache.get((ns, name)) if kind in self.informers else None
        if cached is not None and (_rv(cached) or 0) >= (_rv(obj) or 0) and _rv(obj) is not None:
            return
        self._overlay[(kind, ns, name)] = (obj, time.monotonic())

    def create_failed(self, owner_uid: str, message: str) -> None:
        self.failures[owner_uid] = (message, time.monotonic())

    def create_succeeded(self, owner_uid: str) -> None:
        self.failures.pop(owner_uid, None)

    def failure(self, owner_uid: str) -> tuple[str, float] | None:
        """(message, seconds since) of the last failed create for this owner, if it has not succeeded since."""
        found = self.failures.get(owner_uid)
        return None if found is None else (found[0], time.monotonic() - found[1])

    def deleted(self, uid: str) -> None:
        if uid:
            self._tombstones[uid] = time.monotonic()

    def _live(self, kind: Kind, obj: Obj, at: float) -> Obj | None:
        ns, name = _key(obj)
        entry = self._overlay.get((kind, ns, name))
        if entry is not None:
            mine, written = entry
            if at - written > _OVERLAY_TTL:
                self._overlay.pop((kind, ns, name), None)
            elif (_rv(mine) or 0) > (_rv(obj) or 0):
                obj = mine
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        stamp = self._tombstones.get(uid)
        if stamp is not None:
            if at - stamp >= _TOMBSTONE_TTL:
                self._tombstones.pop(uid, None)
            elif not (obj.get("metadata") or {}).get("deletionTimestamp"):
                # We deleted it and the cache still shows it alive: that view is stale, hide it.
                # A version that shows it terminating is accurate and stays visible (a Recreate
                # rollout waits for such pods, endpoints mark them terminating).
                return None
        return obj

    def list(self, kind: Kind, namespace: str | None = None) -> list[Obj]:
        informer = self.informers.get(kind)
        if informer is None:
            return []
        at = time.monotonic()
        out: list[Obj] = []
        seen: set[tuple[str, str]] = set()
        for (ns, name), obj in list(informer.cache.items()):
            if namespace is not None and ns != namespace:
                continue
            seen.add((ns, name))
            live = self._live(kind, obj, at)
            if live is not None:
                out.append(live)
        # Objects we created that the watch has not delivered yet.
        for (k, ns, name), (obj, written) in list(self._overlay.items()):
            if k != kind or (ns, name) in seen or (namespace is not None and ns != namespace):
                continue
            if at - written > _OVERLAY_TTL:
                self._overlay.pop((k, ns, name), None)
                continue
            uid = str((obj.get("metadata") or {}).get("uid") or "")
            if uid not in self._tombstones:
                out.append(obj)
        return out

    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        informer = self.informers.get(kind)
        if informer is None:
            return None
        at = time.monotonic()
        cached = informer.cache.get((namespace, name))
        if cached is not None:
            return self._live(kind, cached, at)
        entry = self._overlay.get((kind, namespace, name))
        if entry is None or at - entry[1] > _OVERLAY_TTL:
            return None
        uid = str((entry[0].get("metadata") or {}).get("uid") or "")
        return None if uid in self._tombstones else entry[0]

    def namespaces(self, *kinds: Kind) -> set[str]:
        out: set[str] = set()
        for kind in kinds:
            out.update(_key(o)[0] for o in self.list(kind))
        return out
