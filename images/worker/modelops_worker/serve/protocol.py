"""The Open Inference Protocol (v2) on the wire: parse and check an infer request, build the response.

Pure functions over bytes, dicts and numpy arrays, no HTTP and no torch, so every refusal a client can
meet is tested without a server. Every refusal is a `ProtocolError` whose message names the field and
says what to send instead; the server turns it into `{"error": ...}` with its HTTP status (4xx only:
nothing a client sends may surface as a 500).

Both encodings of the protocol are accepted: tensors as JSON (`data` flat in row-major order, or nested
as the shape says) and the binary tensor data extension (`Inference-Header-Content-Length`, raw
little-endian tensors after the JSON header, in the order of the inputs that carry
`binary_data_size`), which is what KServe's and Triton's clients send when asked for `binary_data`.

JSON data is read strictly, per datatype (docs/serving.md has the table): floating-point tensors take
JSON numbers within the datatype's finite range, integer tensors take JSON integers within the
datatype's range (the largest UINT64 exactly, never through a float), BOOL takes `true`/`false` only.
Strings, nulls, booleans among numbers and numbers among booleans are refused, never coerced.

This layer knows the protocol, not the model: whether the tensors fit the served model's signature is
checked by `core.InferenceCore`, shared with the gRPC front.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

try:  # orjson is several times faster on both sides of a request; the stdlib is the fallback.
    import orjson

    def loads(data: bytes | memoryview) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - orjson is in the worker extra

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def loads(data: bytes | memoryview) -> Any:
        return json.loads(bytes(data), parse_constant=_no_constants)

    def _default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), default=_default).encode()


HEADER_LENGTH = "Inference-Header-Content-Length"

# Every protocol datatype this server carries, with the numpy type of its values in memory. BF16 has
# no numpy type: it travels as float32 in memory (its values are exactly representable there) and as
# 2-byte bfloat16 on the binary wire.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<f4"),
}
# Bytes per value on the binary wire (BF16 differs from its in-memory float32).
WIRE_ITEMSIZE = {dt: (2 if dt == "BF16" else t.itemsize) for dt, t in NUMPY_DTYPES.items()}
KNOWN_DATATYPES = frozenset({*NUMPY_DTYPES, "BYTES"})
_BF16_MAX = float(np.frombuffer(np.array([0x7F7F0000], "<u4").tobytes(), "<f4")[0])
_MAX_RANK = 32


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol datatype of a numpy dtype (float32 is FP32, never BF16)."""
    for name, t in NUMPY_DTYPES.items():
        if name != "BF16" and t == dtype.newbyteorder("<"):
            return name
    raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")


class ProtocolError(Exception):
    """A request the protocol or the model cannot take; `status` is the HTTP status to answer (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Tensor:
    """One decoded input tensor: `array` holds the values with the shape the request gave."""

    name: str
    datatype: str
    array: np.ndarray[Any, Any]


@dataclass
class InferRequest:
    """A request that is well-formed protocol; whether it fits the model is the core's question."""

    id: str
    inputs: list[Tensor]
    outputs: tuple[str, ...] | None  # None: the model's default outputs
    binary_outputs: frozenset[str] = field(default_factory=frozenset)
    all_binary: bool = False  # parameters.binary_data_output: every output raw

    def is_binary(self, name: str) -> bool:
        return self.all_binary or name in self.binary_outputs


def _typename(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(v), "an object"
    )


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise ProtocolError(f"{where}.shape must be a list of sizes, e.g. [1, 64]; got {_typename(raw)}")
    if len(raw) > _MAX_RANK:
        raise ProtocolError(f"{where}.shape has {len(raw)} dimensions; at most {_MAX_RANK} are taken")
    if not all(type(d) is int and d >= 0 for d in raw):
        raise ProtocolError(f"{where}.shape must hold non-negative integers; got {raw!r:.200}")
    return tuple(raw)


def _binary_flag(params: Any) -> bool:
    return isinstance(params, Mapping) and params.get("binary_data") is True


def _parameters(obj: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}parameters must be an object; got {_typename(params)}")
    return params


def parse_infer(body: bytes, header_length: int | None) -> InferRequest:
    """Check an infer request's body against the protocol; raises ProtocolError."""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise ProtocolError(
                f"{HEADER_LENGTH}={header_length} does not fit a body of {len(body)} bytes; it must be the "
                "length of the JSON header that starts the body"
            )
        head: bytes | memoryview = memoryview(body)[:header_length]
        rest = memoryview(body)[header_length:]
    else:
        head, rest = body, memoryview(b"")
    try:
        req = loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"the request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(req, dict):
        raise ProtocolError("the request body must be a JSON object with an `inputs` list")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError(f"id must be a string; got {_typename(rid)}")
    params = _parameters(req, "")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(
            "inputs is missing or empty: send a list of tensors, e.g. "
            '[{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [...]}]'
        )
    tensors: list[Tensor] = []
    offset = 0
    seen: set[str] = set()
    for i, t in enumerate(inputs):
        tensor, used = _tensor(t, f"inputs[{i}]", rest[offset:])
        if tensor.name in seen:
            raise ProtocolError(f"inputs[{i}].name {tensor.name!r:.100} is given twice; send each input once")
        seen.add(tensor.name)
        offset += used
        tensors.append(tensor)
    if offset != len(rest):
        raise ProtocolError(
            f"{len(rest) - offset} bytes after the JSON header belong to no input: the inputs' "
            f"parameters.binary_data_size add up to {offset}"
        )
    outputs, binary = _outputs(req)
    return InferRequest(
        id=rid if rid is not None else str(uuid.uuid4()),
        inputs=tensors,
        outputs=outputs,
        binary_outputs=binary,
        all_binary=params.get("binary_data_output") is True,
    )


def _tensor(t: Any, where: str, binary: memoryview) -> tuple[Tensor, int]:
    """The tensor and how many bytes of the binary section it used."""
    if not isinstance(t, dict):
        raise ProtocolError(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype"):
        if key not in t:
            raise ProtocolError(f"{where}.{key} is missing; a tensor needs name, shape, datatype and data")
    name = t["name"]
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}.name must be a non-empty string; got {_typename(name)}")
    dt = t["datatype"]
    if not isinstance(dt, str):
        raise ProtocolError(
            f'{where}.datatype must be a string such as "FP32" or "INT64"; got {_typename(dt)}'
        )
    shape = _shape(t["shape"], where)
    if dt not in NUMPY_DTYPES:
        known = "a protocol datatype" if dt in KNOWN_DATATYPES else "not a protocol datatype"
        raise ProtocolError(
            f"{where}.datatype {dt!r:.50} is {known} this server can take; send one of "
            f"{', '.join(NUMPY_DTYPES)}"
        )
    count = math.prod(shape)
    params = _parameters(t, where + ".")
    size = params.get("binary_data_size")
    if size is not None:
        want = count * WIRE_ITEMSIZE[dt]
        if type(size) is not int or size != want or size > len(binary):
            raise ProtocolError(
                f"{where}.parameters.binary_data_size={size!r:.50} must be {want} ({count} {dt} values of "
                f"shape {list(shape)}) and fit the {len(binary)} bytes left after the JSON header"
            )
        if "data" in t:
            raise ProtocolError(f"{where} has both data and parameters.binary_data_size; send one")
        return Tensor(name, dt, _from_binary(binary[:size], dt, shape, where)), size
    if "data" not in t:
        raise ProtocolError(f"{where}.data is missing; send the values flat or nested as the shape says")
    arr = _from_json(t["data"], where, dt, shape, count)
    return Tensor(name, dt, arr), 0


def _from_binary(raw: memoryview, dt: str, shape: tuple[int, ...], where: str) -> np.ndarray[Any, Any]:
    if dt == "BF16":
        halves = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        arr: np.ndarray[Any, Any] = halves.view("<f4")
    elif dt == "BOOL":
        arr = np.frombuffer(raw, dtype="u1")
        if arr.size and arr.max() > 1:
            raise ProtocolError(f"{where}: BOOL binary data must be bytes 0 or 1")
        arr = arr.view("?")
    else:
        arr = np.frombuffer(raw, dtype=NUMPY_DTYPES[dt])
    arr = arr.reshape(shape)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ProtocolError(f"{where} binary data holds NaN or infinite values; {dt} inputs must be finite")
    return arr


def _leaves(data: list[Any], shape: tuple[int, ...]) -> list[Any] | None:
    """The values of a list nested exactly as `shape` says, flat; None when it is nested otherwise."""
    level: list[Any] = [data]
    for size in shape:
        if not all(type(x) is list and len(x) == size for x in level):
            return None
        level = list(chain.from_iterable(level))
    return level


def _from_json(data: Any, where: str, dt: str, shape: tuple[int, ...], count: int) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        raise ProtocolError(f"{where}.data must be a list (flat or nested); got {_typename(data)}")
    # The values, flat: either the list itself or nested exactly as the shape says.
    flat: list[Any] | None = data
    if data and type(data[0]) is list:
        flat = _leaves(data, shape)
        if flat is None:
            raise ProtocolError(
                f"{where}.data is ragged or nested otherwise than shape {list(shape)} says; send it flat "
                f"({count} values) or nested exactly as the shape"
            )
    assert flat is not None
    if len(flat) != count:
        raise ProtocolError(f"{where}.data has {len(flat)} values but shape {list(shape)} needs {count}")
    kinds = set(map(type, flat))
    target = NUMPY_DTYPES[dt]
    if dt == "BOOL":
        if kinds - {bool}:
            raise ProtocolError(f"{where}.data holds {_odd(kinds - {bool})}; BOOL takes only true and false")
        return np.array(flat, dtype="?").reshape(shape)
    if kinds - {int, float}:
        raise ProtocolError(
            f"{where}.data holds {_odd(kinds - {int, float})}; datatype {dt} needs numbers "
            '(JSON numbers, not strings such as "1.5", booleans or nulls)'
        )
    if target.kind == "f":
        limit = _BF16_MAX if dt == "BF16" else float(np.finfo(target).max)
        try:
            arr = np.array(flat, dtype=np.float64)
        except OverflowError:  # a Python int beyond float64
            arr = np.array([math.inf])
        if arr.size and not (np.isfinite(arr).all() and np.abs(arr).max() <= limit):
            raise ProtocolError(
                f"{where}.data has values outside the finite range of {dt} (largest magnitude {limit:g})"
            )
        return arr.astype(target).reshape(shape)
    if float in kinds:
        # orjson reads integers beyond 64 bits as floats: those are out of range, not fractional.
        if any(type(v) is float and v.is_integer() and abs(v) >= 2**63 for v in flat):
            info = np.iinfo(target)
            raise ProtocolError(f"{where}.data has values outside the range of {dt} ({info.min}..{info.max})")
        raise ProtocolError(
            f"{where}.data holds fractional numbers (or numbers written with a decimal point) but datatype "
            f"is {dt}; send integers, or use FP32"
        )
    info = np.iinfo(target)
    if flat and (min(flat) < info.min or max(flat) > info.max):
        raise ProtocolError(f"{where}.data has values outside the range of {dt} ({info.min}..{info.max})")
    return np.array(flat, dtype=target).reshape(shape)


_KIND_NAMES = {str: "strings", type(None): "nulls", bool: "booleans", int: "numbers", float: "numbers"}


def _odd(kinds: set[type]) -> str:
    return " and ".join(sorted({_KIND_NAMES.get(k, "nested lists or objects") for k in kinds}))


def _outputs(req: dict[str, Any]) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    raw = req.get("outputs")
    if raw is None or raw == []:
        return None, frozenset()
    if not isinstance(raw, list):
        raise ProtocolError("outputs must be a list of {name} objects")
    names: list[str] = []
    binary: set[str] = set()
    for i, o in enumerate(raw):
        if not isinstance(o, dict):
            raise ProtocolError(f"outputs[{i}] must be an object with a name; got {_typename(o)}")
        name = o.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"outputs[{i}].name must be a non-empty string; got {_typename(name)}")
        if _binary_flag(_parameters(o, f"outputs[{i}].")):
            binary.add(name)
        names.append(name)
    return tuple(dict.fromkeys(names)), frozenset(binary)


def _to_bf16_bytes(arr: np.ndarray[Any, Any]) -> bytes:
    # Round to nearest even, as torch does when it casts float32 to bfloat16.
    bits = np.ascontiguousarray(arr, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def encode_response(
    name: str,
    version: str,
    req: InferRequest,
    tensors: Mapping[str, np.ndarray[Any, Any]],
    datatypes: Mapping[str, str],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for oname, arr in tensors.items():
        dt = datatypes[oname]
        entry: dict[str, Any] = {"name": oname, "shape": list(arr.shape), "datatype": dt}
        if req.is_binary(oname):
            if dt == "BF16":
                blob = _to_bf16_bytes(arr)
            else:
                blob = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1)
        outputs.append(entry)
    head = dumps({"model_name": name, "model_version": version, "id": req.id, "outputs": outputs})
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def error_body(message: str) -> bytes:
    return dumps({"error": message})
