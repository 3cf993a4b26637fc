"""`python -m modelops_local.supervisor --dir DIR`: keeps the local plane's own processes running.

On a cluster, systemd restarts a crashed kubelet or API server and the kubelet restarts a crashed
operator pod. On the local plane this process does it for all of them: it starts the API server,
installs the CRDs once it is ready, then starts the nodes (scheduler and kubelets), the controllers and
the operator (unless `--no-operator`), each in its own session, logging to `DIR/logs/<name>.log`.

When one exits for any reason other than `modelops local down`, it is started again after a back-off
that begins at 1 s and doubles up to 30 s, and starts from 1 s again once the process has run for
60 s (the kubelet's CrashLoopBackOff, scaled down to how fast these processes start). Restarts, the
last exit (exit code or signal) and its time are kept in `DIR/run/supervisor.json`, which
`modelops local status` shows.

Only the processes it started are supervised: another operator run against the same plane (a second
replica for leader election, a debugger) is left alone. Processes of an older plane that ran without
a supervisor are adopted: watched by their pid and started anew when they end.

SIGTERM stops everything, the operator first and the API server last, and then the supervisor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelops_local import statedir

log = logging.getLogger("modelops_local.supervisor")

BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
STOP_GRACE = 10.0
ORDER = ("apiserver", "nodes", "controllers", "operator")


@dataclass
class Record:
    """What `modelops local status` shows of one supervised process."""

    pid: int | None = None
    state: str = "starting"  # running | backoff | stopped
    restarts: int = 0
    started_at: str = ""
    last_exit: str = ""
    last_exit_at: str = ""
    next_start_at: str = ""


def describe_exit(returncode: int | None) -> str:
    """`exit code 1`, `killed by signal 9 (SIGKILL)`, from a Popen-style return code."""
    if returncode is None:
        return "exited (status unknown: not started by this supervisor)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "?"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


def next_backoff(previous: float, ran_for: float) -> float:
    """The delay before the next start: doubling from BACKOFF_BASE to BACKOFF_MAX, reset when stable."""
    if ran_for >= STABLE_AFTER:
        previous = 0.0
    return min(max(previous * 2, BACKOFF_BASE), BACKOFF_MAX)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_path(directory: Path) -> Path:
    return directory / "run" / "supervisor.json"


def read_status(directory: Path) -> dict[str, Record]:
    try:
        raw = json.loads(status_path(directory).read_text())
        return {name: Record(**value) for name, value in raw.items()}
    except (OSError, ValueError, TypeError):
        return {}


def commands(directory: Path) -> dict[str, list[str]]:
    """Each component's argv, from what `modelops local up` recorded in DIR/plane.json."""
    from modelops_local.cluster import _load_config

    config = _load_config(directory)
    python = sys.executable
    kubeconfig = str(directory / "kubeconfig")
    argv = {
        "apiserver": [python, "-m", "modelops_local.apiserver", "--dir", str(directory)],
        "nodes": [python, "-m", "modelops_local.nodes", "--kubeconfig", kubeconfig, "--dir", str(directory),
                  "--nodes", str(config.nodes), "--gpus", str(config.gpus), "--runtime", config.runtime],
        "controllers": [python, "-m", "modelops_local.controllers", "--kubeconfig", kubeconfig,
                        "--dir", str(directory)],
    }  # fmt: skip
    if config.operator:
        argv["operator"] = [
            str(Path(python).parent / "modelops"),
            "operator",
            "--kubeconfig",
            kubeconfig,
            "--bind-address",
            "127.0.0.1",
            "--health-port",
            str(config.operator_health_port),
            "--metrics-port",
            str(config.operator_metrics_port),
        ]
    return argv


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.records: dict[str, Record] = {name: Record() for name in commands(directory)}
        previous = read_status(directory)
        for name, record in self.records.items():
            if name in previous:  # restarts count across supervisor restarts, until `down`
                record.restarts = previous[name].restarts
                record.last_exit, record.last_exit_at = previous[name].last_exit, previous[name].last_exit_at
        self.stopping = asyncio.Event()
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.adopted: dict[str, int] = {}

    def save(self) -> None:
        path = status_path(self.dir)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in self.records.items()}, indent=2))
        os.replace(tmp, path)

    def _pid_file(self, name: str) -> Path:
        return self.dir / "run" / f"{name}.pid"

    async def _spawn(self, name: str) -> asyncio.subprocess.Process:
        argv = commands(self.dir)[name]
        with open(self.dir / "logs" / f"{name}.log", "ab") as logfile:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                cwd=self.dir,
            )
        self._pid_file(name).write_text(str(proc.pid))
        record = self.records[name]
        record.pid, record.state, record.started_at, record.next_start_at = proc.pid, "running", _now(), ""
        self.save()
        return proc

    async def _wait_adopted(self, pid: int) -> None:
        from modelops_local.cluster import _alive

        while _alive(pid) and not self.stopping.is_set():
            await asyncio.sleep(0.5)

    async def keep(self, name: str) -> None:
        """Run one component until `stop`, restarting it with back-off whenever it exits."""
        backoff = 0.0
        from modelops_local.cluster import _running_pid

        adopted = _running_pid(self.dir, name)
        while not self.stopping.is_set():
            began = time.monotonic()
            returncode: int | None
            if adopted is not None:
                log.info("%s is already running (pid %d): watching it", name, adopted)
                self.adopted[name] = adopted
                record = self.records[name]
                record.pid, record.state, record.started_at = adopted, "running", _now()
                self.save()
                await self._wait_adopted(adopted)
                self.adopted.pop(name, None)
                adopted, returncode = None, None
            else:
                try:
                    proc = await self._spawn(name)
                except OSError as e:  # a missing or broken executable: report it and keep trying
                    log.error("cannot start %s: %s", name, e)
                    record = self.records[name]
                    record.restarts += 1
                    record.pid, record.state = None, "backoff"
                    record.last_exit, record.last_exit_at = f"failed to start: {e}", _now()
                    self.save()
                    backoff = next_backoff(backoff, 0.0)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), backoff)
                    continue
                self.procs[name] = proc
                waiter = asyncio.create_task(proc.wait())
                stop = asyncio.create_task(self.stopping.wait())
                await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if not waiter.done():
                    waiter.cancel()
                    return  # stop() ends it
                returncode = proc.returncode
                self.procs.pop(name, None)
            if self.stopping.is_set():
                return
            ran = time.monotonic() - began
            backoff = next_backoff(backoff, ran)
            record = self.records[name]
            record.restarts += 1
            record.pid, record.state = None, "backoff"
            record.last_exit, record.last_exit_at = describe_exit(returncode), _now()
            record.next_start_at = datetime.fromtimestamp(time.time() + backoff, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            self.save()
            self._pid_file(name).unlink(missing_ok=True)
            log.warning(
                "%s %s after %.1f s; starting it again in %g s (restart %d)",
                name,
                record.last_exit,
                ran,
                backoff,
                record.restarts,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)

    async def _api_ready(self) -> None:
        """Wait for the API server, then install the CRDs (the operator needs them at start)."""
        from modelops_local.cluster import _get, install_crds

        kubeconfig = self.dir / "kubeconfig"
        while not self.stopping.is_set():
            try:
                if kubeconfig.exists() and await asyncio.to_thread(_get, kubeconfig, "/readyz"):
                    await asyncio.to_thread(install_crds, kubeconfig)
                    return
            except Exception as e:
                log.debug("API server not ready yet: %s", e)
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        names = list(self.records)
        tasks = [asyncio.create_task(self.keep("apiserver"), name="keep-apiserver")]
        await self._api_ready()
        tasks += [asyncio.create_task(self.keep(n), name=f"keep-{n}") for n in names if n != "apiserver"]
        await self.stopping.wait()
        await self.stop()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """The operator first, the API server last; SIGKILL after STOP_GRACE seconds each."""
        for name in reversed(ORDER):
            pid = self.procs[name].pid if name in self.procs else self.adopted.get(name)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            from modelops_local.cluster import _alive

            while time.monotonic() < deadline and _alive(pid):
                if name in self.procs and self.procs[name].returncode is not None:
                    break
                await asyncio.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if name in self.procs:
                await self.procs[name].wait()
            self._pid_file(name).unlink(missing_ok=True)
            record = self.records[name]
            record.pid, record.state = None, "stopped"
        self.save()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelops_local.supervisor", description=__doc__)
    parser.add_argument("--dir", required=True, type=Path, help="the local plane's directory")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    statedir.secure(directory)
    for sub in ("logs", "run"):
        (directory / sub).mkdir(exist_ok=True)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(Supervisor(directory).run())


if __name__ == "__main__":
    main()
