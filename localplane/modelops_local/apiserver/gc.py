"""The controllers that live inside the API server process: owner-reference garbage collection (background,
foreground, orphan), namespace deletion, CRD instance cleanup and the one-hour TTL of Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import logging
from typing import Any

from .api import CRD_FINALIZER, Api, Params, storage_key
from .errors import ApiError
from .store import Event, Key, meta

log = logging.getLogger(__name__)
EVENT_TTL = datetime.timedelta(hours=1)
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"


class Collector:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.store = api.store
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.params = Params({"fieldManager": "garbage-collector"})
        self.store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        m = meta(event.obj)
        if event.type == "DELETED":
            self.queue.put_nowait(("orphans", m.get("uid", "")))
        elif m.get("deletionTimestamp"):
            self.queue.put_nowait(
                ("finalize", (event.storage_key, m.get("namespace") or "", m.get("name", "")))
            )
        if event.type == "DELETED" or m.get("deletionTimestamp"):
            # An owner waiting in foreground deletion may now be free to go.
            for ref in m.get("ownerReferences") or []:
                key = self.store.by_uid.get(ref.get("uid", ""))
                if key is not None:
                    self.queue.put_nowait(("finalize", key))
            ns = m.get("namespace")
            if ns:
                nso = self.store.get("/namespaces", "", ns)
                if nso is not None and meta(nso).get("deletionTimestamp"):
                    self.queue.put_nowait(("finalize", ("/namespaces", "", ns)))

    async def run(self) -> None:
        ticker = asyncio.create_task(self._tick())
        try:
            while True:
                kind, arg = await self.queue.get()
                try:
                    if kind == "orphans":
                        self._collect_orphans(arg)
                    else:
                        self._finalize(arg)
                except ApiError as exc:
                    if exc.code not in (404, 409):
                        log.warning("garbage collection of %s failed: %s", arg, exc.message)
                except Exception:
                    log.exception("garbage collection of %s failed", arg)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self) -> None:
        """Re-check slow work (terminating namespaces, expired events) now and then."""
        loops = 0
        while True:
            await asyncio.sleep(1.0)
            loops += 1
            for skey in ("/namespaces", CRD_KEY):
                for obj in self.store.list(skey, None):
                    if meta(obj).get("deletionTimestamp"):
                        self.queue.put_nowait(("finalize", (skey, "", meta(obj)["name"])))
            if loops % 60 == 0:
                self._expire_events()

    def _expire_events(self) -> None:
        cutoff = (datetime.datetime.now(datetime.UTC) - EVENT_TTL).strftime("%Y-%m-%dT%H:%M:%SZ")
        for ev in self.store.list("/events", None):
            m = meta(ev)
            stamp = ev.get("lastTimestamp") or ev.get("eventTime") or m.get("creationTimestamp") or ""
            if stamp and str(stamp) < cutoff:
                self.store.remove("/events", m.get("namespace") or "", m["name"])

    def _delete(self, key: Key, policy: str) -> None:
        rd = self.api.rd_for(key[0])
        if rd is None:
            return
        with contextlib.suppress(ApiError):
            self.api.delete(rd, key[1], key[2], {"propagationPolicy": policy}, Params({}))

    def _collect_orphans(self, uid: str) -> None:
        for key in list(self.store.dependents.get(uid, ())):
            obj = self.store.get(*key)
            if obj is None:
                continue
            refs = meta(obj).get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") in self.store.by_uid]
            if not alive:
                if not meta(obj).get("deletionTimestamp"):
                    self._delete(key, "Background")
            elif len(alive) != len(refs):
                self._set_owners(key, alive)

    def _set_owners(self, key: Key, refs: list[dict[str, Any]]) -> None:
        obj = self.store.get(*key)
        rd = self.api.rd_for(key[0])
        if obj is None or rd is None:
            return
        new = copy.deepcopy(obj)
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self.api.commit(rd, obj, new, self.params, None)

    def _drop_finalizer(self, key: Key, finalizer: str) -> None:
        obj = self.store.get(*key)
        rd = self.api.rd_for(key[0])
        if obj is None or rd is None:
            return
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [f for f in meta(obj).get("finalizers") or [] if f != finalizer]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self.api.commit(rd, obj, new, self.params, None)

    def _finalize(self, key: Key) -> None:
        obj = self.store.get(*key)
        if obj is None or not meta(obj).get("deletionTimestamp"):
            return
        m = meta(obj)
        uid = m.get("uid", "")
        finalizers = m.get("finalizers") or []
        if key[0] == "/namespaces":
            self._finalize_namespace(obj)
            return
        if key[0] == CRD_KEY and CRD_FINALIZER in finalizers:
            self._finalize_crd(key, obj)
        if "orphan" in finalizers:
            for dep in list(self.store.dependents.get(uid, ())):
                dobj = self.store.get(*dep)
                if dobj is not None:
                    self._set_owners(
                        dep, [r for r in meta(dobj).get("ownerReferences") or [] if r.get("uid") != uid]
                    )
            self._drop_finalizer(key, "orphan")
        elif "foregroundDeletion" in finalizers:
            blocking = 0
            for dep in list(self.store.dependents.get(uid, ())):
                dobj = self.store.get(*dep)
                if dobj is None:
                    continue
                ref: dict[str, Any] = next(
                    (r for r in meta(dobj).get("ownerReferences") or [] if r.get("uid") == uid), {}
                )
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                if not meta(dobj).get("deletionTimestamp"):
                    self._delete(dep, "Foreground")
            if blocking == 0:
                self._drop_finalizer(key, "foregroundDeletion")

    def _finalize_crd(self, key: Key, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        skey = f"{spec.get('group')}/{(spec.get('names') or {}).get('plural')}"
        remaining = self.store.list(skey, None)
        for obj in remaining:
            if not meta(obj).get("deletionTimestamp"):
                self._delete((skey, meta(obj).get("namespace") or "", meta(obj)["name"]), "Background")
        if not self.store.list(skey, None):
            self._drop_finalizer(key, CRD_FINALIZER)

    def _finalize_namespace(self, nso: dict[str, Any]) -> None:
        ns = meta(nso)["name"]
        remaining = 0
        for skey in list(self.store.objects):
            rd = self.api.rd_for(skey)
            if rd is None or not rd.namespaced:
                continue
            for obj in self.store.list(skey, ns):
                remaining += 1
                if not meta(obj).get("deletionTimestamp"):
                    self._delete((skey, ns, meta(obj)["name"]), "Background")
        if remaining and any(self.store.count(s, ns) for s in list(self.store.objects)):
            return
        new = copy.deepcopy(nso)
        spec = new.setdefault("spec", {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
        if not spec["finalizers"] and not meta(nso).get("finalizers"):
            self.store.remove("/namespaces", "", ns)
        elif new != nso:
            rd = self.api.rd_for("/namespaces")
            assert rd is not None
            self.api.commit(rd, nso, new, self.params, "finalize")


def storage_of(api: Api, group: str, version: str, plural: str) -> str:
    rd = api.registry.get(group, version, plural)
    return storage_key(rd) if rd else ""
