"""The thin loop around each pure controller: wake on changes, sync everything, apply the actions.

Every controller here is level-triggered over the whole (small) local cluster: any change to a kind
it watches, or a requeue time it asked for, runs one sync of all its objects. At the scale of one
machine this is cheap and it removes the whole class of missed-event bugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from modelops_local.client import ApiError, Client

from . import common as c
from .actions import EVENTS, Create, Delete, Event, Kind, Patch, Result, Status
from .store import Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SyncFn = Callable[[Store], Awaitable[list[Result]]]

_DEBOUNCE = 0.05


class Controller:
    """Runs `sync` whenever a watched kind changes, or when a result asks to be looked at again."""

    def __init__(
        self, name: str, store: Store, kinds: frozenset[Kind], sync: SyncFn, period: float | None = None
    ) -> None:
        self.name = name
        self.store = store
        self.sync = sync
        self.period = period
        self._wake = asyncio.Event()
        for kind in kinds:
            store.watch(kind)
        store.subscribe(kinds, self._wake.set)

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(_DEBOUNCE)
            self._wake.clear()
            next_in: float | None = self.period
            try:
                results = await self.sync(self.store)
                for result in results:
                    await apply(self.store, result)
                    if result.requeue_after is not None:
                        next_in = (
                            result.requeue_after if next_in is None else min(next_in, result.requeue_after)
                        )
            except Exception:
                log.exception("%s: sync failed; retrying", self.name)
                next_in = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=next_in)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _owner_uid(action: Any) -> str:
    if not isinstance(action, Create):
        return ""
    for ref in (action.body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


async def apply(store: Store, result: Result) -> None:
    client = store.client
    for action in result.actions:
        owner = _owner_uid(action)
        try:
            await _apply_one(store, client, action)
            if owner:
                store.create_succeeded(owner)
        except ApiError as e:
            if owner and e.status != 409:
                store.create_failed(owner, e.message or str(e))
            if e.status in (404, 409):
                # Gone or changed under us: the watch brings the new state and the next sync redoes it.
                log.debug("%s: %s", type(action).__name__, e)
            else:
                _warn_once(f"{_describe(action)} failed: {e}")


_warned: dict[str, float] = {}
_WARN_EVERY = 60.0


def _warn_once(message: str) -> None:
    """Log a failure once a minute at most: every sync retries it, the log should not say it each time."""
    at = time.monotonic()
    if at - _warned.get(message, -_WARN_EVERY) >= _WARN_EVERY:
        if len(_warned) > 1000:
            _warned.clear()
        _warned[message] = at
        log.warning("%s", message)


def _describe(action: Any) -> str:
    if isinstance(action, Event):
        return f"event {action.reason}"
    kind: Kind = action.kind
    name = action.name if not isinstance(action, Create) else action.body["metadata"].get("name", "")
    return f"{type(action).__name__.lower()} {kind.plural} {action.namespace}/{name}"


async def _apply_one(store: Store, client: Client, action: Any) -> None:
    if isinstance(action, Create):
        ns = action.namespace or None
        obj = await client.create(action.kind.api_version, action.kind.plural, ns, action.body)
        store.wrote(action.kind, obj)
        log.info("created %s %s/%s", action.kind.kind, action.namespace, c.name_of(obj))
    elif isinstance(action, Patch):
        obj = await client.patch(
            action.kind.api_version,
            action.kind.plural,
            action.namespace or None,
            action.name,
            action.patch,
            subresource=action.subresource,
        )
        if action.subresource is None:
            store.wrote(action.kind, obj)
    elif isinstance(action, Status):
        current = store.get(action.kind, action.namespace, action.name)
        if current is None:
            return
        old = current.get("status") or {}
        if _same(old, action.status):
            return
        patch: Obj = dict(action.status)
        for key in old:
            if key not in patch:
                patch[key] = None
        obj = await client.patch_status(
            action.kind.api_version,
            action.kind.plural,
            action.namespace or None,
            action.name,
            {"status": patch},
        )
        store.wrote(action.kind, obj)
    elif isinstance(action, Delete):
        try:
            obj = await client.delete(
                action.kind.api_version,
                action.kind.plural,
                action.namespace or None,
                action.name,
                propagation_policy=action.propagation,
                uid=action.uid or None,
            )
        except ApiError as e:
            if e.status != 404:
                raise
            obj = {}
        store.deleted(action.uid)
        if obj.get("kind") == action.kind.kind and (obj.get("metadata") or {}).get("deletionTimestamp"):
            store.wrote(action.kind, obj)
        log.info("deleted %s %s/%s", action.kind.kind, action.namespace, action.name)
    elif isinstance(action, Event):
        await _event(client, action)


_event_counts: dict[tuple[str, str, str], tuple[str, int]] = {}


async def _event(client: Client, action: Event) -> None:
    involved = action.involved
    ns = c.namespace_of(involved) or "default"
    stamp = c.fmt_time(c.now())
    key = (c.uid_of(involved), action.reason, action.message)
    previous = _event_counts.get(key)
    try:
        if previous is not None:
            name, count = previous
            try:
                await client.patch("v1", "events", ns, name, {"count": count + 1, "lastTimestamp": stamp})
                _event_counts[key] = (name, count + 1)
                return
            except ApiError as e:
                if e.status != 404:
                    raise
                _event_counts.pop(key, None)  # expired or deleted: record it afresh
        name = f"{c.name_of(involved)}.{time.time_ns():x}"
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": c.name_of(involved),
                "namespace": ns,
                "uid": c.uid_of(involved),
                "resourceVersion": c.meta(involved).get("resourceVersion", ""),
            },
            "reason": action.reason,
            "message": action.message,
            "type": action.type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "modelops-local-controllers"},
            "reportingComponent": "modelops-local-controllers",
        }
        await client.create(EVENTS.api_version, EVENTS.plural, ns, body)
        if len(_event_counts) > 5000:
            _event_counts.clear()
        _event_counts[key] = (name, 1)
    except ApiError as e:
        log.debug("event not recorded: %s", e)
