"""Benchmark of the local API server from one client on this machine (not a test; results go to
docs/benchmarks.md, section "Local API server").

    .venv/bin/python bench/apiserver_bench.py [--objects 10000] [--local-up-runs 5]

Measures creates/s and gets/s over one keep-alive HTTPS connection, the delay from a write to its
watch event (p50/p99), the server's RSS once it holds `--objects` objects, and the time of
`modelops local up` to ready. GETs are measured twice: from this Python client (which costs about as
much CPU per request as the server, on the same 2 cores) and from `wrk` (C; `-t1 -c1` is one
connection with one request at a time, the fair "one client"), skipped with a note when wrk is absent
(`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml


class Client:
    def __init__(self, url: str, token: str, ca: Path) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.context = ssl.create_default_context(cafile=str(ca))
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = self.connect()

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()


def start(directory: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops_local.apiserver", "--dir", str(directory), "--log-level", "WARNING"]
    )
    kubeconfig = directory / "kubeconfig"
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("API server did not start")
        time.sleep(0.05)
    config = yaml.safe_load(kubeconfig.read_text())
    return proc, {
        "url": config["clusters"][0]["cluster"]["server"],
        "token": config["users"][0]["user"]["token"],
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def concurrent(
    info: dict[str, str], ca: Path, method: str, paths: list[str], body: Any, workers: int
) -> float:
    """Requests per second with `workers` requests in flight over keep-alive connections."""
    import aiohttp

    context = ssl.create_default_context(cafile=str(ca))
    headers = {"Authorization": f"Bearer {info['token']}", "Content-Type": "application/json"}
    queue = list(reversed(paths))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=workers)) as session:

        async def worker() -> None:
            while queue:
                path = queue.pop()
                data = None if body is None else json.dumps(body(path))
                async with session.request(method, info["url"] + path, data=data, headers=headers) as resp:
                    await resp.read()
                    assert resp.status in (200, 201), resp.status

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return len(paths) / (time.perf_counter() - t0)


def pipelined_gets(info: dict[str, str], ca: Path, paths: list[str], depth: int = 32) -> float:
    """GETs per second from one connection with up to `depth` requests pipelined (HTTP/1.1), which takes
    the client's own per-request cost (Python, TLS) mostly out of the measurement."""
    import socket

    parsed = urlparse(info["url"])
    raw = socket.create_connection((parsed.hostname, parsed.port))
    sock = ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname=parsed.hostname)
    reader = sock.makefile("rb")
    header = f"Host: {parsed.hostname}\r\nAuthorization: Bearer {info['token']}\r\n\r\n"
    t0 = time.perf_counter()
    for start_at in range(0, len(paths), depth):
        batch = paths[start_at : start_at + depth]
        sock.sendall("".join(f"GET {p} HTTP/1.1\r\n{header}" for p in batch).encode())
        for _ in batch:
            length = 0
            status = reader.readline()
            assert b" 200 " in status, status
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
    elapsed = time.perf_counter() - t0
    sock.close()
    return len(paths) / elapsed


# Each request names the next of the stored ConfigMaps, so no object is read twice in a row.
ROTATE_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("%s/cm-%%06d", counter %% %d))
end
"""


def wrk_gets(
    info: dict[str, str], pid: int, path: str, connections: int, seconds: int, rotate: int = 0
) -> dict[str, float]:
    """GETs per second and latency percentiles from wrk with `connections` connections on one thread:
    of `path` again and again, or with `rotate` of the ConfigMaps `cm-NNNNNN` under `path` in turn."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(ROTATE_LUA % (path, rotate))
        script.flush()
        c0 = cpu_seconds(pid)
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
             "-H", f"Authorization: Bearer {info['token']}", *(["-s", script.name] if rotate else []),
             info["url"] + path],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    cpu = cpu_seconds(pid) - c0
    if "Non-2xx" in out:
        raise SystemExit(f"wrk got errors:\n{out}")

    def latency_ms(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert found, out
        return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]

    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    assert total and rate, out
    return {
        "per_s": float(rate[1]),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "server_cpu_ms": cpu / int(total[1]) * 1000,
    }


def local_up_seconds(runs: int) -> list[float]:
    """Seconds of `modelops local up` (API server, 1 node, controllers, operator) to ready, each run
    from an empty state directory, with `down` after each."""
    modelops = str(Path(sys.executable).parent / "modelops")
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run([modelops, "local", "up", "--dir", tmp], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
            subprocess.run([modelops, "local", "down", "--dir", tmp], check=True, stdout=subprocess.DEVNULL)
    return times


def configmap(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {"bench": "yes", "n": name[-1]}}, "data": {"key": "x" * 64}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--gets", type=int, default=5000)
    parser.add_argument("--watch-writes", type=int, default=500)
    parser.add_argument("--wrk-seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--local-up-runs", type=int, default=5, help="0 to skip `modelops local up`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, info = start(Path(tmp))
        try:
            ca = Path(tmp) / "ca.crt"
            client = Client(info["url"], info["token"], ca)
            base = "/api/v1/namespaces/default/configmaps"
            results: dict[str, float] = {"rss_empty_mb": rss_mb(proc.pid)}

            half = args.objects // 2
            t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
            for i in range(half):
                code, _ = client.call("POST", base, configmap(f"cm-{i:06d}"))
                assert code == 201, code
            results["creates_per_s"] = half / (time.perf_counter() - t0)
            results["server_cpu_ms_per_create"] = (cpu_seconds(proc.pid) - c0) / half * 1000
            pending = iter([f"cm-{i:06d}" for i in range(half, args.objects)])
            results["creates_per_s_8_in_flight"] = asyncio.run(
                concurrent(
                    info, ca, "POST", [base] * (args.objects - half), lambda _p: configmap(next(pending)), 8
                )
            )

            t0, c0 = time.perf_counter(), cpu_seconds(proc.pid)
            for i in range(args.gets):
                code, _ = client.call("GET", f"{base}/cm-{i % args.objects:06d}")
                assert code == 200
            results["gets_per_s"] = args.gets / (time.perf_counter() - t0)
            results["server_cpu_ms_per_get"] = (cpu_seconds(proc.pid) - c0) / args.gets * 1000
            paths = [f"{base}/cm-{i % args.objects:06d}" for i in range(args.gets)]
            results["gets_per_s_8_in_flight"] = asyncio.run(concurrent(info, ca, "GET", paths, None, 8))
            results["gets_per_s_pipelined"] = pipelined_gets(info, ca, paths)
            if shutil.which("wrk"):
                for connections in (1, 4, 16):
                    measured = wrk_gets(info, proc.pid, f"{base}/cm-000007", connections, args.wrk_seconds)
                    for key, value in measured.items():
                        results[f"wrk_c{connections}_gets_{key}"] = value
                measured = wrk_gets(info, proc.pid, base, 1, args.wrk_seconds, rotate=args.objects)
                for key, value in measured.items():
                    results[f"wrk_c1_all_objects_gets_{key}"] = value
            else:
                print("wrk not found: skipping the wrk GET runs (apt-get install wrk)")

            t0 = time.perf_counter()
            code, body = client.call("GET", f"{base}?labelSelector=bench%3Dyes")
            results["list_all_ms"] = (time.perf_counter() - t0) * 1000
            assert code == 200 and len(json.loads(body)["items"]) == args.objects

            # Watch delay: time from sending a write to receiving its event on an open watch.
            sent: dict[str, float] = {}
            delays: list[float] = []
            ready = threading.Event()
            watcher = Client(info["url"], info["token"], Path(tmp) / "ca.crt")
            rv = json.loads(client.call("GET", f"{base}?limit=1")[1])["metadata"]["resourceVersion"]

            def watch() -> None:
                watcher.conn.request("GET", f"{base}?watch=1&resourceVersion={rv}&labelSelector=w%3Dyes",
                                     headers=watcher.headers)  # fmt: skip
                resp = watcher.conn.getresponse()
                ready.set()
                while len(delays) < args.watch_writes:
                    line = resp.readline()
                    if not line:
                        return
                    name = json.loads(line)["object"]["metadata"]["name"]
                    delays.append(time.perf_counter() - sent[name])

            thread = threading.Thread(target=watch, daemon=True)
            thread.start()
            ready.wait(10)
            for i in range(args.watch_writes):
                name = f"w-{i:06d}"
                sent[name] = time.perf_counter()
                client.call("POST", base, {"metadata": {"name": name, "labels": {"w": "yes"}}})
                time.sleep(0.002)
            thread.join(30)
            delays.sort()
            results["watch_p50_ms"] = statistics.median(delays) * 1000
            results["watch_p99_ms"] = delays[int(len(delays) * 0.99) - 1] * 1000
            results["rss_mb"] = rss_mb(proc.pid)
            results["objects"] = args.objects + args.watch_writes
        finally:
            proc.terminate()
            proc.wait(10)
    if args.local_up_runs:
        times = local_up_seconds(args.local_up_runs)
        results["local_up_median_s"] = statistics.median(times)
        results["local_up_min_s"], results["local_up_max_s"] = min(times), max(times)
    for key, value in results.items():
        print(f"{key:32s} {value:10.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
