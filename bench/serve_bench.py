"""Benchmark of `modelops-worker serve` against KServe's Python ModelServer (not a test; results go to
docs/benchmarks.md, section Serving).

    .venv/bin/python bench/serve_bench.py [--duration 3] [--rounds 5] [--concurrency 1,8,32,128] [--json out.json]

One run, one machine, one load generator for both servers:

1. Train the quickstart's digits MLP (2x128) with `modelops-worker train`, or take `--artifact` and
   `--sha256`.
2. Our server: `modelops-worker serve` with the InferenceService defaults (maxBatchSize 32,
   maxLatencyMs 5, adaptive). KServe: `kserve.ModelServer` (PyPI `kserve`, in its own venv
   `.bench-venv`, created here on first use with the CPU torch pin) with the smallest custom
   `kserve.Model` that serves the same TorchScript file over the same V2 REST API and returns the same
   two outputs; its per-request logging (latency traces, access log) and gRPC are off, so it is
   measured at its best. Both use one intra-op thread (OMP_NUM_THREADS=1).
3. `wrk` (C, one thread, HTTP/1.1 keep-alive) posts the same V2 JSON request (one digits sample) at
   each concurrency, after a warm-up, and reports requests/s and the latency percentiles; a run whose
   responses are not all 2xx is marked.
4. Raw batched forward throughput of the same TorchScript model on one thread, in this process, and
   the samples/s our server serves when each request carries `--samples` rows (JSON, and the binary
   tensor extension), for the "served >= 50% of raw" goal.

Both servers are up for the whole run but only one is loaded at a time; runs alternate between them
(`--rounds` pairs per concurrency, the median run reported, the throughput ratio as the median of the
pairs' ratios), so the load of whatever else shares the machine falls on both alike. The load average
is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".bench-venv"
TORCH_PIN = "torch==2.13.0"
MODEL = "digits"

KSERVE_SERVER = r'''
"""The smallest KServe custom model that serves the artifact over V2, as its docs show."""
import logging
import sys

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

torch.set_num_threads(1)


class Digits(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.net = torch.jit.load(self.path).eval()
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32).reshape(-1, 64)
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(x)).numpy()
        out_logits = InferOutput("logits", list(logits.shape), "FP32")
        out_logits.set_data_from_numpy(logits, binary_data=False)
        pred = logits.argmax(axis=1).astype(np.int64)
        out_class = InferOutput("predicted_class", list(pred.shape), "INT64")
        out_class.set_data_from_numpy(pred, binary_data=False)
        return InferResponse(
            response_id=payload.id, model_name=self.name, infer_outputs=[out_logits, out_class]
        )


if __name__ == "__main__":
    server = ModelServer(enable_grpc=False, enable_latency_logging=False)
    # KServe logs three lines per request by default (two timing traces and the access log); a
    # benchmark of its serving path should not be a benchmark of its logging.
    for noisy in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server.start([Digits(sys.argv[1], sys.argv[2])])
'''

WRK_LUA = r"""
wrk.method = "POST"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local hl = os.getenv("BENCH_HEADER_LENGTH")
if hl and hl ~= "" then wrk.headers["Inference-Header-Content-Length"] = hl end
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_bench_venv() -> Path:
    """`.bench-venv` with kserve and the CPU torch pin; created on first use (a few minutes)."""
    py = BENCH_VENV / "bin" / "python"
    if (
        py.exists()
        and subprocess.run([str(py), "-c", "import kserve, torch"], capture_output=True).returncode == 0
    ):
        return py
    log(f"creating {BENCH_VENV} with kserve and {TORCH_PIN} (first run only)")
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "kserve", TORCH_PIN], check=True)
    return py


def train(work: Path) -> tuple[Path, str]:
    cfg = {
        "job": {"name": MODEL, "namespace": "bench", "uid": "bench"},
        "model": {"architecture": "mlp", "hiddenSize": 128, "layers": 2, "dropout": 0.1},
        "dataset": {"builtin": "digits"},
        "hyperparameters": {"epochs": 10, "batchSize": 64, "learningRate": 0.003, "seed": 7},
        "checkpoint": {"intervalSeconds": 3600, "keep": 1},
        "output": {"modelName": MODEL},
    }
    env = _env(
        MODELOPS_RUN_CONFIG=json.dumps(cfg),
        MODELOPS_CHECKPOINT_DIR=str(work / "ckpt"),
        MODELOPS_OUTPUT_DIR=str(work / "out"),
        MODELOPS_DATA_DIR=str(work / "data"),
        MODELOPS_TERMINATION_LOG=str(work / "train-result"),
        MODELOPS_METRICS_PORT="0",
    )
    subprocess.run([_worker(), "train"], env=env, check=True, capture_output=True)
    result = json.loads((work / "train-result").read_text())
    return work / "out" / result["artifact"]["path"], result["artifact"]["sha256"]


def _worker() -> str:
    return str(Path(sys.executable).with_name("modelops-worker"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} not ready after {timeout}s")


def start_ours(art: Path, sha: str, port: int, work: Path) -> subprocess.Popen[bytes]:
    cfg = {"modelName": MODEL, "modelVersion": "1", "artifactPath": str(art), "sha256": sha, "port": port}
    env = _env(MODELOPS_SERVE_CONFIG=json.dumps(cfg), MODELOPS_TERMINATION_LOG=str(work / "serve-result"))
    return subprocess.Popen(
        [_worker(), "serve", "--host", "127.0.0.1"],
        env=env,
        stdout=(work / "ours.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def start_kserve(py: Path, art: Path, port: int, work: Path) -> subprocess.Popen[bytes]:
    script = work / "kserve_server.py"
    script.write_text(KSERVE_SERVER)
    return subprocess.Popen(
        [str(py), str(script), MODEL, str(art), "--http_port", str(port)],
        env=_env(),
        stdout=(work / "kserve.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=work,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str,
    work: Path,
    body: bytes,
    concurrency: int,
    duration: float,
    header_length: int | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    lua = work / "post.lua"
    lua.write_text(WRK_LUA)
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    env = dict(
        os.environ,
        BENCH_BODY=str(body_file),
        BENCH_CONTENT_TYPE=content_type,
        BENCH_HEADER_LENGTH=str(header_length or ""),
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(pct["50"]),
        "p99_ms": _ms(pct["99"]),
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def v2_json(x: np.ndarray[Any, Any]) -> bytes:
    return json.dumps(
        {
            "id": "bench",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.reshape(-1).tolist(),
                }
            ],
        }
    ).encode()


def v2_binary(x: np.ndarray[Any, Any]) -> tuple[bytes, int]:
    blob = x.astype("<f4").tobytes()
    head = json.dumps(
        {
            "id": "bench",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [{"name": "predicted_class", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + blob, len(head)


def check_answer(url: str, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    req = urllib.request.Request(url, data=v2_json(x), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.loads(r.read())
    out = {o["name"]: o for o in body["outputs"]}
    return float((np.array(out["predicted_class"]["data"]) == y).mean())


def raw_forward(art: Path, batches: list[int], seconds: float = 2.0) -> dict[int, float]:
    import torch

    torch.set_num_threads(1)
    net = torch.jit.load(str(art)).eval()  # type: ignore[no-untyped-call]
    out: dict[int, float] = {}
    for bs in batches:
        x = torch.randn(bs, 64)
        with torch.inference_mode():
            for _ in range(20):
                net(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                net(x)
                n += 1
            out[bs] = n * bs / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=5, help="alternating runs per server and concurrency")
    ap.add_argument("--concurrency", default="1,8,32,128")
    ap.add_argument("--samples", type=int, default=256, help="rows per request in the samples/s runs")
    ap.add_argument("--artifact", type=Path)
    ap.add_argument("--sha256")
    ap.add_argument("--skip-kserve", action="store_true")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (scripts/bootstrap.sh installs it)")
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    digits = load_digits()
    x_all, y_all = digits.data.astype(np.float32), digits.target
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    started = time.monotonic()
    kserve_py = None if args.skip_kserve else ensure_bench_venv()
    if args.artifact:
        art, sha = args.artifact, args.sha256
    else:
        log("training the digits MLP")
        art, sha = train(work)
    results: dict[str, Any] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    one = v2_json(x_all[:1])
    warm = 1.0

    # Both servers up at once (an idle one costs no CPU); runs alternate between them, so a
    # neighbour's load on this shared machine falls on both sides of each pair alike.
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    try:
        for name in ["modelops"] + ([] if kserve_py is None else ["kserve"]):
            port = _free_port()
            procs[name] = (
                start_ours(art, sha, port, work)
                if name == "modelops"
                else start_kserve(kserve_py, art, port, work)  # type: ignore[arg-type]
            )
            urls[name] = f"http://127.0.0.1:{port}"
        for name, base in urls.items():
            _wait_ready(base, procs[name])
            acc = check_answer(f"{base}/v2/models/{MODEL}/infer", x_all[:500], y_all[:500])
            results[name] = {"accuracy": acc, "single_sample": {}}
            log(f"{name}: ready, accuracy on 500 digits {acc:.3f}")
        for c in levels:
            per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
            for rnd in range(args.rounds):
                order = list(urls) if rnd % 2 == 0 else list(reversed(urls))
                for name in order:
                    url = f"{urls[name]}/v2/models/{MODEL}/infer"
                    wrk(url, work, one, c, warm)
                    run = wrk(url, work, one, c, args.duration)
                    per_round[name].append(run)
                    log(f"{name} c={c} round {rnd + 1}: {run}")
            for name, runs in per_round.items():
                best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]  # the median run
                results[name]["single_sample"][c] = {**best, "rounds": runs}
            if "kserve" in per_round:
                ratios = [
                    o["rps"] / k["rps"]
                    for o, k in zip(per_round["modelops"], per_round["kserve"], strict=True)
                ]
                results["modelops"]["single_sample"][c]["ratio"] = statistics.median(ratios)

        url = f"{urls['modelops']}/v2/models/{MODEL}/infer"
        rows = x_all[: args.samples]
        binary, head_len = v2_binary(rows)
        bodies = {
            "json": (v2_json(rows), None, "application/json"),
            "binary": (binary, head_len, "application/octet-stream"),
        }
        served: dict[str, list[dict[str, Any]]] = {"json": [], "binary": []}
        for rnd in range(args.rounds):
            # Raw forward (this process, one thread) right before each pair of served runs: the
            # ratio of each run to its neighbouring raw measurement, then the median.
            raw_now = raw_forward(art, [args.samples], 1.0)[args.samples]
            for label, (body, hl, ctype) in bodies.items():
                # 4 in flight x 256 samples stays within the default maxQueueSize (1024).
                wrk(url, work, body, 4, warm, hl, ctype)
                r = wrk(url, work, body, 4, args.duration, hl, ctype)
                r["samples_per_s"] = r["rps"] * args.samples
                r["raw_samples_per_s"] = raw_now
                served[label].append(r)
                log(
                    f"modelops {args.samples} samples/request ({label}), c=4, round {rnd + 1}: {r}, raw {raw_now:,.0f}"
                )
        results["modelops"]["batched_requests"] = {
            label: {
                **sorted(runs, key=lambda r: r["samples_per_s"])[len(runs) // 2],
                "of_raw": statistics.median(r["samples_per_s"] / r["raw_samples_per_s"] for r in runs),
                "rounds": runs,
            }
            for label, runs in served.items()
        }
        results["raw_forward_samples_per_s"] = raw_forward(art, [1, 32, args.samples, 1024], 1.0)
    finally:
        for proc in procs.values():
            stop(proc)
    results["load_after"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    print(report(results, levels, args.samples))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def _flag(run: dict[str, Any]) -> str:
    return " (errors)" if run["non2xx"] or run["socket_errors"] else ""


def report(r: dict[str, Any], levels: list[int], samples: int) -> str:
    lines = [
        f"load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f} on {r['cpus']} CPUs; "
        f"{r['seconds']} s in all",
        "",
        "| concurrency | modelops req/s | p50 ms | p99 ms | KServe req/s | p50 ms | p99 ms | throughput ratio (median of pairs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = r["modelops"]["single_sample"]
    theirs = r.get("kserve", {}).get("single_sample", {})
    for c in levels:
        o = ours[c]
        k = theirs.get(c)
        kpart = (
            f"{k['rps']:.0f}{_flag(k)} | {k['p50_ms']:.2f} | {k['p99_ms']:.2f} | {o['ratio']:.2f}x"
            if k
            else "- | - | - | -"
        )
        lines.append(f"| {c} | {o['rps']:.0f}{_flag(o)} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} | {kpart} |")
    raw = r["raw_forward_samples_per_s"]
    lines += [
        "",
        "raw TorchScript forward, one thread: "
        + ", ".join(f"batch {b}: {v:,.0f} samples/s" for b, v in raw.items()),
    ]
    for label, run in r["modelops"].get("batched_requests", {}).items():
        lines.append(
            f"served, {samples} samples per request ({label}), c=4: {run['samples_per_s']:,.0f} samples/s, "
            f"{run['of_raw']:.0%} of raw batch-{samples} forward (median of the rounds' ratios), "
            f"p99 {run['p99_ms']:.2f} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
