"""Serving models that are not ours: any signature, TorchScript and ONNX Runtime, verified and served.

The suite makes its own artifacts: a TorchScript model with two inputs (FP32 + INT64) and a dict
output, a regression model, an image-shaped CNN, a model with a BOOL input and a tuple output, a model
whose first dim is fixed, and ONNX exports (`torch.onnx.export`, the TorchScript-based exporter) of
the two-input model and the CNN. Each is verified by `modelops-worker verify` (signature recorded,
declared mismatches refused) and served by a real `modelops-worker serve` process answering real HTTP
requests (JSON and the binary extension), whose numbers are checked against the same model run in
this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import struct
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import onnxruntime  # noqa: F401
import pytest
import requests
import torch
from test_serve import clean_env, free_port
from torch import nn

from modelops_worker import cli


class TwoInputs(nn.Module):
    """FP32 features [n, 4] and INT64 token ids [n, 3] -> a dict of a score and a count."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lin = nn.Linear(4, 2)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        h = features + self.emb(tokens).mean(dim=1)
        return {"score": self.lin(h), "count": (tokens > 4).sum(dim=1)}


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class SmallCNN(nn.Module):
    """An image model: [n, 3, 16, 16] -> 4 scores."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))


class Masked(nn.Module):
    """A BOOL mask with FP32 values -> a tuple (the masked sum, how many were kept as INT32)."""

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = torch.where(mask, values, torch.zeros_like(values))
        return kept.sum(dim=1), mask.sum(dim=1).to(torch.int32)


class FixedBatch(nn.Module):
    """A model that only takes exactly one sample ([1, 3]), like many exported graphs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 + 1.0


def sig(
    inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]
) -> dict[str, Any]:
    return {
        "inputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in inputs],
        "outputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in outputs],
    }


@dataclass
class Case:
    name: str
    module: nn.Module
    fmt: str
    signature: dict[str, Any]  # what verification must record
    declare: bool  # TorchScript needs a declared signature; ONNX reads its graph
    path: Path | None = None
    sha256: str = ""

    def sample(self, n: int, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray[Any, Any]] = {}
        for t in self.signature["inputs"]:
            shape = [n if d < 0 else d for d in t["shape"]]
            if t["datatype"] == "FP32":
                out[t["name"]] = rng.normal(size=shape).astype(np.float32)
            elif t["datatype"] == "INT64":
                out[t["name"]] = rng.integers(0, 10, size=shape).astype(np.int64)
            elif t["datatype"] == "BOOL":
                out[t["name"]] = rng.integers(0, 2, size=shape).astype(bool)
        return out

    def expected(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """The same model run in this process."""
        args = [torch.from_numpy(inputs[t["name"]]) for t in self.signature["inputs"]]
        with torch.no_grad():
            out = self.module(*args)
        names = [t["name"] for t in self.signature["outputs"]]
        if isinstance(out, torch.Tensor):
            out = (out,)
        if isinstance(out, dict):
            return {k: v.numpy() for k, v in out.items()}
        return {n: v.numpy() for n, v in zip(names, out, strict=True)}


CASES = [
    Case(
        "two-inputs",
        TwoInputs(),
        "torchscript",
        sig(
            [("features", "FP32", [-1, 4]), ("tokens", "INT64", [-1, 3])],
            [("score", "FP32", [-1, 2]), ("count", "INT64", [-1])],
        ),
        True,
    ),
    Case(
        "regression",
        Regression(),
        "torchscript",
        sig([("x", "FP32", [-1, 5])], [("value", "FP32", [-1, 1])]),
        True,
    ),
    Case(
        "cnn",
        SmallCNN(),
        "torchscript",
        sig([("image", "FP32", [-1, 3, 16, 16])], [("scores", "FP32", [-1, 4])]),
        True,
    ),
    Case(
        "masked",
        Masked(),
        "torchscript",
        sig(
            [("values", "FP32", [-1, 4]), ("mask", "BOOL", [-1, 4])],
            [("total", "FP32", [-1]), ("kept", "INT32", [-1])],
        ),
        True,
    ),
    Case("fixed", FixedBatch(), "torchscript", sig([("x", "FP32", [1, 3])], [("y", "FP32", [1, 3])]), True),
    Case(
        "two-inputs-onnx",
        TwoInputs(),
        "onnx",
        sig(
            [("features", "FP32", [-1, 4]), ("tokens", "INT64", [-1, 3])],
            [("score", "FP32", [-1, 2]), ("count", "INT64", [-1])],
        ),
        False,
    ),
    Case(
        "cnn-onnx",
        SmallCNN(),
        "onnx",
        sig([("image", "FP32", [-1, 3, 16, 16])], [("scores", "FP32", [-1, 4])]),
        False,
    ),
]


def _export(case: Case, directory: Path) -> None:
    torch.manual_seed(0)
    for p in case.module.parameters():
        nn.init.normal_(p, std=0.5)
    case.module.eval()
    example = tuple(
        torch.from_numpy(v)
        for v in case.sample(2 if case.signature["inputs"][0]["shape"][0] < 0 else 1).values()
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.fmt == "torchscript":
            torch.jit.save(torch.jit.script(case.module), buf)
        else:
            ins = [t["name"] for t in case.signature["inputs"]]
            outs = [t["name"] for t in case.signature["outputs"]]
            torch.onnx.export(
                case.module,
                example,
                buf,
                dynamo=False,  # the TorchScript-based exporter: no onnxscript needed
                input_names=ins,
                output_names=outs,
                dynamic_axes={n: {0: "batch"} for n in ins + outs},
            )
    case.path = directory / f"{case.name}.{'onnx' if case.fmt == 'onnx' else 'pt'}"
    case.path.write_bytes(buf.getvalue())
    case.sha256 = hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("zoo")
    for case in CASES:
        _export(case, tmp)
    return {c.name: c for c in CASES}


def verify(case: Case, *extra: str, fmt: str | None = None, tmp: Path) -> tuple[int, dict[str, Any]]:
    """`modelops-worker verify` (its CLI entry point, in this process); exit code and termination message."""
    tl = tmp / f"verify-{case.name}.json"
    args = ["verify", "--artifact", str(case.path), "--sha256", case.sha256, "--format", fmt or case.fmt]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELOPS_TERMINATION_LOG", str(tl))
        code = cli.main([*args, *extra])
    return code, json.loads(tl.read_text())


# --- verification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_verification_records_the_real_signature(
    artifacts: dict[str, Case], name: str, tmp_path: Path
) -> None:
    case = artifacts[name]
    declared = ["--signature", json.dumps(case.signature)] if case.declare else []
    code, out = verify(case, *declared, tmp=tmp_path)
    assert code == 0, out
    assert out["signature"] == case.signature
    assert out["artifact"]["format"] == case.fmt and len(out["message"]) < 1000


def test_torchscript_without_a_declared_signature_is_refused_saying_what_to_declare(
    artifacts, tmp_path
) -> None:
    code, out = verify(artifacts["regression"], tmp=tmp_path)
    assert code == 65 and out["reason"] == "SignatureMismatch"
    assert "spec.signature" in out["message"]


MISMATCHES = [
    # (case, how the declaration is wrong, what the message must name)
    (
        "two-inputs",
        lambda s: s["outputs"][0].update(shape=[-1, 3]),
        "'score' has shape [2, 2], declared [-1, 3]",
    ),
    ("two-inputs", lambda s: s["outputs"][1].update(datatype="FP32"), "'count' is INT64, declared FP32"),
    ("regression", lambda s: s["outputs"][0].update(datatype="FP64"), "'value' is FP32, declared FP64"),
    ("cnn", lambda s: s["inputs"][0].update(shape=[-1, 1, 16, 16]), "does not run on zeros"),
    ("masked", lambda s: s["outputs"].pop(), "returned 2 tensors"),
    (
        "two-inputs-onnx",
        lambda s: s["inputs"][1].update(datatype="INT32"),
        "input 'tokens' is declared INT32 but the ONNX graph says INT64",
    ),
    (
        "cnn-onnx",
        lambda s: s["inputs"][0].update(shape=[-1, 3, 32, 32]),
        "declared with shape [-1, 3, 32, 32] but the ONNX graph says [-1, 3, 16, 16]",
    ),
    (
        "cnn-onnx",
        lambda s: s["inputs"][0].update(name="pixels"),
        "input 'pixels' is declared but the ONNX graph has no such input",
    ),
]


@pytest.mark.parametrize(("name", "break_it", "says"), MISMATCHES)
def test_a_declared_signature_that_does_not_match_fails_naming_the_tensor(
    artifacts: dict[str, Case], name: str, break_it: Any, says: str, tmp_path: Path
) -> None:
    case = artifacts[name]
    declared = json.loads(json.dumps(case.signature))
    break_it(declared)
    code, out = verify(case, "--signature", json.dumps(declared), tmp=tmp_path)
    assert code == 65, out
    assert out["reason"] == "SignatureMismatch" and says in out["message"], out["message"]


def test_a_format_without_a_runtime_fails_naming_it(artifacts, tmp_path: Path) -> None:
    # A real safetensors file: 8-byte header length, JSON header, raw tensor bytes.
    weights = np.arange(6, dtype="<f4")
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + weights.tobytes()
    path = tmp_path / "model.safetensors"
    path.write_bytes(blob)
    case = Case("st", Regression(), "safetensors", {}, False, path, hashlib.sha256(blob).hexdigest())
    code, out = verify(case, tmp=tmp_path)
    assert code == 65 and out["reason"] == "NoRuntimeForFormat"
    assert "'safetensors'" in out["message"] and "signature" not in out
    code, out = verify(case, fmt="pickle", tmp=tmp_path)
    assert code == 65 and out["reason"] == "NoRuntimeForFormat" and "'pickle'" in out["message"]
    # The digest is still checked first: a wrong file says so, whatever its format.
    case.sha256 = "0" * 64
    code, out = verify(case, tmp=tmp_path)
    assert out["reason"] == "ArtifactDigestMismatch"


# --- serving --------------------------------------------------------------------------------------


class Served:
    def __init__(self, case: Case, tmp: Path, signature: bool = True, **cfg: Any) -> None:
        self.case = case
        self.port = free_port()
        self.log = tmp / f"serve-{case.name}.log"
        serve_cfg = {
            "modelName": case.name,
            "modelVersion": "1",
            "artifactPath": str(case.path),
            "sha256": case.sha256,
            "format": case.fmt,
            "port": self.port,
            "grpcPort": None,
            **cfg,
        }
        if signature and case.declare:
            serve_cfg["signature"] = case.signature
        script = Path(sys.executable).with_name("modelops-worker")
        self.proc = subprocess.Popen(
            [str(script), "serve", "--host", "127.0.0.1"],
            env=clean_env(
                MODELOPS_SERVE_CONFIG=json.dumps(serve_cfg),
                MODELOPS_TERMINATION_LOG=str(tmp / f"tl-{case.name}"),
            ),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.infer_url = f"{self.base}/v2/models/{case.name}/infer"

    def wait_ready(self) -> None:
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if requests.get(self.base + "/v2/health/ready", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(self.log.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def servers(
    artifacts: dict[str, Case], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    tmp = tmp_path_factory.mktemp("served")
    started = {name: Served(case, tmp) for name, case in artifacts.items()}
    try:
        for s in started.values():
            s.wait_ready()
        yield started
    finally:
        for s in started.values():
            s.stop()


def as_json(inputs: dict[str, np.ndarray[Any, Any]], dts: dict[str, str]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": dts[n], "data": a.reshape(-1).tolist()}
            for n, a in inputs.items()
        ]
    }


def as_binary(
    inputs: dict[str, np.ndarray[Any, Any]], dts: dict[str, str], outputs: list[str]
) -> tuple[bytes, int]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": dts[n],
                    "parameters": {"binary_data_size": a.nbytes},
                }
                for n, a in inputs.items()
            ],
            "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs],
        }
    ).encode()
    return head + b"".join(np.ascontiguousarray(a).tobytes() for a in inputs.values()), len(head)


NP = {"FP32": "<f4", "INT64": "<i8", "INT32": "<i4", "BOOL": "?"}


def decode_binary(r: requests.Response) -> dict[str, np.ndarray[Any, Any]]:
    n = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(r.content[:n])
    out, offset = {}, n
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(r.content[offset : offset + size], NP[o["datatype"]]).reshape(
            o["shape"]
        )
        offset += size
    return out


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_model_serves_its_signature_with_json_and_binary_requests(
    servers: dict[str, Served], name: str
) -> None:
    s = servers[name]
    case = s.case
    meta = requests.get(f"{s.base}/v2/models/{name}", timeout=10).json()
    assert {"inputs": meta["inputs"], "outputs": meta["outputs"]} == case.signature
    assert meta["platform"] == ("onnxruntime_onnx" if case.fmt == "onnx" else "pytorch_torchscript")
    dts = {t["name"]: t["datatype"] for t in case.signature["inputs"]}
    out_dts = {t["name"]: t["datatype"] for t in case.signature["outputs"]}
    n = 1 if name == "fixed" else 7
    x = case.sample(n, seed=3)
    want = case.expected(x)
    r = requests.post(s.infer_url, json=as_json(x, dts), timeout=30)
    assert r.status_code == 200, r.text
    got = {o["name"]: o for o in r.json()["outputs"]}
    assert set(got) == set(out_dts)  # no outputs asked for: all of them
    for oname, arr in want.items():
        assert got[oname]["datatype"] == out_dts[oname] and got[oname]["shape"] == list(arr.shape)
        assert np.allclose(np.array(got[oname]["data"]).reshape(arr.shape), arr, atol=1e-5), oname
    body, head_len = as_binary(x, dts, list(out_dts))
    r = requests.post(
        s.infer_url, data=body, headers={"Inference-Header-Content-Length": str(head_len)}, timeout=30
    )
    assert r.status_code == 200, r.text
    for oname, arr in decode_binary(r).items():
        assert arr.dtype == want[oname].dtype.newbyteorder("<") and np.allclose(
            arr, want[oname], atol=1e-5
        ), oname


def test_concurrent_requests_to_a_two_input_model_are_batched_and_each_gets_its_own_rows(servers) -> None:
    s = servers["two-inputs"]
    case = s.case
    samples = [case.sample(1 + i % 3, seed=i) for i in range(40)]
    dts = {"features": "FP32", "tokens": "INT64"}

    async def scenario() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http:

            async def one(x: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
                async with http.post(s.infer_url, json=as_json(x, dts)) as r:
                    assert r.status == 200, await r.text()
                    body: dict[str, Any] = await r.json()
                    return body

            return await asyncio.gather(*(one(x) for x in samples))

    for x, body in zip(samples, asyncio.run(scenario()), strict=True):
        want = case.expected(x)
        got = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in body["outputs"]}
        assert np.allclose(got["score"], want["score"], atol=1e-5) and (got["count"] == want["count"]).all()


def test_a_model_with_a_fixed_first_dim_runs_each_request_alone(servers) -> None:
    s = servers["fixed"]
    r = requests.post(
        s.infer_url, json=as_json({"x": np.ones((2, 3), np.float32)}, {"x": "FP32"}), timeout=30
    )
    assert r.status_code == 400 and "[1, 3]" in r.json()["error"]
    xs = [np.full((1, 3), i, np.float32) for i in range(12)]

    async def scenario() -> list[Any]:
        async with aiohttp.ClientSession() as http:

            async def one(x: np.ndarray[Any, Any]) -> Any:
                async with http.post(s.infer_url, json=as_json({"x": x}, {"x": "FP32"})) as r:
                    return (await r.json())["outputs"][0]["data"]

            return await asyncio.gather(*(one(x) for x in xs))

    assert asyncio.run(scenario()) == [[2.0 * i + 1] * 3 for i in range(12)]


def test_requests_that_do_not_fit_the_signature_are_refused_naming_the_input(servers) -> None:
    s = servers["two-inputs"]
    x = s.case.sample(2)
    ok = as_json(x, {"features": "FP32", "tokens": "INT64"})
    cases = [
        ({"inputs": ok["inputs"][:1]}, "input 'tokens' is missing"),
        (
            {"inputs": [ok["inputs"][0], {**ok["inputs"][1], "name": "ids"}]},
            "'ids' is not an input of this model",
        ),
        (
            {"inputs": [ok["inputs"][0], {**ok["inputs"][1], "datatype": "INT32"}]},
            "datatype INT32, but the model's input 'tokens' is INT64",
        ),
        (
            {"inputs": [ok["inputs"][0], {**ok["inputs"][1], "shape": [3, 2], "data": [1] * 6}]},
            "does not fit the model's input 'tokens'",
        ),
        (
            {"inputs": [ok["inputs"][0], {**ok["inputs"][1], "shape": [1, 3], "data": [1] * 3}]},
            "every input needs the same batch size",
        ),
        (
            {**ok, "outputs": [{"name": "logits"}]},
            "'logits' is not an output of this model; ask for score, count",
        ),
    ]
    for body, says in cases:
        r = requests.post(s.infer_url, json=body, timeout=30)
        assert r.status_code == 400 and says in r.json()["error"], (says, r.text)
    r = requests.post(s.infer_url, json={**ok, "outputs": [{"name": "count"}]}, timeout=30)
    assert [o["name"] for o in r.json()["outputs"]] == ["count"]


def test_onnx_runtime_reads_the_signature_from_the_graph_without_a_declared_one(servers) -> None:
    # The ONNX servers were started without ServeConfig.signature: metadata came from the graph.
    meta = requests.get(f"{servers['cnn-onnx'].base}/v2/models/cnn-onnx", timeout=10).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 16, 16]}]
    text = requests.get(f"{servers['cnn-onnx'].base}/metrics", timeout=10).text
    assert 'format="onnx"' in text


def test_a_torchscript_model_served_without_any_signature_refuses_to_start(artifacts, tmp_path: Path) -> None:
    s = Served(artifacts["regression"], tmp_path, signature=False)
    assert s.proc.wait(timeout=120) == 65
    result = json.loads((tmp_path / "tl-regression").read_text())
    assert result["reason"] == "ArtifactLoadFailed" and "spec.signature" in result["message"]
