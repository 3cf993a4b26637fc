"""Every Open Inference Protocol datatype, strictly: in-range and edge values pass through exactly,
out-of-range and wrongly typed values are refused with 400 naming the input.

One TorchScript model echoes thirteen inputs (one per datatype, BOOL to BF16) as thirteen outputs; a
real `modelops-worker serve` process serves it. Each row of the table sends one datatype's values (the
other inputs zeros) as JSON and checks the echo, or the refusal. The same table runs against the
protocol layer alone, so a refusal is also pinned down without a server.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
from test_serve import clean_env, free_port

from modelops_worker.serve import protocol
from modelops_worker.serve.protocol import ProtocolError

DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
]
U64_MAX = 18446744073709551615
I64_MIN, I64_MAX = -9223372036854775808, 9223372036854775807
FP32_MAX = 3.4028234663852886e38
BF16_MAX = 3.3895313892515355e38

# (datatype, values, None when they must come back exactly, else what the refusal says)
TABLE: list[tuple[str, list[Any], str | None]] = [
    ("BOOL", [True, False, True], None),
    ("BOOL", [1, 0, 1], "BOOL takes only true and false"),
    ("BOOL", ["true", False, True], "strings"),
    ("BOOL", [None, False, True], "nulls"),
    ("UINT8", [0, 255, 7], None),
    ("UINT8", [0, 256, 7], "outside the range of UINT8 (0..255)"),
    ("UINT8", [-1, 0, 0], "outside the range of UINT8"),
    ("UINT8", [1.5, 0, 0], "fractional"),
    ("UINT8", [True, 0, 0], "booleans"),
    ("UINT16", [0, 65535, 1], None),
    ("UINT16", [65536, 0, 0], "outside the range of UINT16"),
    ("UINT32", [0, 4294967295, 1], None),
    ("UINT32", [4294967296, 0, 0], "outside the range of UINT32"),
    ("UINT64", [0, U64_MAX, 9007199254740993], None),  # 2**53 + 1: no float round trip
    ("UINT64", [U64_MAX + 1, 0, 0], "outside the range of UINT64"),
    ("UINT64", [-1, 0, 0], "outside the range of UINT64"),
    ("UINT64", ["18446744073709551615", 0, 0], "strings"),
    ("INT8", [-128, 127, 0], None),
    ("INT8", [128, 0, 0], "outside the range of INT8 (-128..127)"),
    ("INT8", [-129, 0, 0], "outside the range of INT8"),
    ("INT16", [-32768, 32767, 0], None),
    ("INT16", [32768, 0, 0], "outside the range of INT16"),
    ("INT32", [-2147483648, 2147483647, 0], None),
    ("INT32", [2147483648, 0, 0], "outside the range of INT32"),
    ("INT64", [I64_MIN, I64_MAX, 9007199254740993], None),
    ("INT64", [I64_MAX + 1, 0, 0], "outside the range of INT64"),
    ("INT64", [I64_MIN - 1, 0, 0], "outside the range of INT64"),
    ("INT64", [2.0, 0, 0], "fractional numbers (or numbers written with a decimal point)"),
    ("FP16", [65504.0, -65504.0, 0.5], None),
    ("FP16", [65520.0, 0, 0], "outside the finite range of FP16"),
    ("FP16", [1e5, 0, 0], "outside the finite range of FP16"),
    ("FP16", ["1.5", 0, 0], "strings"),
    ("FP32", [FP32_MAX, -1.5, 3], None),
    ("FP32", [3.5e38, 0, 0], "outside the finite range of FP32"),
    ("FP32", ["1.5", 0, 0], 'not strings such as "1.5"'),
    ("FP32", [True, 0, 0], "booleans"),
    ("FP32", [None, 0, 0], "nulls"),
    ("FP32", [[1], 0, 0], "nested"),
    ("FP32", [{"v": 1}, 0, 0], "nested lists or objects"),
    ("FP64", [1.7976931348623157e308, -2.5, 1], None),
    ("FP64", ["NaN", 0, 0], "strings"),
    ("BF16", [1.5, -2.0, BF16_MAX], None),
    ("BF16", [3.4e38, 0, 0], "outside the finite range of BF16"),
]
IDS = [f"{dt}-{'ok' if says is None else 'refused'}-{i}" for i, (dt, _, says) in enumerate(TABLE)]


def request(datatype: str, values: list[Any]) -> dict[str, Any]:
    """Every input zeros, but `datatype`'s, which carries `values`."""
    inputs = []
    for dt in DATATYPES:
        data: list[Any] = values if dt == datatype else ([False] * 3 if dt == "BOOL" else [0] * 3)
        inputs.append({"name": dt.lower(), "shape": [1, 3], "datatype": dt, "data": data})
    return {"inputs": inputs}


@pytest.mark.parametrize(("datatype", "values", "says"), TABLE, ids=IDS)
def test_the_protocol_layer_reads_each_datatype_strictly(
    datatype: str, values: list[Any], says: str | None
) -> None:
    body = json.dumps(request(datatype, values)).encode()
    if says is None:
        req = protocol.parse_infer(body, None)
        (t,) = [t for t in req.inputs if t.datatype == datatype]
        assert t.array.tolist() == [values]
    else:
        with pytest.raises(ProtocolError) as exc:
            protocol.parse_infer(body, None)
        assert says in exc.value.message and f"inputs[{DATATYPES.index(datatype)}]" in exc.value.message
        assert exc.value.status == 400


ECHO_SOURCE = """
import torch
from typing import Dict

class Echo(torch.nn.Module):
    def forward(self, {args}) -> Dict[str, torch.Tensor]:
        return {{{pairs}}}
"""


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A served TorchScript model whose outputs are its inputs, one of every datatype."""
    tmp = tmp_path_factory.mktemp("echo")
    names = [dt.lower() for dt in DATATYPES]
    src = tmp / "echo_model.py"
    src.write_text(
        ECHO_SOURCE.format(
            args=", ".join(f"{n}: torch.Tensor" for n in names),
            pairs=", ".join(f'"{n}_out": {n}' for n in names),
        )
    )
    sys.path.insert(0, str(tmp))
    try:
        from echo_model import Echo  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Echo()), buf)
    art = tmp / "echo.pt"
    art.write_bytes(buf.getvalue())
    signature = {
        "inputs": [{"name": dt.lower(), "datatype": dt, "shape": [-1, 3]} for dt in DATATYPES],
        "outputs": [{"name": f"{dt.lower()}_out", "datatype": dt, "shape": [-1, 3]} for dt in DATATYPES],
    }
    port = free_port()
    cfg = {
        "modelName": "echo",
        "modelVersion": "1",
        "artifactPath": str(art),
        "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
        "signature": signature,
        "port": port,
        "grpcPort": None,  # a taken gRPC port fails the start; REST is what is tested here
    }
    log = tmp / "serve.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("modelops-worker")), "serve", "--host", "127.0.0.1"],
        env=clean_env(MODELOPS_SERVE_CONFIG=json.dumps(cfg), MODELOPS_TERMINATION_LOG=str(tmp / "tl")),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        try:
            if requests.get(base + "/v2/health/ready", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(timeout=60)
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(("datatype", "values", "says"), TABLE, ids=IDS)
def test_the_server_echoes_in_range_values_exactly_and_refuses_the_rest(
    echo: str, datatype: str, values: list[Any], says: str | None
) -> None:
    r = requests.post(
        echo + "/v2/models/echo/infer",
        data=json.dumps(request(datatype, values)),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    if says is None:
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}[f"{datatype.lower()}_out"]
        assert out["datatype"] == datatype and out["shape"] == [1, 3]
        if datatype.startswith(("FP", "BF")):  # floats are printed as their own type's shortest repr
            dtype = protocol.NUMPY_DTYPES[datatype]
            assert np.array_equal(np.array(out["data"], dtype), np.array(values, dtype))
        else:
            assert out["data"] == values  # exactly: the largest UINT64 and 2**53 + 1 included
    else:
        assert r.status_code == 400, r.text
        assert says in r.json()["error"] and f"inputs[{DATATYPES.index(datatype)}]" in r.json()["error"]


def test_every_datatype_round_trips_through_the_binary_extension(echo: str) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "BOOL": np.array([[True, False, True]]),
        "UINT64": np.array([[U64_MAX, 0, 9007199254740993]], dtype="<u8"),
        "INT64": np.array([[I64_MIN, I64_MAX, -1]], dtype="<i8"),
        "FP16": np.array([[65504, -0.5, 1e-3]], dtype="<f2"),
        "FP64": rng.normal(size=(1, 3)),
    }
    for dt in ("UINT8", "UINT16", "UINT32", "INT8", "INT16", "INT32"):
        info = np.iinfo(protocol.NUMPY_DTYPES[dt])
        arrays[dt] = np.array([[info.min, info.max, 1]], dtype=protocol.NUMPY_DTYPES[dt])
    arrays["FP32"] = rng.normal(size=(1, 3)).astype("<f4")
    bf16 = np.array([[1.5, -2.0, 0.0078125]], dtype="<f4")  # exactly representable in bfloat16
    wire = {dt: a.astype(a.dtype.newbyteorder("<")).tobytes() for dt, a in arrays.items()}
    wire["BF16"] = (bf16.view("<u4") >> 16).astype("<u2").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": dt.lower(),
                    "shape": [1, 3],
                    "datatype": dt,
                    "parameters": {"binary_data_size": len(wire[dt])},
                }
                for dt in DATATYPES
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = head + b"".join(wire[dt] for dt in DATATYPES)
    r = requests.post(
        echo + "/v2/models/echo/infer",
        data=body,
        headers={"Inference-Header-Content-Length": str(len(head))},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.content[:n])
    offset = n
    for o in meta["outputs"]:
        dt = o["datatype"]
        size = o["parameters"]["binary_data_size"]
        assert r.content[offset : offset + size] == wire[dt], dt  # byte for byte what was sent
        offset += size
    assert offset == len(r.content)


def _mutations() -> Any:
    from hypothesis import strategies as st

    junk = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
        | st.sampled_from([*DATATYPES, "BYTES", ""]),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    )
    index = st.integers(min_value=0, max_value=len(DATATYPES) - 1)
    field = st.sampled_from(["name", "shape", "datatype", "data", "parameters"])
    return st.tuples(index, field, junk)


def test_a_multi_input_model_answers_junk_at_any_input_field_with_4xx(echo: str) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_mutations())
    def one(mutation: tuple[int, str, Any]) -> None:
        i, key, value = mutation
        body = request("FP32", [1.0, 2.0, 3.0])
        body["inputs"][i][key] = value
        r = requests.post(echo + "/v2/models/echo/infer", data=json.dumps(body), timeout=30)
        assert r.status_code in (200, 400, 413), r.text

    one()
    metrics = requests.get(echo + "/metrics", timeout=10).text
    assert 'code="5' not in metrics.replace('code="503"', "")
