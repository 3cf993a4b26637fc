"""A client's mistake is never a server failure: malformed requests of every kind against a real server.

Hypothesis mutates valid requests at every field position (wrong types, huge and negative shapes,
shape/data mismatches, nested junk, unicode, NaN/Infinity literals, duplicate names) and lies in the
binary extension's lengths; raw sockets send bad request lines, bad and oversized headers and bodies cut
off by a closing client. Every answer must be 4xx (or 200 when a mutation happens to stay valid), the
server must keep answering, `modelops_serving_requests_total` must never gain a 5xx series, and the log
must hold no traceback. Client aborts are counted as 499, which canary analysis and alerts ignore.
"""

from __future__ import annotations

import copy
import gzip
import json
import socket
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve import Artifact, Server, counter

from modelops.api.trainingjob import ModelSpec
from modelops_worker import export, models

FEATURES = 6


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """One of our classifiers, exported without training (the numbers do not matter here)."""
    tmp = tmp_path_factory.mktemp("small")
    spec = ModelSpec.model_validate({"architecture": "mlp", "hiddenSize": 8, "layers": 1, "dropout": 0.0})
    torch.manual_seed(0)
    net = models.build(spec, FEATURES, 3, torch.zeros(FEATURES), torch.ones(FEATURES), None)
    desc = {"spec": spec.model_dump(by_alias=True), "numFeatures": FEATURES, "numClasses": 3}
    art = export.export(net, "torchscript", desc, {}, tmp)
    return Artifact(tmp / art["path"], art["sha256"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small: Artifact) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("robust"), small, modelName="digits")
    s.wait_ready()
    yield s
    assert s.stop() == 0


def no_5xx(s: Server) -> None:
    codes = {lab["code"]: v for lab, v in s.metrics().get("modelops_serving_requests_total", [])}
    assert not [c for c, v in codes.items() if c.startswith("5") and c != "503" and v > 0], codes
    assert codes.get("503", 0) == 0, codes


def valid(n: int = 2) -> dict[str, Any]:
    return {
        "id": "r",
        "parameters": {"binary_data_output": False},
        "inputs": [
            {"name": "input", "shape": [n, FEATURES], "datatype": "FP32", "data": [0.5] * (n * FEATURES)}
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": False}}],
    }


# --- fuzzing the protocol layer through the real server --------------------------------------------

JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["FP32", "INT64", "BOOL", "BYTES", "fp32", "", "\u0000", "ð\u202e", "1.5"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)

PATHS = [
    (),
    ("id",),
    ("parameters",),
    ("parameters", "binary_data_output"),
    ("inputs",),
    ("inputs", 0),
    ("inputs", 0, "name"),
    ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 0),
    ("inputs", 0, "shape", 1),
    ("inputs", 0, "datatype"),
    ("inputs", 0, "data"),
    ("inputs", 0, "data", 0),
    ("inputs", 0, "parameters"),
    ("inputs", 0, "parameters", "binary_data_size"),
    ("outputs",),
    ("outputs", 0),
    ("outputs", 0, "name"),
    ("outputs", 0, "parameters"),
    ("outputs", 0, "parameters", "binary_data"),
]


def mutate(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return out


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(path=st.sampled_from(PATHS), value=JUNK)
def test_any_value_at_any_field_is_answered_4xx_or_200(
    server: Server, path: tuple[Any, ...], value: Any
) -> None:
    r = requests.post(
        server.url("/v2/models/digits/infer"), data=json.dumps(mutate(valid(), path, value)), timeout=30
    )
    assert r.status_code in (200, 400, 413), r.text
    if r.status_code != 200:
        assert r.json()["error"]


@SETTINGS
@given(
    shape=st.lists(st.integers(min_value=-(2**66), max_value=2**66), max_size=40),
    count=st.integers(min_value=0, max_value=40),
    datatype=st.sampled_from(["FP32", "FP16", "INT8", "UINT64", "BOOL", "BF16"]),
)
def test_huge_negative_and_mismatched_shapes_are_400(
    server: Server, shape: list[int], count: int, datatype: str
) -> None:
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": [0] * count}]}
    r = requests.post(server.url("/v2/models/digits/infer"), data=json.dumps(body), timeout=30)
    assert r.status_code in (200, 400, 413), r.text


@SETTINGS
@given(
    head_lie=st.integers(min_value=-5, max_value=400)
    | st.sampled_from(["x", "", "1e3", "+12", "0x10", "99999999999999999999", "١٢"]),
    size_lie=st.integers(min_value=-10, max_value=200) | st.sampled_from([None, "48", 4.5, True]),
    tail=st.binary(max_size=80),
)
def test_binary_extension_lengths_that_lie_are_400(
    server: Server, head_lie: Any, size_lie: Any, tail: bytes
) -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size_lie},
                }
            ]
        }
    ).encode()
    r = requests.post(
        server.url("/v2/models/digits/infer"),
        data=head + tail,
        headers={"Inference-Header-Content-Length": str(head_lie).encode()},
        timeout=30,
    )
    assert r.status_code in (200, 400, 413), r.text


@SETTINGS
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_are_400(server: Server, raw: bytes) -> None:
    r = requests.post(server.url("/v2/models/digits/infer"), data=raw, timeout=30)
    assert r.status_code in (400, 413), r.text


LITERALS = [
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [NaN, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [Infinity, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [1e999, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [-1e400, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": {"a": 1}, "data": [0, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": 7, "data": [0, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": null, "data": [0, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": ["FP32"], "data": [0, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0]}], "inputs": 5}',
    b'{"inputs": [{"name": "\\ud800", "shape": [1, 6], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0]}]}',
    b'{"inputs": [{"name": "input", "shape": [1e3, 6], "datatype": "FP32", "data": []}]}',
    b'{"inputs": [{"name": "input", "shape": [true, 6], "datatype": "FP32", "data": []}]}',
    b'{"inputs": [{"name": "input", "shape": [9223372036854775808, 6], "datatype": "FP32", "data": []}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]}]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0]}], "outputs": [{"name": "logits"}, {"name": "logits"}, {"name": 5}]}',
    b"\xff\xfe{}",
    b'{"inputs": [{"name": "input", "shape": [], "datatype": "FP32", "data": [1]}]}',
    b'{"inputs": [{"name": "input", "shape": [6], "datatype": "FP32", "data": [[1, 2, 3, 4, 5, 6]]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [], "parameters": {"binary_data_size": 24}}]}',
    b'{"id": "\xc3\x28"}',
]


@pytest.mark.parametrize("raw", LITERALS, ids=range(len(LITERALS)))
def test_literal_junk_is_400_naming_the_field(server: Server, raw: bytes) -> None:
    r = server.infer(raw)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    if (
        b'"datatype": {' in raw
        or b'"datatype": 7' in raw
        or b'"datatype": null' in raw
        or b'"datatype": [' in raw
    ):
        assert "datatype must be a string" in error


def test_after_all_that_the_server_still_serves_and_counted_no_server_error(server: Server) -> None:
    r = server.infer(valid(3))
    assert r.status_code == 200
    no_5xx(server)
    assert "Traceback" not in server.log.read_text()


# --- content encodings ------------------------------------------------------------------------------


def test_compressed_bodies_are_inflated_and_bodies_that_lie_about_it_are_400(server: Server) -> None:
    body = json.dumps(valid()).encode()
    url = server.url("/v2/models/digits/infer")
    for enc, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        r = requests.post(url, data=data, headers={"Content-Encoding": enc}, timeout=30)
        assert r.status_code == 200, (enc, r.text)
    for enc, data in (("gzip", body), ("deflate", body), ("gzip", gzip.compress(body)[:-12] + b"garbage!")):
        r = requests.post(url, data=data, headers={"Content-Encoding": enc}, timeout=30)
        assert r.status_code == 400, (enc, r.text)
        assert "Content-Encoding" in r.json()["error"] or "not valid JSON" in r.json()["error"]
    r = requests.post(url, data=body, headers={"Content-Encoding": "compress"}, timeout=30)
    assert r.status_code == 415 and "gzip or deflate" in r.json()["error"]
    # A zip bomb: 40 KiB inflating to 40 MiB, far over maxBodyBytes (8 MiB), is refused, not inflated.
    bomb = gzip.compress(b"[" + b" " * (40 * 1024 * 1024) + b"]")
    r = requests.post(url, data=bomb, headers={"Content-Encoding": "gzip"}, timeout=60)
    assert r.status_code == 413 and "maxBodyBytes" in r.json()["error"] and "inflated" in r.json()["error"]
    assert server.infer(valid()).status_code == 200
    no_5xx(server)
    assert "Traceback" not in server.log.read_text()


# --- what a raw socket can do -------------------------------------------------------------------------


def raw_exchange(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def test_a_client_that_closes_mid_body_is_499_not_500_and_leaves_no_traceback(server: Server) -> None:
    before = counter(server.metrics(), "modelops_serving_requests_total", code="499")
    body = json.dumps(valid(50)).encode()
    for _ in range(3):
        head = f"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        raw_exchange(server.port, head + body[: len(body) // 2], read=False)
    deadline = time.monotonic() + 30
    while counter(server.metrics(), "modelops_serving_requests_total", code="499") < before + 3:
        assert time.monotonic() < deadline, server.metrics().get("modelops_serving_requests_total")
        time.sleep(0.1)
    no_5xx(server)
    assert "Traceback" not in server.log.read_text()
    assert server.infer(valid()).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /v2/models/digits/infer HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n{}",
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=[
        "request-line",
        "version",
        "header-token",
        "negative-length",
        "two-lengths",
        "bad-chunk",
        "huge-header",
        "huge-url",
    ],
)
def test_parser_level_errors_are_400_and_logged_without_a_traceback(server: Server, raw: bytes) -> None:
    answer = raw_exchange(server.port, raw)
    assert answer.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), answer[:200]
    assert int(answer.split()[1]) in (400, 413, 414, 431), answer[:200]
    time.sleep(0.2)
    text = server.log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-2000:]


# --- auth comes first -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, small: Artifact) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("guarded")
    (tmp / "tokens").write_text("let-me-in\n")
    s = Server(tmp, small, modelName="secret-model", authTokensFile=str(tmp / "tokens"))
    s.wait_ready()
    yield s
    s.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/models/unknown/infer"),
        ("POST", "/v2/models/secret-model/versions/9/infer"),
        ("GET", "/v2/models/unknown"),
        ("GET", "/v2/models/unknown/ready"),
        ("GET", "/v2/models/secret-model/ready"),
        ("GET", "/v2"),
        ("GET", "/v2/nothing"),
        ("GET", "/"),
        ("DELETE", "/v2/models/secret-model"),
    ],
)
def test_without_a_token_every_path_but_health_and_metrics_is_401_first(
    guarded: Server, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.request(method, guarded.url(path), data=b"{}", headers=headers, timeout=10)
        assert r.status_code == 401, (path, r.text)
        assert "secret-model" not in r.text and r.headers["WWW-Authenticate"].startswith("Bearer")
    # With the token the same request gets its real answer, which may name the model.
    r = requests.request(
        method, guarded.url(path), data=b"{}", headers={"Authorization": "Bearer let-me-in"}, timeout=10
    )
    assert r.status_code != 401


def test_health_and_metrics_stay_open_with_auth(guarded: Server) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert requests.get(guarded.url(path), timeout=10).status_code == 200
