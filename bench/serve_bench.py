"""Benchmark of `modelops-worker serve` against KServe's Python ModelServer (not a test; results go to
docs/benchmarks.md, section Serving).

    .venv/bin/python bench/serve_bench.py [--duration 3] [--rounds 5] [--concurrency 1,8,32,128] [--json out.json]

One run, one machine, one load generator per protocol for every server:

1. Train the quickstart's digits MLP (2x128) with `modelops-worker train`, or take `--artifact` and
   `--sha256`; export the same network to ONNX (`torch.onnx.export`) for the ONNX Runtime runs.
2. Our server: `modelops-worker serve` with the InferenceService defaults (maxBatchSize 32,
   maxLatencyMs 5, adaptive), REST and gRPC on. KServe: `kserve.ModelServer` (PyPI `kserve`, in its
   own venv `.bench-venv`, created here on first use with the CPU torch pin) with the smallest custom
   `kserve.Model` that serves the same TorchScript file over the same V2 REST API and returns the same
   two outputs; its per-request logging (latency traces, access log) and gRPC are off, so it is
   measured at its best. Every process uses one intra-op thread (OMP_NUM_THREADS=1).
3. REST: `wrk` (C, one thread, HTTP/1.1 keep-alive) posts the same V2 JSON request (one digits
   sample) at each concurrency, after a warm-up, and reports requests/s and the latency percentiles;
   a run whose responses are not all 2xx is marked. gRPC: `h2load` (C, nghttp2; one HTTP/2
   connection per concurrent call, as wrk) sends the same sample as a framed `ModelInferRequest`
   (raw contents) to `inference.GRPCInferenceService/ModelInfer`; its per-request log gives the
   percentiles, and the server's own counter (`protocol="grpc"` by code) says whether every call
   succeeded (gRPC errors travel in HTTP/2 trailers, which h2load does not read).
4. Samples/s when each request carries `--samples` rows (JSON, the binary tensor extension, and
   gRPC raw contents), for TorchScript and for ONNX Runtime, each next to the raw batched forward of
   the same model in this process on one thread (the "served >= 50 % of raw" goal).

Both servers are up for the whole run but only one is loaded at a time; runs alternate between them
(`--rounds` pairs per concurrency, the median run reported, the throughput ratio as the median of the
pairs' ratios), so the load of whatever else shares the machine falls on both alike. The load average
is printed with every table: on a shared machine it says how far to trust the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
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
from functools import partial
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


def export_onnx(art: Path, work: Path) -> tuple[Path, str]:
    """The same network as ONNX (TorchScript-based exporter), for the ONNX Runtime runs."""
    import hashlib

    import torch

    net = torch.jit.load(str(art)).eval()  # type: ignore[no-untyped-call]
    out = work / "digits.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 64),),
        str(out),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    return out, hashlib.sha256(out.read_bytes()).hexdigest()


def _wait_logged(log_file: Path, text: str, count: int, timeout: float = 180) -> None:
    """Until every serving process of a supervised server has said it is ready (readiness is per
    process, and a probe answered by one says nothing of the others)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_file.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"not all {count} processes ready: see {log_file}")


def start_ours(
    art: Path, sha: str, port: int, grpc_port: int, work: Path, fmt: str = "torchscript", **env: str
) -> subprocess.Popen[bytes]:
    cfg = {
        "modelName": MODEL,
        "modelVersion": "1",
        "artifactPath": str(art),
        "sha256": sha,
        "format": fmt,
        "port": port,
        "grpcPort": grpc_port,
    }
    run_env = _env(
        MODELOPS_SERVE_CONFIG=json.dumps(cfg),
        MODELOPS_TERMINATION_LOG=str(work / f"serve-result-{port}"),
        **env,
    )
    return subprocess.Popen(
        [_worker(), "serve", "--host", "127.0.0.1"],
        env=run_env,
        stdout=(work / f"ours-{fmt}-{port}.log").open("wb"),
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
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": total,
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


def v2_binary(x: np.ndarray[Any, Any], output: str = "predicted_class") -> tuple[bytes, int]:
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
            "outputs": [{"name": output, "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + blob, len(head)


def grpc_frame(x: np.ndarray[Any, Any], outputs: tuple[str, ...] = ()) -> bytes:
    """One length-prefixed gRPC message: a ModelInferRequest with `x` as raw contents."""
    from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb

    req = pb.ModelInferRequest(model_name=MODEL, id="bench", raw_input_contents=[x.astype("<f4").tobytes()])
    req.inputs.add(name="input", datatype="FP32", shape=x.shape)
    for name in outputs:
        req.outputs.add(name=name)
    msg = req.SerializeToString()
    return b"\0" + len(msg).to_bytes(4, "big") + msg


def h2load(target: str, work: Path, frame: bytes, concurrency: int, duration: float) -> dict[str, Any]:
    """`h2load` posting one gRPC ModelInfer call per request; rps and the latency percentiles."""
    body = work / "grpc-body.bin"
    body.write_bytes(frame)
    log_file = work / "h2load.log"
    log_file.unlink(missing_ok=True)
    out = subprocess.run(
        [
            "h2load",
            f"-c{concurrency}",
            "-m1",
            "-t1",
            f"-D{max(1, round(duration))}",
            "--warm-up-time=1",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-d",
            str(body),
            "--log-file",
            str(log_file),
            f"http://{target}/inference.GRPCInferenceService/ModelInfer",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"finished in \S+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    m = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    )
    assert m, out
    ms = (
        np.array([int(line.split("\t")[2]) for line in log_file.read_text().splitlines() if line.strip()])
        / 1e3
    )
    return {
        "rps": rps,
        "requests": int(m.group(1)),
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
        "non2xx": int(m.group(3)) + int(m.group(4)),
        "socket_errors": "",
    }


def grpc_codes(base: str) -> dict[str, float]:
    """The server's gRPC calls by code so far (from its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "modelops_serving_requests_total" and smp.labels.get("protocol") == "grpc":
                out[smp.labels["code"]] = out.get(smp.labels["code"], 0.0) + smp.value
    return out


def check_answer(url: str, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
    req = urllib.request.Request(url, data=v2_json(x), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.loads(r.read())
    out = {o["name"]: np.array(o["data"]) for o in body["outputs"]}
    pred = out["predicted_class"] if "predicted_class" in out else out["logits"].reshape(len(x), -1).argmax(1)
    return float((pred == y).mean())


def raw_forward(fmt: str, art: Path, batch: int, seconds: float = 1.0, with_cpu: bool = False) -> Any:
    """Samples/s of the bare forward pass of the same model, in this process, one thread."""
    x = np.random.default_rng(0).standard_normal((batch, 64)).astype(np.float32)
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(art), sess_options=opts, providers=["CPUExecutionProvider"])

        def step() -> None:
            sess.run(None, {"input": x})

    else:
        import torch

        torch.set_num_threads(1)
        net = torch.jit.load(str(art)).eval()  # type: ignore[no-untyped-call]
        xt = torch.from_numpy(x)

        def step() -> None:
            with torch.inference_mode():
                net(xt)

    for _ in range(20):
        step()
    n, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    return (n * batch / wall, n * batch / cpu) if with_cpu else n * batch / wall


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children so far (a supervised server's
    processes are its children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measured(proc: subprocess.Popen[bytes], load: Any) -> dict[str, Any]:
    """A load run, with the server's CPU time per request: on a shared machine that is the steady
    number (wall-clock throughput swings with the neighbours' load, the CPU a request costs does not)."""
    before = cpu_seconds(proc.pid)
    run: dict[str, Any] = load()
    used = cpu_seconds(proc.pid) - before
    run["cpu_ms_per_request"] = 1000 * used / max(1, run["requests"])
    run["load"] = os.getloadavg()[0]
    return run


def _median(runs: list[dict[str, Any]], key: str = "rps") -> dict[str, Any]:
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per load run")
    ap.add_argument("--rounds", type=int, default=5, help="alternating runs per server and concurrency")
    ap.add_argument("--concurrency", default="1,8,32,128")
    ap.add_argument("--samples", type=int, default=256, help="rows per request in the samples/s runs")
    ap.add_argument("--formats", default="torchscript,onnx", help="runtimes of the samples/s runs")
    ap.add_argument("--artifact", type=Path)
    ap.add_argument("--sha256")
    ap.add_argument("--skip-kserve", action="store_true")
    ap.add_argument(
        "--processes", type=int, default=1, help="serving processes of ours (MODELOPS_SERVE_PROCESSES)"
    )
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    for tool, why in (("wrk", "the REST load"), ("h2load", "the gRPC load (Debian nghttp2-client)")):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed ({why}; scripts/bootstrap.sh installs it)")
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    digits = load_digits()
    x_all, y_all = digits.data.astype(np.float32), digits.target
    levels = [int(c) for c in args.concurrency.split(",")]
    formats = args.formats.split(",")
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    started = time.monotonic()
    kserve_py = None if args.skip_kserve else ensure_bench_venv()
    if args.artifact:
        art, sha = args.artifact, args.sha256
    else:
        log("training the digits MLP")
        art, sha = train(work)
    artifacts = {"torchscript": (art, sha)}
    if "onnx" in formats:
        artifacts["onnx"] = export_onnx(art, work)
    results: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "processes": args.processes,
    }
    one = v2_json(x_all[:1])
    one_grpc = grpc_frame(x_all[:1], ("logits", "predicted_class"))
    warm = 1.0

    # Every server up at once (an idle one costs no CPU); runs alternate between them, so a
    # neighbour's load on this shared machine falls on both sides of each pair alike.
    procs: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    grpc_targets: dict[str, str] = {}
    try:
        names = ["modelops"] + ([] if kserve_py is None else ["kserve"])
        names += [f"modelops-{fmt}" for fmt in formats if fmt != "torchscript"]
        for name in names:
            port = _free_port()
            if name == "kserve":
                procs[name] = start_kserve(kserve_py, art, port, work)  # type: ignore[arg-type]
            else:
                fmt = name.removeprefix("modelops-") if name != "modelops" else "torchscript"
                gport = _free_port()
                procs[name] = start_ours(
                    *artifacts[fmt], port, gport, work, fmt, MODELOPS_SERVE_PROCESSES=str(args.processes)
                )
                grpc_targets[name] = f"127.0.0.1:{gport}"
            urls[name] = f"http://127.0.0.1:{port}"
        for name, base in urls.items():
            _wait_ready(base, procs[name])
            if name != "kserve" and args.processes > 1:
                port = int(base.rsplit(":", 1)[1])
                _wait_logged(next(work.glob(f"ours-*-{port}.log")), "ready: POST", args.processes)
            acc = check_answer(f"{base}/v2/models/{MODEL}/infer", x_all[:500], y_all[:500])
            results[name] = {"accuracy": acc, "single_sample": {}, "grpc_single_sample": {}}
            log(f"{name}: ready, accuracy on 500 digits {acc:.3f}")
        pair = [n for n in ("modelops", "kserve") if n in urls]
        for c in levels:
            per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in [*pair, "grpc"]}
            for rnd in range(args.rounds):
                order = [*pair, "grpc"] if rnd % 2 == 0 else ["grpc", *reversed(pair)]
                for name in order:
                    if name == "grpc":
                        target = grpc_targets["modelops"]
                        h2load(target, work, one_grpc, c, warm)
                        run = measured(
                            procs["modelops"], partial(h2load, target, work, one_grpc, c, args.duration)
                        )
                    else:
                        url = f"{urls[name]}/v2/models/{MODEL}/infer"
                        wrk(url, work, one, c, warm)
                        run = measured(procs[name], partial(wrk, url, work, one, c, args.duration))
                    per_round[name].append(run)
                    log(f"{name} c={c} round {rnd + 1}: {run}")
            for name in pair:
                results[name]["single_sample"][c] = {**_median(per_round[name]), "rounds": per_round[name]}
            results["modelops"]["grpc_single_sample"][c] = {
                **_median(per_round["grpc"]),
                "rounds": per_round["grpc"],
            }
            if "kserve" in per_round:
                ratios = [
                    o["rps"] / k["rps"]
                    for o, k in zip(per_round["modelops"], per_round["kserve"], strict=True)
                ]
                results["modelops"]["single_sample"][c]["ratio"] = statistics.median(ratios)
                results["modelops"]["single_sample"][c]["ratios"] = ratios
                p99 = [
                    o["p99_ms"] <= k["p99_ms"]
                    for o, k in zip(per_round["modelops"], per_round["kserve"], strict=True)
                ]
                results["modelops"]["single_sample"][c]["p99_not_worse_pairs"] = sum(p99)
                cpu = [
                    k["cpu_ms_per_request"] / o["cpu_ms_per_request"]
                    for o, k in zip(per_round["modelops"], per_round["kserve"], strict=True)
                ]
                results["modelops"]["single_sample"][c]["cpu_ratio"] = statistics.median(cpu)
                results["modelops"]["single_sample"][c]["cpu_ratios"] = cpu
            for name in [*pair, "grpc"]:
                key = "grpc_single_sample" if name == "grpc" else "single_sample"
                owner = "modelops" if name == "grpc" else name
                results[owner][key][c]["cpu_ms"] = statistics.median(
                    r["cpu_ms_per_request"] for r in per_round[name]
                )

        # Samples per second with `--samples` rows per request, next to the raw forward pass.
        rows = x_all[: args.samples]
        batched: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for fmt in formats:
            name = "modelops" if fmt == "torchscript" else f"modelops-{fmt}"
            url = f"{urls[name]}/v2/models/{MODEL}/infer"
            # The same output from both runtimes (ONNX models have no derived predicted_class).
            binary, head_len = v2_binary(rows, "logits")
            bodies: dict[str, tuple[bytes, int | None, str]] = {
                "json": (v2_json(rows), None, "application/json"),
                "binary": (binary, head_len, "application/octet-stream"),
            }
            frame = grpc_frame(rows, ("logits",))
            served: dict[str, list[dict[str, Any]]] = {"json": [], "binary": [], "grpc": []}
            for rnd in range(args.rounds):
                # The raw forward (this process, one thread) right before each round: each served
                # run is compared with its neighbouring raw measurement, then the median is taken.
                raw_now, raw_cpu = raw_forward(fmt, artifacts[fmt][0], args.samples, with_cpu=True)
                for label in ("json", "binary", "grpc") if rnd % 2 == 0 else ("grpc", "binary", "json"):
                    # 4 in flight x 256 samples stays within the default maxQueueSize (1024).
                    if label == "grpc":
                        h2load(grpc_targets[name], work, frame, 4, warm)
                        r = measured(
                            procs[name], partial(h2load, grpc_targets[name], work, frame, 4, args.duration)
                        )
                    else:
                        body, hl, ctype = bodies[label]
                        wrk(url, work, body, 4, warm, hl, ctype)
                        r = measured(procs[name], partial(wrk, url, work, body, 4, args.duration, hl, ctype))
                    r["samples_per_s"] = r["rps"] * args.samples
                    r["raw_samples_per_s"] = raw_now
                    r["raw_samples_per_cpu_s"] = raw_cpu
                    r["samples_per_cpu_s"] = args.samples * 1000 / r["cpu_ms_per_request"]
                    served[label].append(r)
                    log(
                        f"{name} {args.samples} samples/request ({label}), c=4, round {rnd + 1}: {r}, raw {raw_now:,.0f}"
                    )
            batched[fmt] = served
        results["batched_requests"] = {
            fmt: {
                label: {
                    **_median(runs, "samples_per_s"),
                    "of_raw": statistics.median(r["samples_per_s"] / r["raw_samples_per_s"] for r in runs),
                    "of_raw_cpu": statistics.median(
                        r["samples_per_cpu_s"] / r["raw_samples_per_cpu_s"] for r in runs
                    ),
                    "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in runs),
                    "of_raw_range": [
                        min(r["samples_per_s"] / r["raw_samples_per_s"] for r in runs),
                        max(r["samples_per_s"] / r["raw_samples_per_s"] for r in runs),
                    ],
                    "rounds": runs,
                }
                for label, runs in served.items()
            }
            for fmt, served in batched.items()
        }
        results["grpc_codes"] = {name: grpc_codes(urls[name]) for name in grpc_targets}
        results["raw_forward_samples_per_s"] = {
            fmt: {b: raw_forward(fmt, artifacts[fmt][0], b) for b in (1, 32, args.samples, 1024)}
            for fmt in formats
        }
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


def _loads(runs: list[dict[str, Any]]) -> str:
    loads = [r["load"] for r in runs]
    return f"{min(loads):.1f}-{max(loads):.1f}"


def report(r: dict[str, Any], levels: list[int], samples: int) -> str:
    lines = [
        f"load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f} on {r['cpus']} CPUs; "
        f"{r['seconds']} s in all; modelops with {r['processes']} serving process(es)",
        "",
        "| concurrency | modelops REST req/s | p50 ms | p99 ms | KServe REST req/s | p50 ms | p99 ms | "
        "ratio (median of pairs) [range] | pairs with our p99 <= KServe's | modelops gRPC req/s | p50 ms | p99 ms "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = r["modelops"]["single_sample"]
    theirs = r.get("kserve", {}).get("single_sample", {})
    grpc_ = r["modelops"]["grpc_single_sample"]
    for c in levels:
        o, k, g = ours[c], theirs.get(c), grpc_[c]
        kpart = (
            f"{k['rps']:,.0f}{_flag(k)} | {k['p50_ms']:.2f} | {k['p99_ms']:.2f} | {o['ratio']:.1f}x "
            f"[{min(o['ratios']):.1f}, {max(o['ratios']):.1f}] | {o['p99_not_worse_pairs']}/{len(o['ratios'])}"
            if k
            else "- | - | - | - | -"
        )
        runs = o["rounds"] + g["rounds"] + (k["rounds"] if k else [])
        lines.append(
            f"| {c} | {o['rps']:,.0f}{_flag(o)} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} | {kpart} | "
            f"{g['rps']:,.0f} | {g['p50_ms']:.2f} | {g['p99_ms']:.2f} | {_loads(runs)} |"
        )
    lines += [
        "",
        "Server CPU per request (ms, median of rounds; steady under load, unlike wall-clock rates):",
        "",
        "| concurrency | modelops REST | KServe REST | KServe / modelops (median [range]) | modelops gRPC |",
        "|---|---|---|---|---|",
    ]
    for c in levels:
        o, k, g = ours[c], theirs.get(c), grpc_[c]
        kpart = (
            f"{k['cpu_ms']:.3f} | {o['cpu_ratio']:.1f}x [{min(o['cpu_ratios']):.1f}, {max(o['cpu_ratios']):.1f}]"
            if k
            else "- | -"
        )
        lines.append(f"| {c} | {o['cpu_ms']:.3f} | {kpart} | {g['cpu_ms']:.3f} |")
    lines += ["", f"gRPC calls by code at the servers: {r['grpc_codes']}", ""]
    lines += [
        f"| runtime | encoding | served samples/s ({samples} per request, c=4) | raw forward batch {samples}, "
        "1 thread | of raw, wall (median [range]) | server CPU ms per request | served samples per CPU-s "
        "| of raw per CPU-s (median) | p99 ms | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt, by_label in r["batched_requests"].items():
        for label, run in by_label.items():
            lines.append(
                f"| {fmt} | {label} | {run['samples_per_s']:,.0f}{_flag(run)} | {run['raw_samples_per_s']:,.0f} | "
                f"{run['of_raw']:.0%} [{run['of_raw_range'][0]:.0%}, {run['of_raw_range'][1]:.0%}] | "
                f"{run['cpu_ms_per_request']:.2f} | {samples * 1000 / run['cpu_ms_per_request']:,.0f} | "
                f"{run['of_raw_cpu']:.0%} | {run['p99_ms']:.2f} | {_loads(run['rounds'])} |"
            )
    for fmt, raw in r["raw_forward_samples_per_s"].items():
        lines.append(
            f"raw {fmt} forward, one thread: "
            + ", ".join(f"batch {b}: {v:,.0f} samples/s" for b, v in raw.items())
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
