"""Memory limits for local containers: kill a container whose processes use more than its limit.

Usage is measured the closest cheap way that needs no memory controller: the proportional set size
(PSS, from /proc/<pid>/smaps_rollup) summed over every process of the container, as `proctree.py`
finds them (its cgroup, or its descendants and marked processes), so a grandchild in a new session
counts as much as the main process. PSS charges a shared page once across its sharers, so forked
workers (DataLoader, torchrun ranks) are not counted twice, unlike RSS. One pass every `interval`
seconds serves every limited container, and runs only while some container has a limit. Like the
kernel's OOM killer it kills at once (SIGKILL, the whole container); the kubelet then reports
`OOMKilled` with exit code 137.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


def session_of(pid: int, proc: str = "/proc") -> int | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses): state ppid pgrp session
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[3])
    except (IndexError, ValueError):
        return None


def pss_bytes(pid: int, proc: str = "/proc") -> int:
    try:
        with open(f"{proc}/{pid}/smaps_rollup", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Members(Protocol):
    def pids(self) -> set[int]: ...


@dataclass
class _Watch:
    members: Members
    limit: int
    on_exceed: Callable[[int], None]


class MemoryMonitor:
    def __init__(self, interval: float = 2.0, proc: str = "/proc") -> None:
        self.interval = interval
        self.proc = proc
        self._watches: dict[object, _Watch] = {}
        self._wake = asyncio.Event()

    def watch(self, key: object, members: Members, limit: int, on_exceed: Callable[[int], None]) -> None:
        self._watches[key] = _Watch(members, limit, on_exceed)
        self._wake.set()

    def unwatch(self, key: object) -> None:
        self._watches.pop(key, None)

    def usage(self) -> dict[object, int]:
        """Bytes used per watched container."""
        return {
            key: sum(pss_bytes(pid, self.proc) for pid in watch.members.pids())
            for key, watch in list(self._watches.items())
        }

    def check(self) -> None:
        self._enforce(self.usage())

    def _enforce(self, used: dict[object, int]) -> None:
        for key, nbytes in used.items():
            watch = self._watches.get(key)
            if watch is not None and nbytes > watch.limit:
                log.info(
                    "container %s uses %d bytes, over its limit of %d: killing it", key, nbytes, watch.limit
                )
                self._watches.pop(key, None)
                watch.on_exceed(nbytes)

    async def run(self) -> None:
        while True:
            if not self._watches:
                self._wake.clear()
                await self._wake.wait()
            try:
                self._enforce(await asyncio.to_thread(self.usage))
            except OSError as e:
                log.warning("memory scan failed: %s", e)
            await asyncio.sleep(self.interval)


def kill_session(session: int, proc: str = "/proc") -> None:
    """SIGKILL every process of a session (a process may have left the container's group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, signal.SIGKILL)
    for entry in os.listdir(proc):
        if entry.isdigit() and session_of(int(entry), proc) == session:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
