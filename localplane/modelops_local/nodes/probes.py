"""Liveness, readiness and startup probes (httpGet, tcpSocket, exec) against a local pod.

A probe reaches the pod on its own IP, as the kubelet does on a cluster; the pod's servers bind it
through the injected sitecustomize (or bind all addresses, which includes it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import aiohttp

Obj = dict[str, Any]


def probe_port(port: Any, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"probe port {port!r} names no port of container {container.get('name')!r}")


async def run_probe(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    pod_ip: str,
    env: Mapping[str, str],
    cwd: str,
    session: aiohttp.ClientSession,
    prefix: list[str] | None = None,
) -> tuple[bool, str]:
    """(success, failure message in the kubelet's words).

    `prefix` is what execs a command in the container (its user, groups and cgroup; see pods.py).
    """
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            http = probe["httpGet"] or {}
            port = probe_port(http.get("port"), container)
            scheme = str(http.get("scheme") or "HTTP").lower()
            host = http.get("host") or pod_ip
            path = str(http.get("path") or "/")
            url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"
            headers = {str(h.get("name")): str(h.get("value")) for h in http.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.33")
            async with session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                ssl=False,
                allow_redirects=False,
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {resp.status}"
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"] or {}
            port = probe_port(tcp.get("port"), container)
            host = tcp.get("host") or pod_ip
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        if "exec" in probe:
            command = [str(c) for c in (probe["exec"] or {}).get("command") or []]
            proc = await asyncio.create_subprocess_exec(
                *(prefix or []),
                *command,
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                return False, f"command timed out after {timeout:g}s"
            if proc.returncode == 0:
                return True, ""
            text = out.decode("utf-8", "replace").strip()[-1024:]
            return False, f"command {command!r} exited with {proc.returncode}: {text}"
        if "grpc" in probe:
            return False, "gRPC probes are not supported by the local plane; use httpGet, tcpSocket or exec"
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, aiohttp.ClientError, ValueError) as e:
        return False, str(e) or type(e).__name__
    return True, ""
