"""`modelops local up|down|status`: the whole platform on one machine, with no cluster and no containers.

`up` starts the local plane's components as their own processes (API server, nodes with scheduler and
kubelets, controllers) and then the operator through the very same `modelops operator` entrypoint a
cluster runs, pointed at the kubeconfig the API server wrote. Everything lives under one directory, so
`down` and `up` again pick up the same objects, and several planes can run side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modelops_local import statedir
from modelops_local.client import ApiError, Client

DEFAULT_DIR = Path(os.environ.get("MODELOPS_LOCAL_DIR", ".modelops/local"))
COMPONENTS = ("apiserver", "nodes", "controllers", "operator")


@dataclass
class PlaneConfig:
    """What `up` was asked for; kept in DIR/plane.json so `status` and a later `up` agree."""

    nodes: int = 1
    gpus: int = 0
    operator: bool = True
    operator_health_port: int = 0
    operator_metrics_port: int = 0
    runtime: str = "process"  # how pods' containers run: process, podman or docker (nodes/engine.py)


class PlaneError(RuntimeError):
    """The local plane could not be brought up; the message says which component and where its log is."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start the local plane (returns once it is ready)")
    up.add_argument("--nodes", type=int, default=1, help="number of Node objects / kubelets (default 1)")
    up.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity of each node (default 0)")
    up.add_argument(
        "--no-operator", action="store_true", help="do not start the operator (install it with helm instead)"
    )
    up.add_argument(
        "--runtime",
        choices=("process", "podman", "docker"),
        default="process",
        help="run pods' containers as local processes (default, no engine needed) or as real containers "
        "of podman or docker (see docs/local-plane.md)",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    down = sub.add_parser("down", help="stop every component (state stays for the next up)")
    status_ = sub.add_parser(
        "status",
        help="show which components run, their restarts and last exits, and how many nodes are Ready",
    )
    for action in (up, down, status_):
        action.add_argument(
            "--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})"
        )


def run(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    if args.action == "up":
        config = PlaneConfig(
            nodes=args.nodes, gpus=args.gpus, operator=not args.no_operator, runtime=args.runtime
        )
        try:
            if config.runtime != "process":
                from modelops_local.nodes.engine import Engine, EngineError

                try:
                    Engine.detect(config.runtime).version()
                except EngineError as e:
                    raise PlaneError(str(e)) from None
            up(directory, config, timeout=args.timeout)
        except PlaneError as exc:
            print(f"modelops local up: {exc}", file=sys.stderr)
            return 1
        print_instructions(directory)
        return 0
    if args.action == "down":
        down(directory)
        print(f"local plane in {directory} stopped; its state stays there for the next `up`")
        return 0
    report = status(directory)
    for name, state in report.items():
        print(f"{name:12} {state}")
    wanted = ("supervisor", *_wanted(directory))
    return 0 if all(s.startswith("running") for n, s in report.items() if n in wanted) else 1


# --- processes ---------------------------------------------------------------------------------------


def _pid_file(directory: Path, name: str) -> Path:
    return directory / "run" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _running_pid(directory: Path, name: str) -> int | None:
    try:
        pid = int(_pid_file(directory, name).read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _spawn(directory: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a component detached from this process (its own session), logging to DIR/logs/NAME.log."""
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    (directory / "run").mkdir(parents=True, exist_ok=True)
    log = (directory / "logs" / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=directory,
    )
    log.close()
    _pid_file(directory, name).write_text(str(proc.pid))
    return proc.pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(directory: Path, name: str, lines: int = 15) -> str:
    path = directory / "logs" / f"{name}.log"
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(f"  {line}" for line in text)


# --- up / down / status ------------------------------------------------------------------------------


def _wanted(directory: Path) -> tuple[str, ...]:
    config = _load_config(directory)
    return COMPONENTS if config.operator else COMPONENTS[:-1]


def _load_config(directory: Path) -> PlaneConfig:
    try:
        return PlaneConfig(**json.loads((directory / "plane.json").read_text()))
    except (OSError, ValueError, TypeError):
        return PlaneConfig()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _restarts(directory: Path, name: str) -> int:
    from modelops_local.supervisor import read_status

    record = read_status(directory).get(name)
    return record.restarts if record else 0


def _wait_supervised(directory: Path, name: str, check: Any, deadline: float, what: str) -> None:
    """Poll `check()`; fail early (with the log) when the supervisor died or the component crash-loops."""
    before = _restarts(directory, name)
    while time.monotonic() < deadline:
        if _running_pid(directory, "supervisor") is None:
            raise PlaneError(f"the supervisor exited while {what}; {_tail(directory, 'supervisor')}")
        if _restarts(directory, name) - before >= 3:
            raise PlaneError(f"{name} keeps exiting while {what}; {_tail(directory, name)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise PlaneError(f"timed out {what}; {_tail(directory, name)}")


def up(directory: Path, config: PlaneConfig, *, timeout: float = 60.0) -> None:
    """Bring the plane up under its supervisor (idempotent: a running plane is left as it is).

    The supervisor (`supervisor.py`) starts the components and restarts them when they exit; this
    waits until they are ready.
    """
    statedir.secure(directory)
    for sub in ("logs", "run"):
        (directory / sub).mkdir(exist_ok=True)
    deadline = time.monotonic() + timeout
    kubeconfig = directory / "kubeconfig"
    previous = _load_config(directory)
    if _running_pid(directory, "supervisor") is None:
        if _running_pid(directory, "apiserver") is None:
            kubeconfig.unlink(missing_ok=True)
        if config.operator:
            # Stable ports across down/up when they are still free (or held by a running operator).
            keep = previous.operator_health_port and (
                _running_pid(directory, "operator") is not None
                or (_port_free(previous.operator_health_port) and _port_free(previous.operator_metrics_port))
            )
            config.operator_health_port = previous.operator_health_port if keep else _free_port()
            config.operator_metrics_port = previous.operator_metrics_port if keep else _free_port()
        (directory / "plane.json").write_text(json.dumps(asdict(config), indent=2))
        _spawn(
            directory,
            "supervisor",
            [sys.executable, "-m", "modelops_local.supervisor", "--dir", str(directory)],
        )
    else:
        config = previous
    _wait_supervised(
        directory,
        "apiserver",
        lambda: kubeconfig.exists() and _get(kubeconfig, "/readyz"),
        deadline,
        "waiting for the API server",
    )
    install_crds(kubeconfig)
    _wait_supervised(
        directory,
        "nodes",
        lambda: _nodes_ready(kubeconfig) >= config.nodes,
        deadline,
        "waiting for the nodes",
    )
    if config.operator:
        port = config.operator_health_port
        _wait_supervised(
            directory,
            "operator",
            lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"),
            deadline,
            "waiting for the operator to become ready",
        )


def down(directory: Path, *, grace: float = 10.0) -> None:
    """Stop the supervisor (which stops every component, the operator first), then anything left over:
    SIGTERM to each process group, SIGKILL after `grace` seconds."""
    supervisor = _running_pid(directory, "supervisor")
    if supervisor is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + grace * len(COMPONENTS) + 5
        while time.monotonic() < deadline and _alive(supervisor):
            time.sleep(0.1)
        if _alive(supervisor):
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGKILL)
        _pid_file(directory, "supervisor").unlink(missing_ok=True)
    pids = {name: pid for name in reversed(COMPONENTS) if (pid := _running_pid(directory, name))}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    for name in COMPONENTS:
        _pid_file(directory, name).unlink(missing_ok=True)
    from modelops_local.supervisor import status_path

    status_path(directory).unlink(missing_ok=True)  # restart counts start again with the next `up`


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def status(directory: Path) -> dict[str, str]:
    from modelops_local.supervisor import read_status

    records = read_status(directory)
    sup = _running_pid(directory, "supervisor")
    report = {"supervisor": f"running (pid {sup})" if sup else "stopped"}
    for name in COMPONENTS:
        pid = _running_pid(directory, name)
        record = records.get(name)
        if pid:
            state = f"running (pid {pid})"
        elif sup and record is not None and record.state == "backoff":
            state = f"restarting (back-off until {record.next_start_at})"
        else:
            state = "stopped"
        if sup and record is not None:
            state += f", {_plural(record.restarts, 'restart')}"
            if record.last_exit:
                state += f", last exit: {record.last_exit} at {record.last_exit_at}"
        report[name] = state
    kubeconfig = directory / "kubeconfig"
    if report["apiserver"].startswith("running") and kubeconfig.exists():
        with contextlib.suppress(Exception):
            ready = _nodes_ready(kubeconfig)
            head, sep, tail = report["nodes"].partition(",")
            report["nodes"] = f"{head}, {ready} Ready{sep}{tail}"
    return report


def print_instructions(directory: Path) -> None:
    kubeconfig = directory / "kubeconfig"
    print(f"local plane is up in {directory}")
    print("point kubectl at it with:")
    print(f"  export KUBECONFIG={kubeconfig}")
    print("  kubectl get nodes")
    print(
        f"logs of its components are in {directory / 'logs'}; stop it with `modelops local down --dir {directory}`"
    )


# --- talking to the API server -----------------------------------------------------------------------


def _run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def _get(kubeconfig: Path, path: str) -> bool:
    async def go() -> bool:
        async with Client.from_kubeconfig(kubeconfig) as api:
            # Health endpoints answer plain "ok", which is not JSON; a non-2xx would raise ApiError.
            with contextlib.suppress(json.JSONDecodeError):
                await api.request("GET", path)
            return True

    return bool(_run_async(go()))


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _nodes_ready(kubeconfig: Path) -> int:
    async def go() -> int:
        async with Client.from_kubeconfig(kubeconfig) as api:
            nodes = await api.list("v1", "nodes", None)
        return sum(
            1
            for node in nodes.get("items", [])
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        )

    return int(_run_async(go()))


def install_crds(kubeconfig: Path) -> None:
    """Create or update the modelops CRDs, straight from the models (no files needed)."""
    from modelops.api import KINDS
    from modelops.api.crdgen import crd

    async def go() -> None:
        async with Client.from_kubeconfig(kubeconfig) as api:
            for info in KINDS:
                body = crd(info)
                name = body["metadata"]["name"]
                try:
                    await api.create("apiextensions.k8s.io/v1", "customresourcedefinitions", None, body)
                except ApiError as exc:
                    if exc.status != 409:
                        raise PlaneError(f"could not install CRD {name}: {exc}") from exc
                    current = await api.get(
                        "apiextensions.k8s.io/v1", "customresourcedefinitions", None, name
                    )
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    await api.update("apiextensions.k8s.io/v1", "customresourcedefinitions", None, name, body)

    _run_async(go())
