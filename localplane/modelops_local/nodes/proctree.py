"""Every process a container started: found for memory accounting, killed when the container ends.

A container is more than its main process's group: torchrun starts its workers in new sessions, and
any program may daemonize. A runtime puts the whole container in a cgroup and tears it down; so does
the local kubelet when the machine lets it:

* `CgroupTracker` (preferred): one cgroup v2 directory per container run, under the nodes process's
  own cgroup (`<cgroup2 mount>/<own cgroup>/modelops-local/<pod uid>/<container>-<restart>`). The
  container's first process joins it before it execs (`join_script`), so every descendant is in it
  whatever sessions it makes; `cgroup.kill` ends them all at once. No controller is needed (only the
  hierarchy's membership), so this works on hosts that give cgroup v2 without delegating the memory
  controller, such as this project's CI (cgroup v1 controllers plus an empty unified hierarchy).
* `ProcTracker` (fallback, when no writable cgroup v2 exists): the descendants of the main process by
  parent pid, plus every process that carries the container's marker variable in its environment
  (what a double fork leaves behind: it inherits the environment but not the parent), plus every
  process seen before; killing repeats until none is left, since a dying parent's children are
  re-parented and found on the next pass.

The memory limit is checked against the proportional set size summed over exactly these processes
(`memory.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "MODELOPS_CONTAINER_ID"
CGROUP_DIR = "modelops-local"


def _stat_fields(pid: int, proc: str = "/proc") -> list[bytes] | None:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # After the command name (which may hold spaces and parentheses): state ppid pgrp session ...
    return raw[raw.rfind(b")") + 2 :].split()


def parent_of(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a live process, None for a zombie or a gone one."""
    fields = _stat_fields(pid, proc)
    if fields is None or len(fields) < 20 or fields[0] in {b"Z", b"X"}:
        return None
    try:
        return int(fields[1]), int(fields[19])
    except ValueError:
        return None


def _pids(proc: str = "/proc") -> list[int]:
    return [int(e) for e in os.listdir(proc) if e.isdigit()]


def descendants(root: int, table: dict[int, int]) -> set[int]:
    """Pids below `root` in a pid -> ppid table (pure)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


# ----- cgroup v2 ------------------------------------------------------------------------------------


def _cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> Path | None:
    with contextlib.suppress(OSError), open(mountinfo, encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return Path(left.split()[4])
    return None


def _own_cgroup(path: str = "/proc/self/cgroup") -> str | None:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def cgroup_base(plane: str) -> Path | None:
    """`<mount>/<own cgroup>/modelops-local/<plane>` when this process may make cgroups there, else None.

    `plane` tells planes on one machine apart, so one plane's sweep never touches another's pods.
    """
    if os.environ.get("MODELOPS_LOCAL_NO_CGROUPS"):
        return None
    mount, own = _cgroup2_mount(), _own_cgroup()
    if mount is None or own is None:
        return None
    base = mount / own.lstrip("/") / CGROUP_DIR / plane
    probe = base / f"probe-{os.getpid()}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe.mkdir()
        ok = (probe / "cgroup.procs").exists() and os.access(probe / "cgroup.procs", os.W_OK)
        probe.rmdir()
    except OSError as e:
        log.info("no cgroup v2 sub-tree for containers (%s): tracking processes through /proc", e)
        return None
    return base if ok else None


class CgroupTracker:
    kind = "cgroup"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def join_script(self) -> str:
        """Shell that moves itself into the cgroup (before it execs the container), or fails."""
        procs = str(self.path / "cgroup.procs").replace("'", "'\\''")
        return f"echo 0 > '{procs}' || exit 126; "

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.path.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in procs.read_text().split())
        return found

    def empty(self) -> bool:
        try:
            return "populated 0" in (self.path / "cgroup.events").read_text()
        except OSError:
            return True

    def kill(self) -> None:
        try:
            (self.path / "cgroup.kill").write_text("1")
            return
        except OSError:
            pass  # before Linux 5.14: signal each member
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def release(self) -> None:
        for child in sorted(self.path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            self.path.rmdir()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # the pod's directory, once its last container is gone


def sweep(base: Path | None, known_pods: set[str]) -> list[str]:
    """Kill and remove the cgroups of pods this plane no longer has (deleted while the kubelet was
    down): what their containers started would otherwise run on unseen. Returns their uids."""
    if base is None:
        return []
    gone = [p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("probe-")]
    gone = [uid for uid in gone if uid not in known_pods]
    for uid in gone:
        kill_pod_cgroups(base, uid)
    return gone


def kill_pod_cgroups(base: Path | None, pod_uid: str) -> int:
    """Kill whatever is left in a pod's cgroups (after a kubelet restart); how many cgroups had some."""
    if base is None or not (base / pod_uid).is_dir():
        return 0
    hit = 0
    for path in (base / pod_uid).iterdir():
        if path.is_dir():
            tracker = CgroupTracker(path)
            if not tracker.empty():
                hit += 1
                tracker.kill()
                wait_empty(tracker, 5.0)
            tracker.release()
    return hit


# ----- /proc fallback -------------------------------------------------------------------------------


class ProcTracker:
    kind = "proc"

    def __init__(self, marker: str, proc: str = "/proc") -> None:
        self.marker = f"{MARKER}={marker}".encode()
        self.proc = proc
        self.main: int | None = None
        self._seen: dict[int, int] = {}  # pid -> start time, so a reused pid is not mistaken for ours

    def join_script(self) -> str:
        return ""

    def _marked(self, pid: int) -> bool:
        with contextlib.suppress(OSError), open(f"{self.proc}/{pid}/environ", "rb") as f:
            return self.marker in f.read().split(b"\0")
        return False

    def pids(self) -> set[int]:
        table: dict[int, int] = {}
        starts: dict[int, int] = {}
        for pid in _pids(self.proc):
            info = parent_of(pid, self.proc)
            if info is not None:
                table[pid], starts[pid] = info
        found: set[int] = set()
        if self.main is not None and self.main in table:
            found = {self.main} | descendants(self.main, table)
        found |= {pid for pid, start in self._seen.items() if starts.get(pid) == start}
        found |= {pid for pid in table if pid not in found and self._marked(pid)}
        found |= {d for pid in list(found) for d in descendants(pid, table)}
        self._seen = {pid: starts[pid] for pid in found if pid in starts}
        return found

    def empty(self) -> bool:
        return not self.pids()

    def kill(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        log.warning("processes %s of %s survived SIGKILL", sorted(self.pids()), self.marker.decode())

    def release(self) -> None:
        self._seen.clear()


Tracker = CgroupTracker | ProcTracker


def wait_empty(tracker: Tracker, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tracker.empty():
            return True
        time.sleep(0.02)
    return tracker.empty()
