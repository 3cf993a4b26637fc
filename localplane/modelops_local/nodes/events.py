"""Core/v1 Events from the scheduler and the kubelets, deduplicated like the real event recorder.

`kubectl describe pod` is where users look first when a pod does not run; it shows these Events.
A repeated event (same object, reason, message) bumps `count` and `lastTimestamp` instead of adding
rows, so a crash-looping pod does not flood the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modelops_local.client import ApiError, Client

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, api: Client, component: str, host: str | None = None) -> None:
        self.api = api
        self.component = component
        self.host = host
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}

    async def emit(
        self,
        obj: Mapping[str, Any],
        reason: str,
        message: str,
        *,
        type_: str = "Normal",
        field_path: str | None = None,
    ) -> None:
        """Record an event; failures are logged, never raised (events are best effort)."""
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        uid = str(meta.get("uid") or "")
        key = (uid, reason, message, field_path or "")
        stamp = now_iso()
        try:
            if key in self._seen:
                name, count = self._seen[key]
                patch = {"count": count + 1, "lastTimestamp": stamp}
                await self.api.patch("v1", "events", ns, name, patch)
                self._seen[key] = (name, count + 1)
                return
            involved: dict[str, Any] = {
                "apiVersion": obj.get("apiVersion") or "v1",
                "kind": obj.get("kind") or "Pod",
                "name": meta.get("name"),
                "namespace": ns,
                "uid": uid,
            }
            if field_path:
                involved["fieldPath"] = field_path
            source: dict[str, str] = {"component": self.component}
            if self.host:
                source["host"] = self.host
            name = f"{meta.get('name')}.{time.time_ns():x}"
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": type_,
                "source": source,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
                "reportingComponent": self.component,
                "reportingInstance": self.host or self.component,
            }
            await self.api.create("v1", "events", ns, event)
            self._seen[key] = (name, 1)
        except (ApiError, OSError, TimeoutError) as e:
            # The event may have been garbage-collected with its namespace; start a new one next time.
            self._seen.pop(key, None)
            log.debug("event %s/%s not recorded: %s", reason, meta.get("name"), e)
        except Exception as e:  # aiohttp errors and the like must never break the caller
            self._seen.pop(key, None)
            log.debug("event %s/%s not recorded: %s", reason, meta.get("name"), e)

    def forget(self, uid: str) -> None:
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]
