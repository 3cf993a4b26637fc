"""`modelops-worker serve` over gRPC (OIP v2, `inference.GRPCInferenceService`), as a real process.

The clients are real: grpcio's generated stub from this repository for the cheap cases, and KServe's
`InferenceGRPCClient` and Triton's `tritonclient.grpc` from PyPI, unchanged, in a side venv
(`side_venv.py`; built by the first test that needs it, a failure to build fails the tests). What a
gRPC user notices: the health and metadata calls, right predictions from typed and raw tensors, the
status codes of their mistakes (UNAUTHENTICATED before NOT_FOUND, INVALID_ARGUMENT naming the field),
the same metrics as REST with client mistakes never counted as server errors, and a drain on SIGTERM
that finishes the calls in flight.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import torch
from prometheus_client.parser import text_string_to_metric_families
from side_venv import side_python
from sklearn.datasets import load_digits

from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb
from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc

DIGITS = load_digits()
X = DIGITS.data.astype(np.float32)
Y = DIGITS.target
ACCURACY = 0.9  # a 5-epoch 2x64 MLP is far above this on digits (chance is 0.1)
TOKEN = "s3cret-token"
SC = grpc.StatusCode


# The same trained digits model and process helpers as the REST tests: gRPC serves what REST serves.
import test_serve  # noqa: E402
from test_serve import Artifact, clean_env, free_port  # noqa: E402

artifact = test_serve.artifact  # the module-scoped fixture, trained once per module


class Server:
    """A `modelops-worker serve` process with REST and gRPC ports, optionally behind a bearer token."""

    def __init__(self, tmp: Path, art: Artifact, env: dict[str, str] | None = None, **cfg: Any) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        self.log = tmp / f"serve-{self.grpc_port}.log"
        self.termination_log = tmp / f"termination-{self.grpc_port}"
        serve_cfg = {
            "modelName": "digits",
            "modelVersion": "3",
            "artifactPath": str(art.path),
            "sha256": art.sha256,
            "port": self.port,
            "grpcPort": self.grpc_port,
            **cfg,
        }
        script = Path(sys.executable).with_name("modelops-worker")
        self.proc = subprocess.Popen(
            [str(script), "serve", "--host", "127.0.0.1"],
            env=clean_env(
                MODELOPS_SERVE_CONFIG=json.dumps(serve_cfg),
                MODELOPS_TERMINATION_LOG=str(self.termination_log),
                **(env or {}),
            ),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}: {self.log.read_text()}"
            try:
                if self.stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()}")

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        text = requests.get(self.base + "/metrics", timeout=10).text
        return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]

    def count(self, name: str, **labels: str) -> float:
        return sum(v for n, lab, v in self.metrics() if n == name and labels.items() <= lab.items())

    def stop(self) -> int:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifact: Artifact) -> Iterator[Server]:
    """One server behind a bearer token for the tests that only send requests."""
    tmp = tmp_path_factory.mktemp("grpc")
    (tmp / "tokens").write_text(f"{TOKEN}\n")
    s = Server(tmp, artifact, authTokensFile=str(tmp / "tokens"))
    s.wait_ready()
    yield s
    assert s.stop() == 0, s.log.read_text()


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def infer_request(x: np.ndarray[Any, Any], raw: bool, **kw: Any) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="digits", **kw)
    t = req.inputs.add(name="input-0", datatype="FP32", shape=x.shape)
    if raw:
        req.raw_input_contents.append(x.astype("<f4").tobytes())
    else:
        t.contents.fp32_contents.extend(x.reshape(-1).tolist())
    return req


def status_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


# --- grpcio's own client ---------------------------------------------------------------------------


def test_health_and_metadata(server: Server) -> None:
    stub = server.stub
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="digits"), metadata=AUTH).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="digits", version="3"), metadata=AUTH).ready
    code, msg = status_of(lambda: stub.ModelReady(pb.ModelReadyRequest(name="nope"), metadata=AUTH))
    assert code == SC.NOT_FOUND and "'digits'" in msg
    meta = stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=AUTH)
    assert meta.name == "modelops" and meta.version
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name="digits"), metadata=AUTH)
    assert model.name == "digits" and list(model.versions) == ["3"]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("input", "FP32", [-1, 64])]
    assert {t.name: t.datatype for t in model.outputs}["predicted_class"] == "INT64"
    # The metadata REST serves says the same.
    rest = requests.get(
        server.base + "/v2/models/digits", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert [i["shape"] for i in rest["inputs"]] == [list(t.shape) for t in model.inputs]


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_infer_predicts_known_digits(server: Server, raw: bool) -> None:
    x = X[:50]
    resp = server.stub.ModelInfer(infer_request(x, raw, id="req-7"), metadata=AUTH)
    assert (resp.model_name, resp.model_version, resp.id) == ("digits", "3", "req-7")
    names = [o.name for o in resp.outputs]
    assert names == ["logits", "predicted_class"]
    cls = resp.outputs[1]
    assert (cls.datatype, list(cls.shape)) == ("INT64", [50])
    if raw:  # a raw request gets raw outputs, in the order of `outputs`
        assert len(resp.raw_output_contents) == 2
        pred = np.frombuffer(resp.raw_output_contents[1], "<i8")
        logits = np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(50, 10)
    else:
        assert not resp.raw_output_contents
        pred = np.array(cls.contents.int64_contents)
        logits = np.array(resp.outputs[0].contents.fp32_contents).reshape(50, 10)
    assert (pred == Y[:50]).mean() > ACCURACY
    assert (logits.argmax(1) == pred).all()


def test_requested_outputs_and_other_datatypes(server: Server) -> None:
    req = pb.ModelInferRequest(model_name="digits", model_version="3")
    t = req.inputs.add(name="input-0", datatype="INT32", shape=[4, 8, 8])  # digits as 8x8 images
    t.contents.int_contents.extend(X[:4].astype(np.int32).reshape(-1).tolist())
    req.outputs.add(name="probabilities")
    resp = server.stub.ModelInfer(req, metadata=AUTH)
    assert [o.name for o in resp.outputs] == ["probabilities"]
    p = np.array(resp.outputs[0].contents.fp32_contents).reshape(4, 10)
    assert np.allclose(p.sum(1), 1, atol=1e-5) and (p.argmax(1) == Y[:4]).all()
    # FP64 raw, one sample without the batch dimension.
    req = pb.ModelInferRequest(model_name="digits", raw_input_contents=[X[7].astype("<f8").tobytes()])
    req.inputs.add(name="input-0", datatype="FP64", shape=[64])
    resp = server.stub.ModelInfer(req, metadata=AUTH)
    assert np.frombuffer(resp.raw_output_contents[1], "<i8").tolist() == [Y[7]]


def _bad(**kw: Any) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="digits", **kw)


BAD_REQUESTS = {
    "BYTES datatype": (
        lambda: _with(
            pb.ModelInferRequest(model_name="digits"), "BYTES", [1, 64], bytes_contents=[b"x"] * 64
        ),
        "datatype 'BYTES'",
    ),
    "unknown datatype": (
        lambda: _with(pb.ModelInferRequest(model_name="digits"), "FLOAT", [1, 64], fp32_contents=[0.0] * 64),
        "not an OIP datatype",
    ),
    "wrong feature count": (
        lambda: _with(pb.ModelInferRequest(model_name="digits"), "FP32", [2, 10], fp32_contents=[0.0] * 20),
        "[n, 64]",
    ),
    "contents fewer than the shape": (
        lambda: _with(pb.ModelInferRequest(model_name="digits"), "FP32", [2, 64], fp32_contents=[0.0] * 64),
        "needs 128",
    ),
    "contents in the wrong field": (
        lambda: _with(pb.ModelInferRequest(model_name="digits"), "FP32", [1, 64], int_contents=[0] * 64),
        "fp32_contents",
    ),
    "raw bytes of the wrong size": (
        lambda: _raw(np.zeros((1, 60), "<f4").tobytes(), "FP32", [1, 64]),
        "needs 256",
    ),
    "no inputs": (lambda: pb.ModelInferRequest(model_name="digits"), "inputs is empty"),
    "unknown output": (
        lambda: _outputs(_raw(X[:1].tobytes(), "FP32", [1, 64]), "embedding"),
        "'embedding' is not an output",
    ),
    "NaN input": (lambda: _raw(np.full((1, 64), np.nan, "<f4").tobytes(), "FP32", [1, 64]), "NaN"),
}


def _with(req: pb.ModelInferRequest, dt: str, shape: list[int], **contents: Any) -> pb.ModelInferRequest:
    req.inputs.add(name="input-0", datatype=dt, shape=shape, contents=pb.InferTensorContents(**contents))
    return req


def _raw(blob: bytes, dt: str, shape: list[int]) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="digits", raw_input_contents=[blob])
    req.inputs.add(name="input-0", datatype=dt, shape=shape)
    return req


def _outputs(req: pb.ModelInferRequest, name: str) -> pb.ModelInferRequest:
    req.outputs.add(name=name)
    return req


@pytest.mark.parametrize("what", list(BAD_REQUESTS))
def test_a_bad_tensor_gets_invalid_argument_naming_the_problem(server: Server, what: str) -> None:
    make, says = BAD_REQUESTS[what]
    code, msg = status_of(lambda: server.stub.ModelInfer(make(), metadata=AUTH))
    assert code == SC.INVALID_ARGUMENT, (code, msg)
    assert says in msg, msg


def test_auth_is_checked_before_the_model_name(server: Server) -> None:
    stub = server.stub
    req = infer_request(X[:1], raw=True)
    for metadata, says in [
        ((), "needs a bearer token"),
        ((("authorization", "Bearer wrong"),), "not accepted"),
    ]:
        code, msg = status_of(lambda md=metadata: stub.ModelInfer(req, metadata=md))
        assert code == SC.UNAUTHENTICATED and says in msg
        # Without a token an unknown model is not revealed as such.
        other = infer_request(X[:1], raw=True)
        other.model_name = "secret-model"
        code, _ = status_of(lambda md=metadata, o=other: stub.ModelInfer(o, metadata=md))
        assert code == SC.UNAUTHENTICATED
        code, _ = status_of(
            lambda md=metadata: stub.ModelMetadata(pb.ModelMetadataRequest(name="x"), metadata=md)
        )
        assert code == SC.UNAUTHENTICATED
    # Health stays open, as REST's does: probes carry no token.
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    other = infer_request(X[:1], raw=True)
    other.model_name = "resnet"
    code, msg = status_of(lambda: stub.ModelInfer(other, metadata=AUTH))
    assert code == SC.NOT_FOUND and "'digits'" in msg
    req.model_version = "2"
    code, msg = status_of(lambda: stub.ModelInfer(req, metadata=AUTH))
    assert code == SC.NOT_FOUND and "version 3" in msg


def test_a_message_over_max_body_bytes_is_refused(tmp_path: Path, artifact: Artifact) -> None:
    s = Server(tmp_path, artifact, maxBodyBytes=64 * 1024)
    try:
        s.wait_ready()
        big = np.zeros((300, 64), np.float32)  # 76.8 kB raw
        code, _ = status_of(lambda: s.stub.ModelInfer(infer_request(big, raw=True)))
        assert code == SC.RESOURCE_EXHAUSTED
        ok = s.stub.ModelInfer(infer_request(X[:200], raw=True))  # 51.2 kB fits
        assert len(np.frombuffer(ok.raw_output_contents[1], "<i8")) == 200
    finally:
        assert s.stop() == 0


def test_grpc_requests_are_counted_like_rest_and_client_mistakes_are_not_5xx(
    tmp_path: Path, artifact: Artifact
) -> None:
    (tmp_path / "tokens").write_text(TOKEN)
    s = Server(tmp_path, artifact, authTokensFile=str(tmp_path / "tokens"))
    try:
        s.wait_ready()
        req = infer_request(X[:3], raw=True)
        for _ in range(3):
            s.stub.ModelInfer(req, metadata=AUTH)
        status_of(lambda: s.stub.ModelInfer(req))  # 401
        status_of(lambda: s.stub.ModelInfer(_bad(), metadata=AUTH))  # 400
        other = infer_request(X[:1], raw=True)
        other.model_name = "nope"
        status_of(lambda: s.stub.ModelInfer(other, metadata=AUTH))  # 404
        # A call the client gives up on (its deadline passes while the forward pass is slow) is not
        # the server's error either: it shows as 499 or, when the server was too slow, 504.
        requests.post(
            s.base + "/v2/models/digits/infer",
            json={"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X[0].tolist()}]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ).raise_for_status()
        name = "modelops_serving_requests_total"
        assert s.count(name, protocol="grpc", code="200") == 3
        assert s.count(name, protocol="grpc", code="401") == 1
        assert s.count(name, protocol="grpc", code="400") == 1
        assert s.count(name, protocol="grpc", code="404") == 1
        assert s.count(name, protocol="rest", code="200") == 1
        five = sum(v for n, lab, v in s.metrics() if n == name and lab.get("code", "").startswith("5"))
        assert five == 0
        lat = s.count("modelops_serving_request_duration_seconds_count", protocol="grpc")
        assert lat == 6
    finally:
        assert s.stop() == 0


def test_a_cancelled_call_counts_as_499(tmp_path: Path, artifact: Artifact) -> None:
    s = Server(tmp_path, artifact, env={"MODELOPS_SERVE_FAULT_FORWARD_DELAY": "1.0"})
    try:
        s.wait_ready()
        code, _ = status_of(lambda: s.stub.ModelInfer(infer_request(X[:1], raw=True), timeout=0.3))
        assert code == SC.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not s.count("modelops_serving_requests_total", protocol="grpc"):
            time.sleep(0.1)
        by_code = {
            lab["code"]: v
            for n, lab, v in s.metrics()
            if n == "modelops_serving_requests_total" and lab.get("protocol") == "grpc" and v
        }
        # The server sees the call cancelled when the client's deadline passes.
        assert by_code == {"499": 1}, by_code
    finally:
        assert s.stop() == 0


def test_sigterm_finishes_grpc_calls_in_flight_then_refuses_new_ones(
    tmp_path: Path, artifact: Artifact
) -> None:
    s = Server(tmp_path, artifact, env={"MODELOPS_SERVE_FAULT_FORWARD_DELAY": "1.5"}, drainSeconds=20)
    s.wait_ready()
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(s.stub.ModelInfer(infer_request(X[:2], raw=True), timeout=30))
        except grpc.RpcError as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the calls are in the server, waiting on the slow forward pass
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    late = grpc.insecure_channel(s.target)
    code, _ = status_of(
        lambda: pb_grpc.GRPCInferenceServiceStub(late).ModelInfer(infer_request(X[:1], raw=True), timeout=5)
    )
    late.close()
    assert code == SC.UNAVAILABLE
    for t in threads:
        t.join(30)
    assert s.proc.wait(timeout=60) == 0, s.log.read_text()
    assert len(results) == 3
    for r in results:
        assert isinstance(r, pb.ModelInferResponse), r
        assert np.frombuffer(r.raw_output_contents[1], "<i8").tolist() == Y[:2].tolist()


def test_grpc_port_in_use_fails_with_the_reason(tmp_path: Path, artifact: Artifact) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = Server(tmp_path, artifact, grpcPort=port)
        code = s.proc.wait(timeout=120)
    assert code == 64, s.log.read_text()
    result = json.loads(s.termination_log.read_text())
    assert result["reason"] == "InvalidServeConfig" and "grpcPort" in result["message"]


def test_grpc_port_null_serves_rest_only(tmp_path: Path, artifact: Artifact) -> None:
    s = Server(tmp_path, artifact, grpcPort=None)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(s.base + "/v2/health/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        code, _ = status_of(lambda: s.stub.ServerLive(pb.ServerLiveRequest(), timeout=2))
        assert code == SC.UNAVAILABLE
    finally:
        assert s.stop() == 0


# --- KServe's and Triton's clients, unchanged --------------------------------------------------------

KSERVE_CLIENT = r"""
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.errors import InvalidInput
import grpc

target, npy, token = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.load(npy)
auth = (("authorization", f"Bearer {token}"),)

async def code_of(coro):
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    except Exception as exc:
        return type(exc).__name__ + ":" + str(exc)
    return "OK"

async def main():
    out = {}
    client = InferenceGRPCClient(target, timeout=30)
    out["live"] = await client.is_server_live()
    out["ready"] = await client.is_server_ready()
    out["model_ready"] = await client.is_model_ready("digits", headers=auth)
    # The client has no metadata call; KServe's own generated stub does.
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc
    async with grpc.aio.insecure_channel(target) as channel:
        meta = await pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
            pb.ModelMetadataRequest(name="digits"), metadata=auth
        )
    out["inputs"] = [[i.name, i.datatype, list(i.shape)] for i in meta.inputs]
    for raw in (False, True):
        inp = InferInput(name="input-0", shape=list(x.shape), datatype="FP32")
        inp.set_data_from_numpy(x, binary_data=raw)
        req = InferRequest(model_name="digits", infer_inputs=[inp], request_id="k-1", from_grpc=False)
        res = await client.infer(req, headers=auth)
        outs = {o.name: o.as_numpy() for o in res.outputs}
        out["raw" if raw else "typed"] = {"id": res.id, "pred": outs["predicted_class"].tolist()}
    inp = InferInput(name="input-0", shape=list(x.shape), datatype="FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    out["no_token"] = await code_of(client.infer(InferRequest(model_name="digits", infer_inputs=[inp]), headers=()))
    out["unknown_model"] = await code_of(client.infer(InferRequest(model_name="nope", infer_inputs=[inp]), headers=auth))
    bad = InferInput(name="input-0", shape=[1, 10], datatype="FP32")
    bad.set_data_from_numpy(np.zeros((1, 10), np.float32), binary_data=True)
    out["bad_shape"] = await code_of(client.infer(InferRequest(model_name="digits", infer_inputs=[bad]), headers=auth))
    await client.close()
    print(json.dumps(out))

asyncio.run(main())
"""

TRITON_CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

target, npy, token = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.load(npy)
auth = {"authorization": f"Bearer {token}"}
client = grpcclient.InferenceServerClient(url=target)
out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("digits", headers=auth),
}
meta = client.get_model_metadata("digits", headers=auth, as_json=True)
out["inputs"] = [[i["name"], i["datatype"], [int(d) for d in i["shape"]]] for i in meta["inputs"]]
out["server"] = client.get_server_metadata(headers=auth).name

def infer(model="digits", data=x, headers=auth, outputs=None, dt="FP32"):
    inp = grpcclient.InferInput("input-0", list(data.shape), dt)
    inp.set_data_from_numpy(data)
    outs = [grpcclient.InferRequestedOutput(n) for n in outputs] if outputs else None
    return client.infer(model, [inp], request_id="t-1", headers=headers, outputs=outs)

res = infer()
out["infer"] = {"id": res.get_response().id, "pred": res.as_numpy("predicted_class").tolist()}
res = infer(outputs=["probabilities"])
out["probabilities_shape"] = list(res.as_numpy("probabilities").shape)
res = infer(data=x.astype(np.float16), dt="FP16")
out["fp16_pred"] = res.as_numpy("predicted_class").tolist()

def status(**kw):
    try:
        infer(**kw)
    except InferenceServerException as exc:
        return exc.status()
    return "OK"

out["no_token"] = status(headers={})
out["wrong_token"] = status(headers={"authorization": "Bearer nope"})
out["unknown_model"] = status(model="nope")
out["bad_datatype"] = status(data=x.astype(np.bool_), dt="BOOL")
out["bad_shape"] = status(data=np.zeros((2, 3), np.float32))
client.close()
print(json.dumps(out))
"""


def run_side(script: str, server: Server, tmp_path: Path) -> dict[str, Any]:
    py = side_python()
    np.save(tmp_path / "x.npy", X[:20])
    out = subprocess.run(
        [str(py), "-c", script, server.target, str(tmp_path / "x.npy"), TOKEN],
        capture_output=True,
        text=True,
        timeout=180,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_kserve_grpc_client_works_unchanged(server: Server, tmp_path: Path) -> None:
    before = server.count("modelops_serving_requests_total", protocol="grpc", code="200")
    out = run_side(KSERVE_CLIENT, server, tmp_path)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["inputs"] == [["input", "FP32", [-1, 64]]]
    for mode in ("typed", "raw"):
        assert out[mode]["id"] == "k-1"
        assert (np.array(out[mode]["pred"]) == Y[:20]).mean() > ACCURACY
    assert out["no_token"] == "UNAUTHENTICATED"
    assert out["unknown_model"] == "NOT_FOUND"
    assert out["bad_shape"] == "INVALID_ARGUMENT"
    assert server.count("modelops_serving_requests_total", protocol="grpc", code="200") == before + 2


def test_triton_grpc_client_works_unchanged(server: Server, tmp_path: Path) -> None:
    out = run_side(TRITON_CLIENT, server, tmp_path)
    assert out["live"] and out["ready"] and out["model_ready"]
    assert out["server"] == "modelops"
    assert out["inputs"] == [["input", "FP32", [-1, 64]]]
    assert out["infer"]["id"] == "t-1"
    assert (np.array(out["infer"]["pred"]) == Y[:20]).mean() > ACCURACY
    assert out["probabilities_shape"] == [20, 10]
    assert (np.array(out["fp16_pred"]) == Y[:20]).mean() > ACCURACY
    assert out["no_token"] == out["wrong_token"] == "StatusCode.UNAUTHENTICATED"
    assert out["unknown_model"] == "StatusCode.NOT_FOUND"
    assert out["bad_datatype"] == out["bad_shape"] == "StatusCode.INVALID_ARGUMENT"


# --- several serving processes sharing the ports (supervisor.py) ---------------------------------


def _wait_for_log(s: Server, text: str, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert s.proc.poll() is None, s.log.read_text()
        if s.log.read_text().count(text) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count}x {text!r} not logged in {timeout}s: {s.log.read_text()}")


def test_several_processes_share_both_ports_and_one_set_of_metrics(
    tmp_path: Path, artifact: Artifact
) -> None:
    s = Server(tmp_path, artifact, env={"MODELOPS_SERVE_PROCESSES": "2"})
    try:
        _wait_for_log(s, "ready: POST", 2)
        children = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
        assert len(children) == 2
        for i in range(12):  # a new connection each time: the kernel spreads them over the processes
            with requests.Session() as http:
                r = http.post(
                    s.base + "/v2/models/digits/infer",
                    json={
                        "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X[i].tolist()}]
                    },
                    timeout=30,
                )
            assert r.status_code == 200, r.text
            channel = grpc.insecure_channel(s.target)
            resp = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(X[i : i + 1], raw=True))
            channel.close()
            rest = {o["name"]: o["data"] for o in r.json()["outputs"]}
            assert np.frombuffer(resp.raw_output_contents[1], "<i8").tolist() == rest["predicted_class"]
        # Every scrape, whichever process answers it, shows the whole pod's counts.
        for _ in range(6):
            with requests.Session() as http:
                text = http.get(s.base + "/metrics", timeout=10).text
            got = {
                smp.labels["protocol"]: smp.value
                for fam in text_string_to_metric_families(text)
                for smp in fam.samples
                if smp.name == "modelops_serving_requests_total" and smp.labels.get("code") == "200"
            }
            assert got == {"rest": 12, "grpc": 12}, got
    finally:
        assert s.stop() == 0, s.log.read_text()


def test_several_processes_exit_with_the_reason_a_bad_artifact_gives(
    tmp_path: Path, artifact: Artifact
) -> None:
    wrong = Artifact(artifact.path, "0" * 64)
    s = Server(tmp_path, wrong, env={"MODELOPS_SERVE_PROCESSES": "2"})
    assert s.proc.wait(timeout=180) == 65, s.log.read_text()
    assert json.loads(s.termination_log.read_text())["reason"] == "ArtifactDigestMismatch"


# --- a model with two inputs of different datatypes ----------------------------------------------

MULTI_CLIENTS = r"""
import json, sys
import numpy as np

which, target, npz = sys.argv[1], sys.argv[2], sys.argv[3]
data = dict(np.load(npz))
dts = {"features": "FP32", "tokens": "INT64"}
if which == "triton":
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url=target)
    meta = client.get_model_metadata("pair", as_json=True)
    inputs = []
    for name, arr in data.items():
        inp = grpcclient.InferInput(name, list(arr.shape), dts[name])
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    res = client.infer("pair", inputs)
    out = {n: res.as_numpy(n).tolist() for n in ("score", "count")}
else:
    import asyncio
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def main():
        client = InferenceGRPCClient(target, timeout=30)
        inputs = []
        for name, arr in data.items():
            inp = InferInput(name=name, shape=list(arr.shape), datatype=dts[name])
            inp.set_data_from_numpy(arr, binary_data=False)  # typed contents
            inputs.append(inp)
        res = await client.infer(InferRequest(model_name="pair", infer_inputs=inputs))
        await client.close()
        return {o.name: o.as_numpy().tolist() for o in res.outputs}

    out = asyncio.run(main())
    meta = {"inputs": []}
print(json.dumps({"meta": [[i["name"], i["datatype"]] for i in meta["inputs"]], "out": out}))
"""


def test_a_two_input_model_over_grpc_with_every_client(tmp_path: Path) -> None:
    import hashlib
    import io

    from test_serve_signatures import TwoInputs

    torch.manual_seed(0)
    net = TwoInputs().eval()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buf)
    art = Artifact(tmp_path / "pair.pt", hashlib.sha256(buf.getvalue()).hexdigest())
    art.path.write_bytes(buf.getvalue())
    signature = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "tokens", "datatype": "INT64", "shape": [-1, 3]},
        ],
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "count", "datatype": "INT64", "shape": [-1]},
        ],
    }
    rng = np.random.default_rng(3)
    data = {
        "features": rng.normal(size=(5, 4)).astype(np.float32),
        "tokens": rng.integers(0, 10, size=(5, 3)).astype(np.int64),
    }
    with torch.no_grad():
        want = {k: v.numpy() for k, v in net(*(torch.from_numpy(a) for a in data.values())).items()}
    s = Server(tmp_path, art, modelName="pair", signature=signature)
    try:
        s.wait_ready()
        meta = s.stub.ModelMetadata(pb.ModelMetadataRequest(name="pair"))
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("features", "FP32", [-1, 4]),
            ("tokens", "INT64", [-1, 3]),
        ]
        for raw in (False, True):
            req = pb.ModelInferRequest(model_name="pair")
            for name, dt in (("tokens", "INT64"), ("features", "FP32")):  # any order: matched by name
                t = req.inputs.add(name=name, datatype=dt, shape=data[name].shape)
                if raw:
                    req.raw_input_contents.append(data[name].tobytes())
                elif dt == "FP32":
                    t.contents.fp32_contents.extend(data[name].reshape(-1).tolist())
                else:
                    t.contents.int64_contents.extend(data[name].reshape(-1).tolist())
            resp = s.stub.ModelInfer(req)
            got = {}
            for i, o in enumerate(resp.outputs):
                np_dt = {"FP32": "<f4", "INT64": "<i8"}[o.datatype]
                if raw:
                    got[o.name] = np.frombuffer(resp.raw_output_contents[i], np_dt).reshape(list(o.shape))
                else:
                    vals = o.contents.fp32_contents if o.datatype == "FP32" else o.contents.int64_contents
                    got[o.name] = np.array(vals, np_dt).reshape(list(o.shape))
            assert np.allclose(got["score"], want["score"], atol=1e-5)
            assert got["count"].tolist() == want["count"].tolist()
        # A missing input and a wrong datatype are the client's mistakes, named.
        req = pb.ModelInferRequest(model_name="pair", raw_input_contents=[data["features"].tobytes()])
        req.inputs.add(name="features", datatype="FP32", shape=[5, 4])
        code, msg = status_of(lambda: s.stub.ModelInfer(req))
        assert code == SC.INVALID_ARGUMENT and "'tokens' is missing" in msg
        req = pb.ModelInferRequest(
            model_name="pair",
            raw_input_contents=[data["features"].tobytes(), data["tokens"].astype("<i4").tobytes()],
        )
        req.inputs.add(name="features", datatype="FP32", shape=[5, 4])
        req.inputs.add(name="tokens", datatype="INT32", shape=[5, 3])
        code, msg = status_of(lambda: s.stub.ModelInfer(req))
        assert code == SC.INVALID_ARGUMENT and "INT64" in msg
        # KServe's (typed contents) and Triton's (raw contents) clients.
        np.savez(tmp_path / "pair.npz", **data)
        py = side_python()
        for which in ("kserve", "triton"):
            out = subprocess.run(
                [str(py), "-c", MULTI_CLIENTS, which, s.target, str(tmp_path / "pair.npz")],
                capture_output=True,
                text=True,
                timeout=180,
                env=clean_env(),
            )
            assert out.returncode == 0, out.stderr[-4000:]
            res = json.loads(out.stdout.strip().splitlines()[-1])
            assert np.allclose(np.array(res["out"]["score"]), want["score"], atol=1e-5), which
            assert res["out"]["count"] == want["count"].tolist(), which
            if which == "triton":
                assert res["meta"] == [["features", "FP32"], ["tokens", "INT64"]]
    finally:
        assert s.stop() == 0, s.log.read_text()
