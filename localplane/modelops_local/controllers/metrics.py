"""Where the autoscaler's numbers come from on one machine (the metrics-server analogue).

CPU and memory: the kubelet sets `MODELOPS_POD_UID` in every container's environment, so a pod's processes are the
ones whose /proc/<pid>/environ carries its uid; their utime+stime between two samples over the wall
time between them is the pod's usage in cores (the first sample averages over the processes' life);
their resident set is its memory.
Pods metrics: each pod's Prometheus endpoint (`prometheus.io/port`, default 8080, and
`prometheus.io/path`, default /metrics); a counter becomes a rate between two scrapes, a gauge is used
as it is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from . import common as c

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SCRAPE_TIMEOUT = 3.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, int] | None:
    """(utime+stime, starttime) in clock ticks."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[11]) + int(fields[12]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _uptime() -> float:
    raw = _read("/proc/uptime")
    return float(raw.split()[0]) if raw else 0.0


class CpuSampler:
    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._pid_uid: dict[int, str | None] = {}
        self._last: dict[str, tuple[float, float, frozenset[int]]] = {}

    def _scan(self) -> dict[str, list[int]]:
        by_uid: dict[str, list[int]] = {}
        live: set[int] = set()
        for entry in os.listdir(self.proc):
            if not entry.isdigit():
                continue
            pid = int(entry)
            live.add(pid)
            if pid not in self._pid_uid:
                env = _read(f"{self.proc}/{pid}/environ")
                uid = None
                if env:
                    for item in env.split(b"\0"):
                        if item.startswith(b"MODELOPS_POD_UID="):
                            uid = item.split(b"=", 1)[1].decode(errors="replace")
                            break
                self._pid_uid[pid] = uid
            uid = self._pid_uid[pid]
            if uid:
                by_uid.setdefault(uid, []).append(pid)
        for pid in [p for p in self._pid_uid if p not in live]:
            del self._pid_uid[pid]
        return by_uid

    def memory(self, pod_uids: Sequence[str]) -> dict[str, float]:
        """Resident memory in bytes per pod uid (the sum over the pod's processes)."""
        by_uid = self._scan()
        out: dict[str, float] = {}
        for uid in pod_uids:
            total = 0
            found = False
            for pid in by_uid.get(uid, []):
                raw = _read(f"/proc/{pid}/statm")
                if raw is None:
                    continue
                found = True
                total += int(raw.split()[1]) * _PAGE
            if found:
                out[uid] = float(total)
        return out

    def sample(self, pod_uids: Sequence[str]) -> dict[str, float]:
        """CPU usage in cores per pod uid, for pods with at least one live process."""
        by_uid = self._scan()
        now = time.monotonic()
        uptime = _uptime()
        out: dict[str, float] = {}
        for uid in pod_uids:
            pids = by_uid.get(uid)
            if not pids:
                continue
            ticks = 0
            oldest = uptime
            for pid in pids:
                st = _stat(pid)
                if st is None:
                    continue
                ticks += st[0]
                oldest = min(oldest, st[1] / _CLK_TCK)
            seconds = ticks / _CLK_TCK
            last = self._last.get(uid)
            pidset = frozenset(pids)
            if last is not None and last[2] == pidset and now > last[1] and seconds >= last[0]:
                out[uid] = (seconds - last[0]) / (now - last[1])
            else:
                lifetime = max(uptime - oldest, 1e-3)
                out[uid] = seconds / lifetime
            self._last[uid] = (seconds, now, pidset)
        for uid in [u for u in self._last if u not in pod_uids]:
            del self._last[uid]
        return out


def pod_request(pod: Obj, resource: str) -> float:
    total = 0.0
    for container in (pod.get("spec") or {}).get("containers") or []:
        value = ((container.get("resources") or {}).get("requests") or {}).get(resource)
        if value is None:
            return 0.0  # upstream refuses utilization when any container lacks the request
        total += c.parse_quantity(value)
    return total


def _labels_match(labels: dict[str, str], selector: Obj | None) -> bool:
    return selector is None or c.selector_matches(selector, labels)


def metric_value(text: str, name: str, selector: Obj | None) -> tuple[float, bool] | None:
    """(sum of matching samples, is a counter) for metric `name` in a Prometheus exposition."""
    found = False
    total = 0.0
    counter = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name and not (family.name == name and sample.name in (name, f"{name}_total")):
                continue
            if not _labels_match(dict(sample.labels), selector):
                continue
            found = True
            total += float(sample.value)
            counter = counter or family.type == "counter" or sample.name.endswith("_total")
    return (total, counter) if found else None


class PodsMetricScraper:
    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float, float]] = {}

    async def scrape(
        self, session: aiohttp.ClientSession, pods: Sequence[Obj], name: str, selector: Obj | None
    ) -> dict[str, float]:
        """Metric per pod name, for the pods that answered (counters only from their second scrape)."""

        async def one(pod: Obj) -> tuple[str, float] | None:
            ip = (pod.get("status") or {}).get("podIP")
            if not ip or not c.pod_is_active(pod):
                return None
            ann = c.annotations_of(pod)
            port = ann.get("prometheus.io/port", "8080")
            path = ann.get("prometheus.io/path", "/metrics")
            if not path.startswith("/"):
                path = "/" + path
            try:
                async with session.get(
                    f"http://{ip}:{port}{path}", timeout=aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT)
                ) as resp:
                    if resp.status != 200:
                        return None
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                log.debug("scrape of %s/%s failed: %s", c.namespace_of(pod), c.name_of(pod), e)
                return None
            try:
                parsed = metric_value(text, name, selector)
            except ValueError as e:
                log.debug("unparsable metrics from %s: %s", c.name_of(pod), e)
                return None
            if parsed is None:
                return None
            value, counter = parsed
            if not counter:
                return c.name_of(pod), value
            key = (c.uid_of(pod), name)
            now = time.monotonic()
            last = self._last.get(key)
            self._last[key] = (value, now)
            if last is None or now <= last[1] or value < last[0]:
                return None
            return c.name_of(pod), (value - last[0]) / (now - last[1])

        answers = await asyncio.gather(*(one(p) for p in pods))
        return {k: v for k, v in (a for a in answers if a is not None)}
