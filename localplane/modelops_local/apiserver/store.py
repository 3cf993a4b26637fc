"""Object storage: every current object in memory, persisted to SQLite, with in-process watch fan-out.

All writes happen on the event loop thread, one at a time, so the global resourceVersion is strictly
increasing and every watcher sees events in order within microseconds of the write.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ApiError

Obj = dict[str, Any]
Key = tuple[str, str, str]  # storage key, namespace, name


@dataclass(frozen=True)
class Event:
    rv: int
    storage_key: str
    type: str  # ADDED / MODIFIED / DELETED
    obj: Obj
    old: Obj | None


@dataclass(frozen=True)
class Past:
    """An event as kept for resuming watches: JSON text, so history does not pin old object trees."""

    rv: int
    storage_key: str
    type: str
    data: str
    old_data: str | None

    def event(self) -> Event:
        old = json.loads(self.old_data) if self.old_data is not None else None
        return Event(self.rv, self.storage_key, self.type, json.loads(self.data), old)


@dataclass(eq=False)
class Watcher:
    storage_key: str
    namespace: str | None
    match: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)

    def offer(self, event: Event) -> None:
        ns = event.obj.get("metadata", {}).get("namespace") or ""
        if self.namespace is not None and ns != self.namespace:
            return
        new_ok = event.type != "DELETED" and self.match(event.obj)
        old_ok = event.old is not None and self.match(event.old)
        if event.type == "DELETED":
            if self.match(event.obj):
                self.queue.put_nowait(("DELETED", event.obj))
        elif new_ok and (old_ok or event.old is None):
            self.queue.put_nowait((event.type, event.obj))
        elif new_ok:
            self.queue.put_nowait(("ADDED", event.obj))
        elif old_ok:
            # The object left the selection: watchers see it as deleted, like the real watch cache does.
            self.queue.put_nowait(("DELETED", event.obj))


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


class Store:
    def __init__(self, path: Path, history: int = 10000) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS objects (skey TEXT NOT NULL, ns TEXT NOT NULL, name TEXT NOT NULL,"
            " data TEXT NOT NULL, rv INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (skey, ns, name)) WITHOUT ROWID"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(objects)")}
        if "rv" not in columns:  # a state.db from before rv moved into the rows
            self.db.execute("ALTER TABLE objects ADD COLUMN rv INTEGER NOT NULL DEFAULT 0")
        # A write stores its rv in its own row (one statement, one implicit transaction); only deletes,
        # which leave no row behind, record the counter in `meta`. The counter is the larger of the two.
        row = self.db.execute("SELECT v FROM meta WHERE k = 'rv'").fetchone()
        top = self.db.execute("SELECT MAX(rv) FROM objects").fetchone()
        self.rv = max(int(row[0]) if row else 1, int(top[0] or 0) if top else 0)
        self.objects: dict[str, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self.by_uid: dict[str, Key] = {}
        self.dependents: dict[str, set[Key]] = collections.defaultdict(set)
        for skey, ns, name, data in self.db.execute("SELECT skey, ns, name, data FROM objects"):
            obj = json.loads(data)
            self.objects[skey][(ns, name)] = obj
            self._index(skey, obj, None)
        self.history: collections.deque[Past] = collections.deque(maxlen=history)
        # Every event with rv > history_start is in `history`; older ones are gone (410 Expired).
        self.history_start = self.rv
        self.watchers: dict[str, set[Watcher]] = collections.defaultdict(set)
        self.listeners: list[Callable[[Event], None]] = []
        # The JSON of objects that were read, so repeated GETs of an unchanged object skip the encoder.
        # Filled on first read (not on write: most writes are never read back by GET), and dropped by
        # every write of the key; an entry also pins the dict it encodes, so a replaced object never
        # matches a stale entry. Bounded (oldest first out) so reading every object once does not
        # double the memory of a large store: the GETs that repeat are polls of a few objects.
        self._encoded: dict[Key, tuple[Obj, bytes]] = {}
        self.encoded_limit = 4096

    def close(self) -> None:
        self.db.close()

    # --- reads ---------------------------------------------------------------------------------------

    def get(self, skey: str, ns: str, name: str) -> Obj | None:
        return self.objects.get(skey, {}).get((ns, name))

    def encoded(self, skey: str, obj: Obj) -> bytes:
        """The compact JSON of `obj`: cached when `obj` is the stored object of `skey`, fresh otherwise
        (a converted view, a copy)."""
        m = meta(obj)
        key = (skey, m.get("namespace") or "", m.get("name", ""))
        entry = self._encoded.get(key)
        if entry is not None and entry[0] is obj:
            return entry[1]
        data = json.dumps(obj, separators=(",", ":")).encode()
        if self.objects.get(skey, {}).get(key[1:]) is obj:
            if len(self._encoded) >= self.encoded_limit:
                del self._encoded[next(iter(self._encoded))]
            self._encoded[key] = (obj, data)
        return data

    def list(self, skey: str, ns: str | None) -> builtins.list[Obj]:
        bucket = self.objects.get(skey, {})
        keys = sorted(k for k in bucket if ns is None or k[0] == ns)
        return [bucket[k] for k in keys]

    def count(self, skey: str, ns: str | None) -> int:
        bucket = self.objects.get(skey, {})
        return len(bucket) if ns is None else sum(1 for k in bucket if k[0] == ns)

    def by_uid_get(self, uid: str) -> Obj | None:
        key = self.by_uid.get(uid)
        return None if key is None else self.get(*key)

    def namespaced_keys(self) -> Iterator[str]:
        yield from list(self.objects)

    # --- writes --------------------------------------------------------------------------------------

    def _index(self, skey: str, obj: Obj | None, old: Obj | None) -> None:
        if old is not None:
            m = meta(old)
            key = (skey, m.get("namespace") or "", m.get("name", ""))
            for ref in m.get("ownerReferences") or []:
                deps = self.dependents.get(ref.get("uid", ""))
                if deps is not None:
                    deps.discard(key)
                    if not deps:
                        del self.dependents[ref.get("uid", "")]
            if obj is None:
                self.by_uid.pop(m.get("uid", ""), None)
        if obj is not None:
            m = meta(obj)
            key = (skey, m.get("namespace") or "", m.get("name", ""))
            self.by_uid[m.get("uid", "")] = key
            for ref in m.get("ownerReferences") or []:
                self.dependents[ref.get("uid", "")].add(key)

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, skey: str, obj: Obj) -> Obj:
        """Create or replace `obj` (the store takes ownership of the dict) and notify watchers."""
        m = meta(obj)
        ns, name = m.get("namespace") or "", m["name"]
        old = self.objects[skey].get((ns, name))
        rv = self._next_rv()
        m["resourceVersion"] = str(rv)
        data = json.dumps(obj, separators=(",", ":"))
        try:
            self.db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)", (skey, ns, name, data, rv)
            )
        except sqlite3.Error as exc:
            self.rv -= 1
            raise ApiError(500, "InternalError", f"storage error: {exc}") from exc
        self.objects[skey][(ns, name)] = obj
        self._encoded.pop((skey, ns, name), None)
        self._index(skey, obj, old)
        old_data = json.dumps(old, separators=(",", ":")) if old is not None else None
        self._emit(Event(rv, skey, "MODIFIED" if old is not None else "ADDED", obj, old), data, old_data)
        return obj

    def remove(self, skey: str, ns: str, name: str) -> Obj | None:
        old = self.objects.get(skey, {}).get((ns, name))
        if old is None:
            return None
        rv = self._next_rv()
        final = dict(old)
        final["metadata"] = dict(meta(old), resourceVersion=str(rv))
        try:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM objects WHERE skey = ? AND ns = ? AND name = ?", (skey, ns, name))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(rv),))
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise ApiError(500, "InternalError", f"storage error: {exc}") from exc
        del self.objects[skey][(ns, name)]
        self._encoded.pop((skey, ns, name), None)
        self._index(skey, None, old)
        self._emit(Event(rv, skey, "DELETED", final, old), json.dumps(final, separators=(",", ":")), None)
        return final

    def _emit(self, event: Event, data: str, old_data: str | None) -> None:
        if len(self.history) == self.history.maxlen:
            self.history_start = self.history[0].rv
        self.history.append(Past(event.rv, event.storage_key, event.type, data, old_data))
        for w in list(self.watchers.get(event.storage_key, ())):
            w.offer(event)
        for listener in self.listeners:
            listener(event)

    # --- watches -------------------------------------------------------------------------------------

    def events_since(self, skey: str, rv: int) -> builtins.list[Event] | None:
        """Events of `skey` after `rv`, or None when they are no longer retained."""
        if rv < self.history_start:
            return None
        return [p.event() for p in self.history if p.rv > rv and p.storage_key == skey]

    def add_watcher(self, w: Watcher) -> None:
        self.watchers[w.storage_key].add(w)

    def drop_watcher(self, w: Watcher) -> None:
        self.watchers[w.storage_key].discard(w)
