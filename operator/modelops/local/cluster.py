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

from modelops.local.client import ApiError, Client

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
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    down = sub.add_parser("down", help="stop every component (state stays for the next up)")
    status_ = sub.add_parser("status", help="show which components run and how many nodes are Ready")
    for action in (up, down, status_):
        action.add_argument(
            "--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})"
        )


def run(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    if args.action == "up":
        config = PlaneConfig(nodes=args.nodes, gpus=args.gpus, operator=not args.no_operator)
        try:
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
    return 0 if all(s.startswith("running") for n, s in report.items() if n in _wanted(directory)) else 1


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


def _wait(directory: Path, name: str, check: Any, deadline: float, what: str) -> None:
    """Poll `check()` until it returns true, failing early (with the log) if the component died."""
    while time.monotonic() < deadline:
        if _running_pid(directory, name) is None:
            raise PlaneError(f"{name} exited while {what}; {_tail(directory, name)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise PlaneError(f"timed out {what}; {_tail(directory, name)}")


# --- up / down / status ------------------------------------------------------------------------------


def _wanted(directory: Path) -> tuple[str, ...]:
    config = _load_config(directory)
    return COMPONENTS if config.operator else COMPONENTS[:-1]


def _load_config(directory: Path) -> PlaneConfig:
    try:
        return PlaneConfig(**json.loads((directory / "plane.json").read_text()))
    except (OSError, ValueError, TypeError):
        return PlaneConfig()


def up(directory: Path, config: PlaneConfig, *, timeout: float = 60.0) -> None:
    """Bring the plane up (idempotent: running components are left alone)."""
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    kubeconfig = directory / "kubeconfig"
    python = sys.executable

    if _running_pid(directory, "apiserver") is None:
        kubeconfig.unlink(missing_ok=True)
        _spawn(directory, "apiserver", [python, "-m", "modelops.local.apiserver", "--dir", str(directory)])
    _wait(
        directory,
        "apiserver",
        lambda: kubeconfig.exists() and _get(kubeconfig, "/readyz"),
        deadline,
        "waiting for the API server",
    )
    install_crds(kubeconfig)

    if _running_pid(directory, "nodes") is None:
        _spawn(
            directory,
            "nodes",
            [
                python,
                "-m",
                "modelops.local.nodes",
                "--kubeconfig",
                str(kubeconfig),
                "--dir",
                str(directory),
                "--nodes",
                str(config.nodes),
                "--gpus",
                str(config.gpus),
            ],
        )
    if _running_pid(directory, "controllers") is None:
        _spawn(
            directory,
            "controllers",
            [
                python,
                "-m",
                "modelops.local.controllers",
                "--kubeconfig",
                str(kubeconfig),
                "--dir",
                str(directory),
            ],
        )
    _wait(
        directory,
        "nodes",
        lambda: _nodes_ready(kubeconfig) >= config.nodes,
        deadline,
        "waiting for the nodes",
    )

    if config.operator:
        previous = _load_config(directory)
        if _running_pid(directory, "operator") is None or not previous.operator_health_port:
            config.operator_health_port = _free_port()
            config.operator_metrics_port = _free_port()
            bin_dir = Path(python).parent
            _spawn(
                directory,
                "operator",
                [
                    str(bin_dir / "modelops"),
                    "operator",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--bind-address",
                    "127.0.0.1",
                    "--health-port",
                    str(config.operator_health_port),
                    "--metrics-port",
                    str(config.operator_metrics_port),
                ],
            )
        else:
            config.operator_health_port = previous.operator_health_port
            config.operator_metrics_port = previous.operator_metrics_port
        port = config.operator_health_port
        _wait(
            directory,
            "operator",
            lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"),
            deadline,
            "waiting for the operator to become ready",
        )
    (directory / "plane.json").write_text(json.dumps(asdict(config), indent=2))


def down(directory: Path, *, grace: float = 10.0) -> None:
    """Stop every component: SIGTERM to its process group, SIGKILL after `grace` seconds."""
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
    for name in pids:
        _pid_file(directory, name).unlink(missing_ok=True)


def status(directory: Path) -> dict[str, str]:
    report = {}
    for name in COMPONENTS:
        pid = _running_pid(directory, name)
        report[name] = f"running (pid {pid})" if pid else "stopped"
    kubeconfig = directory / "kubeconfig"
    if report["apiserver"].startswith("running") and kubeconfig.exists():
        with contextlib.suppress(Exception):
            report["nodes"] += f", {_nodes_ready(kubeconfig)} Ready"
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
