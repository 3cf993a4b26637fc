"""`modelops-worker serve` as a real process on a real port, serving a digits MLP the worker trained.

What a client of an InferenceService notices: right predictions, the protocol's shapes and errors, a
server that survives bad requests, batching under concurrency, a full queue refused with 503, bearer
tokens, int8 quantization, an artifact with the wrong digest never served, and SIGTERM draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import requests
import torch  # noqa: F401
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[2]
DIGITS = load_digits()
X = DIGITS.data.astype(np.float32)
Y = DIGITS.target
# A 5-epoch 2x64 MLP is far above 0.9 on digits (chance is 0.1).
ACCURACY = 0.9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "MODELOPS_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Artifact:
    path: Path
    sha256: str


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """A digits MLP trained and exported by `modelops-worker train` itself."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = {
        "job": {"name": "digits", "namespace": "default", "uid": "u-1"},
        "model": {"architecture": "mlp", "hiddenSize": 64, "layers": 2, "dropout": 0.1},
        "dataset": {"builtin": "digits"},
        "hyperparameters": {"epochs": 5, "batchSize": 64, "learningRate": 0.003, "seed": 7},
        "checkpoint": {"intervalSeconds": 3600, "keep": 1},
        "output": {"modelName": "digits"},
    }
    env = clean_env(
        MODELOPS_RUN_CONFIG=json.dumps(cfg),
        MODELOPS_CHECKPOINT_DIR=str(tmp / "ckpt"),
        MODELOPS_OUTPUT_DIR=str(tmp / "out"),
        MODELOPS_DATA_DIR=str(tmp / "data"),
        MODELOPS_TERMINATION_LOG=str(tmp / "termination-log"),
        MODELOPS_METRICS_PORT="0",
    )
    script = Path(sys.executable).with_name("modelops-worker")
    proc = subprocess.run([str(script), "train"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp / "termination-log").read_text())
    return Artifact(tmp / "out" / result["artifact"]["path"], result["artifact"]["sha256"])


class Server:
    """A `modelops-worker serve` process."""

    def __init__(self, tmp: Path, art: Artifact, env: dict[str, str] | None = None, **cfg: Any) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.termination_log = tmp / "serve-termination-log"
        self.log = tmp / "serve.log"
        serve_cfg = {
            "modelName": "digits",
            "modelVersion": "3",
            "artifactPath": str(art.path),
            "sha256": art.sha256,
            "port": self.port,
            "grpcPort": None,  # REST only here; tests/worker/test_grpc.py covers gRPC
            **cfg,
        }
        run_env = clean_env(
            MODELOPS_SERVE_CONFIG=json.dumps(serve_cfg),
            MODELOPS_TERMINATION_LOG=str(self.termination_log),
            **(env or {}),
        )
        script = Path(sys.executable).with_name("modelops-worker")
        self.proc = subprocess.Popen(
            [str(script), "serve", "--host", "127.0.0.1"],
            env=run_env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}: {self.log.read_text()}"
            try:
                if requests.get(self.url("/v2/health/ready"), timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()}")

    def infer(self, body: Any, path: str = "/v2/models/digits/infer", **kw: Any) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(self.url(path), data=data, timeout=60, **kw)

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        text = requests.get(self.url("/metrics"), timeout=10).text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture
def start(tmp_path: Path, artifact: Artifact) -> Iterator[Any]:
    servers: list[Server] = []

    def _start(ready: bool = True, art: Artifact | None = None, **kw: Any) -> Server:
        s = Server(tmp_path, art or artifact, **kw)
        servers.append(s)
        if ready:
            s.wait_ready()
        return s

    yield _start
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifact: Artifact) -> Iterator[Server]:
    """One server for the tests that only send requests."""
    s = Server(tmp_path_factory.mktemp("serve"), artifact)
    s.wait_ready()
    yield s
    assert s.stop() == 0


def v2(data: Any, shape: list[int], datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}], **extra}


def counter(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in metrics.get(name, []) if labels.items() <= lab.items())


# --- predictions and the protocol's shapes ---------------------------------------------------------


def test_predicts_known_digits_and_echoes_the_request_id(server: Server) -> None:
    r = server.infer(v2(X[:200].reshape(-1).tolist(), [200, 64], id="req-42"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "digits" and body["model_version"] == "3" and body["id"] == "req-42"
    out = {o["name"]: o for o in body["outputs"]}
    assert set(out) == {"logits", "predicted_class"}
    assert out["logits"]["shape"] == [200, 10] and out["logits"]["datatype"] == "FP32"
    assert out["predicted_class"]["shape"] == [200] and out["predicted_class"]["datatype"] == "INT64"
    pred = np.array(out["predicted_class"]["data"])
    assert (pred == Y[:200]).mean() > ACCURACY
    logits = np.array(out["logits"]["data"]).reshape(200, 10)
    assert (logits.argmax(1) == pred).all()


@pytest.mark.parametrize(
    ("datatype", "encode"),
    [
        ("FP64", lambda x: x.astype(np.float64).tolist()),  # nested as the shape says
        ("INT32", lambda x: x.astype(np.int32).reshape(-1).tolist()),  # digits' pixels are integers
        ("UINT8", lambda x: x.astype(np.uint8).tolist()),
    ],
)
def test_other_datatypes_and_nested_data_give_the_same_predictions(server: Server, datatype, encode) -> None:
    r = server.infer(v2(encode(X[:50]), [50, 64], datatype, outputs=[{"name": "predicted_class"}]))
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert [o["name"] for o in outputs] == ["predicted_class"]  # only what was asked for
    assert (np.array(outputs[0]["data"]) == Y[:50]).mean() > ACCURACY


def test_versioned_path_single_sample_and_probabilities(server: Server) -> None:
    r = server.infer(
        v2(X[7].tolist(), [64], outputs=[{"name": "probabilities"}]),
        path="/v2/models/digits/versions/3/infer",
    )
    assert r.status_code == 200, r.text
    (probs,) = r.json()["outputs"]
    assert probs["shape"] == [1, 10] and abs(sum(probs["data"]) - 1) < 1e-4
    assert int(np.argmax(probs["data"])) == Y[7]
    assert "id" in r.json()  # generated when the request has none


def test_health_and_metadata_endpoints(server: Server) -> None:
    assert requests.get(server.url("/v2/health/live")).json() == {"live": True}
    assert requests.get(server.url("/v2/health/ready")).json() == {"ready": True}
    meta = requests.get(server.url("/v2")).json()
    assert meta["name"] == "modelops" and "binary_tensor_data" in meta["extensions"]
    for path in ("/v2/models/digits", "/v2/models/digits/versions/3"):
        m = requests.get(server.url(path)).json()
        assert m["name"] == "digits" and m["versions"] == ["3"] and m["platform"] == "pytorch_torchscript"
        assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
        assert {o["name"] for o in m["outputs"]} == {"logits", "probabilities", "predicted_class"}
    for path in ("/v2/models/digits/ready", "/v2/models/digits/versions/3/ready"):
        r = requests.get(server.url(path))
        assert r.status_code == 200 and r.json() == {"name": "digits", "ready": True}
    assert requests.get(server.url("/v2/models/other/ready")).status_code == 404
    assert requests.get(server.url("/v2/models/digits/versions/9")).status_code == 404


BAD_REQUESTS = [
    ("malformed JSON", b'{"inputs": [', 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 400, "JSON object"),
    ("no inputs", {"id": "x"}, 400, "inputs is missing"),
    (
        "two inputs",
        {"inputs": [{**v2([0] * 64, [1, 64])["inputs"][0], "name": n} for n in ("a", "b")]},
        400,
        "exactly one",
    ),
    ("one input twice", {"inputs": [v2([0] * 64, [1, 64])["inputs"][0]] * 2}, 400, "given twice"),
    (
        "missing shape",
        {"inputs": [{"name": "x", "datatype": "FP32", "data": [0] * 64}]},
        400,
        "shape is missing",
    ),
    (
        "missing data",
        {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32"}]},
        400,
        "data is missing",
    ),
    ("wrong shape", v2([0] * 63, [1, 63]), 400, "takes [n, 64]"),
    ("shape and data disagree", v2([0] * 64, [2, 64]), 400, "needs 128"),
    ("wrong datatype", v2([0] * 64, [1, 64], "BYTES"), 400, "datatype 'BYTES'"),
    ("unknown datatype", v2([0] * 64, [1, 64], "FLOAT"), 400, "not a protocol datatype"),
    ("fractions as INT64", v2([0.5] * 64, [1, 64], "INT64"), 400, "fractional"),
    ("strings as data", v2(["a"] * 64, [1, 64]), 400, "needs numbers"),
    ("ragged data", v2([[0] * 64, [0] * 3], [2, 64]), 400, "ragged"),
    ("negative size", v2([0] * 64, [-1, 64]), 400, "non-negative"),
    ("unknown output", v2([0] * 64, [1, 64], outputs=[{"name": "scores"}]), 400, "not an output"),
    ("id not a string", v2([0] * 64, [1, 64], id=7), 400, "id must be a string"),
]


@pytest.mark.parametrize(("what", "body", "code", "says"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_400_naming_the_problem(server: Server, what, body, code, says) -> None:
    r = server.infer(body)
    assert r.status_code == code, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert says in r.json()["error"], r.json()


def test_unknown_model_version_and_endpoint_get_404_and_oversized_body_413(server: Server) -> None:
    ok = v2([0] * 64, [1, 64])
    r = server.infer(ok, path="/v2/models/mnist/infer")
    assert r.status_code == 404 and "'mnist' is not served here" in r.json()["error"]
    r = server.infer(ok, path="/v2/models/digits/versions/4/infer")
    assert r.status_code == 404 and "version 3 here" in r.json()["error"]
    r = requests.get(server.url("/v2/nothing"))
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]
    r = requests.get(server.url("/v2/models/digits/infer"))
    assert r.status_code == 405 and "GET is not allowed" in r.json()["error"]
    big = b'{"inputs": [' + b" " * (8 * 1024 * 1024) + b"]}"  # over the default maxBodyBytes (8 MiB)
    r = server.infer(big)
    assert r.status_code == 413 and "maxBodyBytes" in r.json()["error"]


def test_after_every_bad_request_the_server_still_answers_and_counts_them(server: Server) -> None:
    for _, body, _, _ in BAD_REQUESTS:
        server.infer(body)
    r = server.infer(v2(X[:5].tolist(), [5, 64]))
    assert r.status_code == 200
    assert requests.get(server.url("/v2/health/ready")).status_code == 200
    m = server.metrics()
    assert counter(m, "modelops_serving_requests_total", code="400", model="digits", version="3") >= len(
        BAD_REQUESTS
    )
    assert counter(m, "modelops_serving_requests_total", code="200") >= 1
    assert counter(m, "modelops_serving_request_duration_seconds_count", code="200") >= 1
    info = m["modelops_serving_model_info"][0][0]
    assert info["format"] == "torchscript" and info["quantization"] == "none" and len(info["sha256"]) == 64


# --- batching, queue, concurrency ------------------------------------------------------------------


async def _concurrent(
    base: str, bodies: list[bytes], headers: dict[str, str] | None = None
) -> list[tuple[int, Any]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(body: bytes) -> tuple[int, Any]:
            async with http.post(base + "/v2/models/digits/infer", data=body, headers=headers) as r:
                return r.status, await r.json()

        return await asyncio.gather(*(one(b) for b in bodies))


def test_concurrent_requests_are_coalesced_into_batches(start) -> None:
    # Each forward pass is slowed down (fault injection), so requests pile up while one runs.
    s = start(env={"MODELOPS_SERVE_FAULT_FORWARD_DELAY": "0.05"}, batching={"maxBatchSize": 16})
    bodies = [json.dumps(v2(X[i].tolist(), [1, 64], id=str(i))).encode() for i in range(64)]
    results = asyncio.run(_concurrent(s.base, bodies))
    assert all(code == 200 for code, _ in results), results[:3]
    for i, (_, body) in enumerate(results):
        assert body["id"] == str(i)  # each answer belongs to its own request
    pred = np.array([body["outputs"][1]["data"][0] for _, body in results])
    assert (pred == Y[:64]).mean() > ACCURACY
    m = s.metrics()
    passes = counter(m, "modelops_serving_batch_size_count")
    assert counter(m, "modelops_serving_batch_size_sum") == 64
    assert passes < 64 / 2, f"64 concurrent requests took {passes} forward passes: no batching"
    # No pass is larger than maxBatchSize.
    assert counter(m, "modelops_serving_batch_size_bucket", le="16.0") == passes


def test_a_full_queue_answers_503_and_the_server_recovers(start) -> None:
    s = start(
        env={"MODELOPS_SERVE_FAULT_FORWARD_DELAY": "0.2"}, batching={"maxBatchSize": 1, "maxQueueSize": 4}
    )
    bodies = [json.dumps(v2(X[i].tolist(), [1, 64])).encode() for i in range(24)]
    results = asyncio.run(_concurrent(s.base, bodies))
    codes = [c for c, _ in results]
    assert codes.count(503) > 0 and codes.count(200) >= 4, codes
    refusal = next(b for c, b in results if c == 503)
    assert "maxQueueSize" in refusal["error"] and "retry" in refusal["error"]
    assert s.infer(v2(X[0].tolist(), [1, 64])).status_code == 200
    r = s.infer(v2(X[:5].reshape(-1).tolist(), [5, 64]))
    assert r.status_code == 413 and "maxQueueSize" in r.json()["error"]
    assert counter(s.metrics(), "modelops_serving_requests_total", code="503") == codes.count(503)


# --- artifact verification ------------------------------------------------------------------------


def _exit_and_reason(s: Server) -> tuple[int, dict[str, Any]]:
    code = s.proc.wait(timeout=120)
    return code, json.loads(s.termination_log.read_text())


def test_an_artifact_with_another_digest_is_never_served(start, artifact: Artifact) -> None:
    s = start(ready=False, art=Artifact(artifact.path, "0" * 64))
    seen_ready = False
    while s.proc.poll() is None:
        with contextlib.suppress(requests.RequestException):  # refused, reset or slow on a busy machine
            seen_ready |= requests.get(s.url("/v2/health/ready"), timeout=5).status_code == 200
        time.sleep(0.05)
    code, result = _exit_and_reason(s)
    assert code == 65 and not seen_ready
    assert result["reason"] == "ArtifactDigestMismatch" and result["exitCode"] == 65
    assert artifact.sha256 in result["message"] and "refusing" in result["message"]


def test_a_missing_artifact_and_a_bad_config_exit_with_their_reasons(start, tmp_path: Path, artifact) -> None:
    s = start(ready=False, art=Artifact(tmp_path / "gone.pt", artifact.sha256))
    code, result = _exit_and_reason(s)
    assert code == 65 and result["reason"] == "ArtifactNotFound" and "gone.pt" in result["message"]
    s = start(ready=False, quantization="int4")
    code, result = _exit_and_reason(s)
    assert code == 64 and result["reason"] == "InvalidServeConfig" and "quantization" in result["message"]
    s = start(ready=False, authTokensFile=str(tmp_path / "no-tokens"))
    code, result = _exit_and_reason(s)
    assert code == 64 and "authTokensFile" in result["message"]


# --- auth, quantization, shutdown -------------------------------------------------------------------


def test_bearer_tokens_guard_inference_but_not_health_or_metrics(start, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-one\n\ns3cret-two\n")
    s = start(authTokensFile=str(tokens))
    body = v2(X[0].tolist(), [1, 64])
    r = s.infer(body)
    assert r.status_code == 401 and "bearer token" in r.json()["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert s.infer(body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert s.infer(body, headers={"Authorization": "Basic s3cret-one"}).status_code == 401
    assert s.infer(body, headers={"Authorization": "Bearer s3cret-two"}).status_code == 200
    assert requests.get(s.url("/v2/models/digits")).status_code == 401
    assert requests.get(s.url("/v2/health/ready")).status_code == 200
    assert requests.get(s.url("/metrics")).status_code == 200
    # A rotated Secret reaches the pod as a new file; the server picks it up without a restart.
    tokens.write_text("s3cret-three\n")
    os.utime(tokens, (time.time() + 5, time.time() + 5))
    deadline = time.monotonic() + 30
    while s.infer(body, headers={"Authorization": "Bearer s3cret-three"}).status_code != 200:
        assert time.monotonic() < deadline, "the rotated token was never accepted"
        time.sleep(0.2)
    assert s.infer(body, headers={"Authorization": "Bearer s3cret-one"}).status_code == 401
    assert counter(s.metrics(), "modelops_serving_requests_total", code="401") >= 4
    assert s.stop() == 0
    assert "s3cret" not in s.log.read_text()


def test_int8_quantized_model_answers_like_the_float_one(start, server: Server) -> None:
    s = start(quantization="int8")
    body = v2(X[:300].reshape(-1).tolist(), [300, 64], outputs=[{"name": "predicted_class"}])
    q = np.array(s.infer(body).json()["outputs"][0]["data"])
    f = np.array(server.infer(body).json()["outputs"][0]["data"])
    assert (q == Y[:300]).mean() > ACCURACY
    assert (q == f).mean() > 0.95  # int8 weights move few decisions
    info = s.metrics()["modelops_serving_model_info"][0][0]
    assert info["quantization"] == "int8"


def test_sigterm_answers_every_request_in_flight_then_exits_0(start) -> None:
    s = start(env={"MODELOPS_SERVE_FAULT_FORWARD_DELAY": "1.0"}, batching={"maxBatchSize": 4})

    async def scenario() -> tuple[list[tuple[int, Any]], int, bool]:
        bodies = [json.dumps(v2(X[i].tolist(), [1, 64])).encode() for i in range(8)]
        flight = asyncio.ensure_future(_concurrent(s.base, bodies))
        async with aiohttp.ClientSession() as http:
            while True:  # until all 8 are in the server
                async with http.get(s.base + "/metrics") as r:
                    text = await r.text()
                if 'modelops_serving_inflight_requests{model="digits",version="3"} 8.0' in text:
                    break
                await asyncio.sleep(0.02)
        s.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        ready_code = 0
        async with aiohttp.ClientSession() as http:
            try:
                async with http.get(s.base + "/v2/health/ready") as r:
                    ready_code = r.status
            except aiohttp.ClientConnectionError:
                ready_code = -1  # the listener is closed: no new connection is accepted
        results = await flight
        return results, ready_code, s.proc.poll() is None

    results, ready_code, alive_while_draining = asyncio.run(scenario())
    assert [c for c, _ in results] == [200] * 8
    assert ready_code in (503, -1)
    assert alive_while_draining
    assert s.proc.wait(timeout=60) == 0
    assert "drained" in s.log.read_text()


# --- the wire format of the protocol's spec and of KServe's client, recorded ---------------------------


def test_the_protocol_specs_example_shape_works(server: Server) -> None:
    # The Open Inference Protocol's REST example (request parameters, an outputs selection with
    # parameters, UINT32 data), with this model's input size.
    spec_example = {
        "id": "42",
        "parameters": {"sequence_id": 1},
        "inputs": [
            {
                "name": "input0",
                "shape": [1, 64],
                "datatype": "UINT32",
                "data": DIGITS.data[3].astype(int).tolist(),
            }
        ],
        "outputs": [{"name": "predicted_class", "parameters": {"classification": 0}}],
    }
    r = server.infer(spec_example)
    assert r.status_code == 200, r.text
    same_as_fp32 = server.infer(v2(X[3].tolist(), [1, 64])).json()["outputs"][1]["data"]
    assert r.json() == {
        "model_name": "digits",
        "model_version": "3",
        "id": "42",
        "outputs": [{"name": "predicted_class", "shape": [1], "datatype": "INT64", "data": same_as_fp32}],
    }


def test_kserve_clients_recorded_requests_work(server: Server) -> None:
    # What kserve 0.21.0's `InferRequest("digits", [InferInput("input-0", [2, 64], "FP32")],
    # request_id="k-7").to_rest()` sends, with set_data_from_numpy(x, binary_data=False / True).
    x = X[:2]
    as_json = {
        "id": "k-7",
        "model_name": "digits",
        "inputs": [{"name": "input-0", "shape": [2, 64], "datatype": "FP32", "data": x.reshape(-1).tolist()}],
    }
    r = server.infer(as_json, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert protocol_header(r) is None and r.json()["id"] == "k-7"
    head = (
        b'{"id":"k-7","model_name":"digits","inputs":[{"name":"input-0","shape":[2,64],"datatype":"FP32",'
        b'"parameters":{"binary_data_size":512}}]}'
    )
    assert len(head) == 135
    r = server.infer(
        head + x.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": "135", "content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["predicted_class"]["data"] == Y[:2].tolist()
    assert len(out["logits"]["data"]) == 20


def test_binary_outputs_come_back_after_the_json_header(server: Server) -> None:
    body = v2(X[:3].reshape(-1).tolist(), [3, 64], parameters={"binary_data_output": True})
    r = server.infer(body)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
    head_len = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(r.content[:head_len])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert [o["name"] for o in head["outputs"]] == ["logits", "predicted_class"] and sizes == [120, 24]
    classes = np.frombuffer(r.content[head_len + 120 :], dtype="<i8")
    assert (
        classes.tolist()
        == np.frombuffer(r.content[head_len : head_len + 120], "<f4").reshape(3, 10).argmax(1).tolist()
    )


def protocol_header(r: requests.Response) -> str | None:
    return r.headers.get("Inference-Header-Content-Length")


# --- a KServe client, unchanged ------------------------------------------------------------------------

KSERVE_CLIENT = """
import asyncio, sys, numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

async def main(base, npy):
    x = np.load(npy)
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    assert await client.is_server_live(base) and await client.is_server_ready(base)
    assert await client.is_model_ready(base, "digits")
    for binary in (False, True):
        inp = InferInput(name="input-0", shape=list(x.shape), datatype="FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        res = await client.infer(base, InferRequest("digits", infer_inputs=[inp], request_id="k-1"), "digits")
        assert res.id == "k-1" and res.model_name == "digits", res
        out = {o.name: o.as_numpy() for o in res.outputs}
        print("binary" if binary else "json", ",".join(map(str, out["predicted_class"].tolist())))
    await client.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_kserve_v2_rest_client_works_unchanged(server: Server, tmp_path: Path) -> None:
    from side_venv import side_python  # builds .venv-side (kserve from PyPI) on first use; never skips

    np.save(tmp_path / "x.npy", X[:20])
    out = subprocess.run(
        [str(side_python()), "-c", KSERVE_CLIENT, server.base, str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    for mode in ("json", "binary"):
        pred = np.array([int(v) for v in lines[mode].split(",")])
        assert (pred == Y[:20]).mean() > ACCURACY
