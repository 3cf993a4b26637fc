"""`kubectl exec`, `kubectl cp` and `kubectl port-forward` against the local plane.

kubectl 1.31+ speaks WebSockets for these (KEP-4006), and so does this module:

* `pods/exec`: the `v5.channel.k8s.io` subprotocol (v4 also accepted). Every binary message starts with
  a channel byte: 0 stdin (client to server), 1 stdout, 2 stderr, 3 the final `Status` (JSON; a
  non-zero exit is `NonZeroExitCode` with the code as the `ExitCode` cause, which kubectl exits with),
  4 terminal resize (ignored: there is no TTY), and in v5 255 = "close this channel" (`[255, 0]` is the
  client's end of stdin). `kubectl cp` is `tar` over exec, so it needs nothing more.
* `pods/portforward`: the `SPDY/3.1+portforward.k8s.io` subprotocol, a SPDY/3.1 session inside the
  WebSocket (`spdy.py`). Each forwarded connection is a pair of streams, `error` and `data`, with the
  same `requestID`; the data stream is joined to a TCP connection to the pod's IP and port.

Where the command runs is the kubelet's business, so it is read from the files the kubelet keeps per
container run (`DIR/pods/<ns>/<pod>/<uid>/<container>/`): `runtime.json` for a container run by an
engine (`podman exec` / `docker exec` with the kubelet's engine options), else `pid` for the process
runtime, whose exec joins the container as closely as a process can: the container's environment,
working directory, user, groups and cgroup (so the process is killed with the container), and its
mountPaths rewritten to the volumes' host directories as in the container's own command line.

Both subresources are authorized as `create` on `pods/exec` / `pods/portforward` (`rbac.py`); a
client that does not speak WebSockets (kubectl before 1.30, or with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS
=false`) gets a 400 that says so instead of a SPDY upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from . import errors, rbac, spdy
from .errors import ApiError

log = logging.getLogger(__name__)

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
SPDY_PORTFORWARD = "SPDY/3.1+portforward.k8s.io"
# kubectl tunnels SPDY; other clients (the official Python client) use the kubelet's channel protocol.
PORTFORWARD_PROTOCOLS = (SPDY_PORTFORWARD, "v4.channel.k8s.io", "v5.channel.k8s.io", "portforward.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STREAM_SUBRESOURCES = ("exec", "portforward", "attach")


def is_stream_path(path: str) -> bool:
    """Whether a request path is a pod's exec, attach or portforward subresource."""
    parts = [p for p in path.split("/") if p]
    return len(parts) >= 7 and parts[-3] == "pods" and parts[-1] in STREAM_SUBRESOURCES


@dataclass
class Target:
    """How to start a process in one running container."""

    argv_prefix: list[str]
    env: dict[str, str] | None = None
    cwd: str | None = None
    mounts: dict[str, Path] | None = None
    passthrough: tuple[str, ...] = ()


def _container_dir(data_dir: Path, pod: Mapping[str, Any], container: str) -> Path:
    meta = pod.get("metadata") or {}
    return (
        data_dir
        / "pods"
        / str(meta.get("namespace"))
        / str(meta.get("name"))
        / str(meta.get("uid"))
        / container
    )


def _status_line(path: str, key: str) -> list[str]:
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1:]
    return []


def _cgroup_procs(pid: int) -> str | None:
    """The cgroup.procs file of a process's cgroup v2, when the process is in one we may join."""
    from modelops_local.nodes import proctree

    mount = proctree._cgroup2_mount()
    own = proctree._own_cgroup(f"/proc/{pid}/cgroup")
    if mount is None or own is None:
        return None
    procs = mount / own.lstrip("/") / "cgroup.procs"
    return str(procs) if "modelops-local" in own and os.access(procs, os.W_OK) else None


def process_target(cdir: Path) -> Target:
    """Join a process-runtime container: its env, cwd, identity and cgroup (see the module docstring)."""
    try:
        pid = int((cdir / "pid").read_text().split()[0])
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
        cwd = os.readlink(f"/proc/{pid}/cwd")
        uids = _status_line(f"/proc/{pid}/status", "Uid")
        gids = _status_line(f"/proc/{pid}/status", "Gid")
        groups = _status_line(f"/proc/{pid}/status", "Groups")
    except (OSError, ValueError, IndexError):
        raise ApiError(
            500, "InternalError", "the container's process is gone; is the container running?"
        ) from None
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    prefix: list[str] = []
    procs = _cgroup_procs(pid)
    if procs:
        quoted = shlex.quote(procs)
        prefix = ["/bin/sh", "-c", f'echo 0 > {quoted} || exit 126; exec "$@"', "modelops-exec"]
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and uids and uids[0] != "0" and setpriv:
        prefix += [setpriv, "--reuid", uids[0], "--regid", gids[0]]
        prefix += ["--groups", ",".join(groups)] if groups else ["--clear-groups"]
        prefix += ["--"]
    mounts: dict[str, Path] = {}
    with contextlib.suppress(ValueError, TypeError):
        mounts = {k: Path(v) for k, v in json.loads(env.get("MODELOPS_LOCAL_MOUNTS", "{}")).items()}
    term = env.get("MODELOPS_TERMINATION_MESSAGE_FROM")
    if term and env.get("MODELOPS_TERMINATION_MESSAGE_PATH"):
        mounts[term] = Path(env["MODELOPS_TERMINATION_MESSAGE_PATH"])
    keep = tuple(p for p in env.get("MODELOPS_LOCAL_PASSTHROUGH", "").split(os.pathsep) if p)
    return Target(prefix, env, cwd, mounts, keep + tuple(str(p) for p in mounts.values()))


def find_target(data_dir: Path, pod: Mapping[str, Any], container: str) -> Target:
    cdir = _container_dir(data_dir, pod, container)
    runtime = cdir / "runtime.json"
    if runtime.exists():
        try:
            info = json.loads(runtime.read_text())
            return Target([*info["exec"], str(info["name"])])
        except (OSError, ValueError, KeyError) as e:
            raise ApiError(
                500, "InternalError", f"the kubelet's record of the container is unreadable: {e}"
            ) from None
    return process_target(cdir)


def _tar_paths(argv: list[str], target: Target) -> list[str]:
    """`tar cf - /data/x` (what `kubectl cp` runs) with /data a volume: archive from the volume's host
    directory under the names the client expects (`data/x`), since kubectl checks them."""
    from modelops_local.nodes.containers import rewrite_paths

    mounts = target.mounts or {}
    if len(argv) != 4 or argv[:3] != ["tar", "cf", "-"] or not argv[3].startswith("/"):
        return [rewrite_paths(a, mounts, target.passthrough) for a in argv]
    src = os.path.normpath(argv[3])
    for mount in sorted(mounts, key=len, reverse=True):
        if src == mount or src.startswith(mount.rstrip("/") + "/"):
            host = str(mounts[mount])
            rel = os.path.relpath(src, mount)
            name = mount.strip("/")
            # Archive `<host>/<rel>` relative to the volume, then give members the container's names.
            members = rel if rel != "." else "."
            transform = (
                f"--transform=s|^\\./||S;s|^|{name}/|S" if members == "." else f"--transform=s|^|{name}/|S"
            )
            return ["tar", "cf", "-", "-C", host, transform, members]
    return argv


def exec_argv(target: Target, command: Sequence[str]) -> list[str]:
    argv = list(command)
    if target.env is not None:  # process runtime: the container's paths and PATH
        argv = _tar_paths(argv, target)
        if "/" not in argv[0]:
            argv[0] = shutil.which(argv[0], path=target.env.get("PATH")) or argv[0]
    return [*target.argv_prefix, *argv]


def _pod_and_container(store: Any, ns: str, name: str, container: str | None) -> tuple[dict[str, Any], str]:
    pod = store.get("/pods", ns, name)
    if pod is None:
        raise errors.not_found("", "pods", name)
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    inits = [str(c.get("name")) for c in (pod.get("spec") or {}).get("initContainers") or []]
    if not container:
        container = names[0] if names else ""
    if container not in names and container not in inits:
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise errors.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
    running = any(s.get("name") == container and "running" in (s.get("state") or {}) for s in statuses)
    if not running:
        raise errors.bad_request(f'unable to upgrade connection: container not found ("{container}")')
    return pod, container


def _status(code: int, message: str = "") -> bytes:
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": message or f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    ).encode()


def _require_websocket(request: web.Request, what: str) -> None:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise errors.bad_request(
            f"the modelops local plane serves {what} over WebSockets only (KEP-4006); use kubectl 1.31 or "
            "newer and leave KUBECTL_REMOTE_COMMAND_WEBSOCKETS / KUBECTL_PORT_FORWARD_WEBSOCKETS unset"
        )


async def serve_exec(
    request: web.Request, store: Any, data_dir: Path, ns: str, name: str
) -> web.StreamResponse:
    who = request.get("identity")
    if who is not None and not isinstance(who, str):
        rbac.require(store, who, "create", "pods/exec", ns, name)
    q = request.query
    command = q.getall("command", [])
    if not command:
        raise errors.bad_request("you must specify at least one command for the container")
    _require_websocket(request, "exec")
    pod, container = _pod_and_container(store, ns, name, q.get("container"))
    target = find_target(data_dir, pod, container)
    want_stdin = q.get("stdin") in ("true", "1")
    argv = exec_argv(target, command)
    if target.env is None and want_stdin:  # an engine: `exec -i` keeps the container's stdin open
        argv.insert(argv.index("exec") + 1, "-i")
    ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=64 * 2**20)
    await ws.prepare(request)
    v5 = ws.ws_protocol == "v5.channel.k8s.io"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=target.env,
            cwd=target.cwd,
            start_new_session=True,
        )
    except OSError as e:
        message = f'failed to exec in container: exec: "{command[0]}": {e.strerror or e}'
        await ws.send_bytes(bytes([ERROR]) + _status(126, message))
        await ws.close()
        return ws
    lock = asyncio.Lock()

    async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
        assert stream is not None
        while chunk := await stream.read(32768):
            async with lock:
                await ws.send_bytes(bytes([channel]) + chunk)

    async def feed() -> None:
        async for msg in ws:
            # The official Python client sends text frames unless told `binary=True`.
            data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN and proc.stdin is not None and payload:
                with contextlib.suppress(ConnectionError):
                    proc.stdin.write(payload)
                    await proc.stdin.drain()
            elif v5 and channel == CLOSE and payload[:1] == bytes([STDIN]) and proc.stdin is not None:
                proc.stdin.close()
        # The client went away: the command goes with it, as the kubelet kills the stream's process.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    feeder = asyncio.create_task(feed())
    try:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
        code = await proc.wait()
        code = 128 - code if code < 0 else code
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(bytes([ERROR]) + _status(code))
            await ws.close()
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return ws


class _Forward:
    """One forwarded connection: the error and data streams of one requestID."""

    def __init__(self) -> None:
        self.error: int | None = None
        self.data: int | None = None
        self.port = 0
        self.writer: asyncio.StreamWriter | None = None
        self.pending: list[bytes] = []
        self.client_done = False
        self.task: asyncio.Task[None] | None = None


async def serve_portforward(
    request: web.Request, store: Any, data_dir: Path, ns: str, name: str
) -> web.StreamResponse:
    who = request.get("identity")
    if who is not None and not isinstance(who, str):
        rbac.require(store, who, "create", "pods/portforward", ns, name)
    _require_websocket(request, "port-forward")
    pod = store.get("/pods", ns, name)
    if pod is None:
        raise errors.not_found("", "pods", name)
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        raise errors.bad_request(
            f"unable to forward port because pod is not running. Current status={status.get('phase')}"
        )
    ip = str(status.get("podIP") or "")
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    ports: list[int] = []
    for value in request.query.getall("ports", []):
        for item in value.split(","):
            try:
                ports.append(int(item))
            except ValueError:
                raise errors.bad_request(f"invalid port {item!r} in ports") from None
    ws = web.WebSocketResponse(protocols=PORTFORWARD_PROTOCOLS, max_msg_size=64 * 2**20)
    await ws.prepare(request)
    if ws.ws_protocol != SPDY_PORTFORWARD:
        await _channel_forward(ws, ip, ports, name, uid)
        return ws
    codec = spdy.Codec()
    lock = asyncio.Lock()
    forwards: dict[str, _Forward] = {}
    by_stream: dict[int, _Forward] = {}

    async def send(data: bytes) -> None:
        async with lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(data)

    async def run(fw: _Forward) -> None:
        assert fw.data is not None and fw.error is not None
        try:
            reader, writer = await asyncio.open_connection(ip, fw.port)
        except OSError as e:
            why = "connection refused" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
            message = (
                f"error forwarding port {fw.port} to pod {name}, uid {(pod.get('metadata') or {}).get('uid')}: "
                f"dial tcp4 {ip}:{fw.port}: connect: {why}"
            )
            await send(codec.data(fw.error, message.encode(), fin=True))
            await send(codec.data(fw.data, b"", fin=True))
            return
        fw.writer = writer
        for chunk in fw.pending:
            writer.write(chunk)
        fw.pending.clear()
        if fw.client_done and writer.can_write_eof():
            writer.write_eof()
        try:
            while chunk := await reader.read(65536):
                await send(codec.data(fw.data, chunk))
        except OSError:
            pass
        finally:
            await send(codec.data(fw.data, b"", fin=True))
            await send(codec.data(fw.error, b"", fin=True))
            writer.close()

    def on_frame(frame: spdy.Frame) -> list[bytes]:
        out: list[bytes] = []
        if frame.kind == spdy.SYN_STREAM:
            out.append(codec.syn_reply(frame.stream_id))
            kind = frame.headers.get("streamtype", "")
            request_id = frame.headers.get("requestid") or str(
                frame.stream_id if kind == "error" else frame.stream_id - 2
            )
            fw = forwards.setdefault(request_id, _Forward())
            by_stream[frame.stream_id] = fw
            try:
                fw.port = int(frame.headers.get("port", "0"))
            except ValueError:
                fw.port = 0
            if kind == "error":
                fw.error = frame.stream_id
            elif kind == "data":
                fw.data = frame.stream_id
            if fw.error is not None and fw.data is not None and fw.task is None:
                fw.task = asyncio.create_task(run(fw))
        elif frame.kind == 0:
            fw2 = by_stream.get(frame.stream_id)
            if fw2 is not None and frame.stream_id == fw2.data:
                if frame.data:
                    if fw2.writer is not None:
                        fw2.writer.write(frame.data)
                    else:
                        fw2.pending.append(frame.data)
                if frame.flags & spdy.FLAG_FIN:
                    fw2.client_done = True
                    if fw2.writer is not None and fw2.writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            fw2.writer.write_eof()
        elif frame.kind == spdy.PING:
            out.append(codec.ping(frame.status))
        elif frame.kind == spdy.RST_STREAM:
            fw3 = by_stream.pop(frame.stream_id, None)
            if fw3 is not None and fw3.writer is not None:
                fw3.writer.close()
        return out

    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            try:
                frames = codec.feed(msg.data)
            except spdy.ProtocolError as e:
                log.warning("port-forward to %s/%s: %s", ns, name, e)
                break
            for frame in frames:
                for reply in on_frame(frame):
                    await send(reply)
    finally:
        for fw in forwards.values():
            if fw.task is not None:
                fw.task.cancel()
            if fw.writer is not None:
                fw.writer.close()
    return ws


async def _channel_forward(ws: web.WebSocketResponse, ip: str, ports: list[int], name: str, uid: str) -> None:
    """The kubelet's WebSocket port-forward: per `ports` entry i, channel 2i carries data and 2i+1 errors;
    each channel's first message is the port (uint16, little endian). Ends when every connection has."""
    if not ports:
        await ws.send_bytes(bytes([1]) + b"query parameter ports is required (e.g. ?ports=8080)")
        await ws.close()
        return
    lock = asyncio.Lock()
    writers: dict[int, asyncio.StreamWriter] = {}

    async def send(data: bytes) -> None:
        async with lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(data)

    for i, port in enumerate(ports):
        await send(bytes([2 * i]) + port.to_bytes(2, "little"))
        await send(bytes([2 * i + 1]) + port.to_bytes(2, "little"))

    readers: dict[int, asyncio.StreamReader] = {}
    # Every connection is made before the client's first bytes are read, so none is dropped.
    for i, port in enumerate(ports):
        try:
            readers[i], writers[i] = await asyncio.open_connection(ip, port)
        except OSError as e:
            why = "connection refused" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
            message = f"error forwarding port {port} to pod {name}, uid {uid}: dial tcp4 {ip}:{port}: connect: {why}"
            await send(bytes([2 * i + 1]) + message.encode())

    async def pump(i: int) -> None:
        reader, writer = readers[i], writers[i]
        try:
            while chunk := await reader.read(65536):
                await send(bytes([2 * i]) + chunk)
        except OSError:
            pass
        finally:
            writer.close()

    pumps = [asyncio.create_task(pump(i)) for i in readers]

    async def feed() -> None:
        async for msg in ws:
            data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or not data:
                continue
            channel, payload = data[0], data[1:]
            writer = writers.get(channel // 2)
            if channel % 2 == 0 and writer is not None and payload:
                with contextlib.suppress(ConnectionError):
                    writer.write(payload)
                    await writer.drain()

    async def drained() -> None:
        await asyncio.gather(*pumps)

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.wait([feeder, asyncio.create_task(drained())], return_when=asyncio.FIRST_COMPLETED)
        log.info("port-forward to %s (%s): %s", name, ports, "client left" if feeder.done() else "pod closed")
    finally:
        feeder.cancel()
        for task in pumps:
            task.cancel()
        for writer in writers.values():
            writer.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()
