"""The Open Inference Protocol (v2) on the wire: parse and check an infer request, build the response.

Pure functions over bytes, dicts and numpy arrays, no HTTP and no torch, so every refusal a client can
meet is tested without a server. Every refusal is a `ProtocolError` whose message names the field and
says what to send instead; the server turns it into `{"error": ...}` with its HTTP status.

Both encodings of the protocol are accepted: tensors as JSON (`data` flat in row-major order, or nested
as the shape says) and the binary tensor data extension (`Inference-Header-Content-Length`, raw
little-endian tensors after the JSON header), which is what KServe's and Triton's clients send when
asked for `binary_data`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelops.api.serveconfig import OUTPUT_CLASS, OUTPUT_LOGITS, OUTPUT_PROBABILITIES

try:  # orjson is several times faster on both sides of a request; the stdlib is the fallback.
    import orjson

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - orjson is in the worker extra

    def loads(data: bytes) -> Any:
        return json.loads(data)

    def _default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), default=_default).encode()


HEADER_LENGTH = "Inference-Header-Content-Length"

# The protocol's tensor datatypes this server takes as model input, with their numpy types.
INPUT_DATATYPES: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}
KNOWN_DATATYPES = frozenset({*INPUT_DATATYPES, "BOOL", "BYTES", "BF16"})

# What a request that names no outputs gets; probabilities only when asked for.
DEFAULT_OUTPUTS = (OUTPUT_LOGITS, OUTPUT_CLASS)
OUTPUT_DATATYPES = {OUTPUT_LOGITS: "FP32", OUTPUT_PROBABILITIES: "FP32", OUTPUT_CLASS: "INT64"}


class ProtocolError(Exception):
    """A request the protocol or the model cannot take; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ModelSignature:
    """What the served model takes and gives: `features` values per sample, `classes` logits."""

    features: int
    classes: int
    input_name: str = "input"

    def metadata(self, name: str, version: str, platform: str) -> dict[str, Any]:
        return {
            "name": name,
            "versions": [version],
            "platform": platform,
            "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, self.features]}],
            "outputs": [
                {"name": OUTPUT_LOGITS, "datatype": "FP32", "shape": [-1, self.classes]},
                {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, self.classes]},
                {"name": OUTPUT_CLASS, "datatype": "INT64", "shape": [-1]},
            ],
        }


@dataclass
class InferRequest:
    """A checked request: `batch` is float32 of shape (samples, features)."""

    id: str
    batch: np.ndarray[Any, np.dtype[np.float32]]
    outputs: tuple[str, ...]
    binary_outputs: frozenset[str] = field(default_factory=frozenset)


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise ProtocolError(f"{where}.shape must be a non-empty list of sizes, e.g. [1, 64]; got {raw!r}")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise ProtocolError(f"{where}.shape must hold non-negative integers; got {raw!r}")
    return tuple(raw)


def _binary_flag(params: Any) -> bool:
    return isinstance(params, Mapping) and params.get("binary_data") is True


def parse_infer(body: bytes, header_length: int | None, signature: ModelSignature) -> InferRequest:
    """Check an infer request's body against the protocol and the model; raises ProtocolError."""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise ProtocolError(
                f"{HEADER_LENGTH}={header_length} does not fit a body of {len(body)} bytes; it must be the "
                "length of the JSON header that starts the body"
            )
        head, rest = body[:header_length], memoryview(body)[header_length:]
    else:
        head, rest = body, memoryview(b"")
    try:
        req = loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(req, dict):
        raise ProtocolError("the request body must be a JSON object with an `inputs` list")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError(f"id must be a string; got {type(rid).__name__}")
    if "parameters" in req and not isinstance(req["parameters"], dict | None):
        raise ProtocolError("parameters must be an object")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(
            "inputs is missing or empty: send one tensor, e.g. "
            f'{{"name": "{signature.input_name}", "shape": [1, {signature.features}], '
            '"datatype": "FP32", "data": [...]}'
        )
    if len(inputs) != 1:
        raise ProtocolError(f"inputs has {len(inputs)} tensors; this model takes exactly one")
    batch = _tensor(inputs[0], "inputs[0]", rest, signature)
    outputs, binary = _outputs(req, signature)
    return InferRequest(
        id=rid if rid is not None else str(uuid.uuid4()), batch=batch, outputs=outputs, binary_outputs=binary
    )


def _tensor(
    t: Any, where: str, binary: memoryview, signature: ModelSignature
) -> np.ndarray[Any, np.dtype[np.float32]]:
    if not isinstance(t, dict):
        raise ProtocolError(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype"):
        if key not in t:
            raise ProtocolError(f"{where}.{key} is missing; a tensor needs name, shape, datatype and data")
    if not isinstance(t["name"], str):
        raise ProtocolError(f"{where}.name must be a string")
    shape = _shape(t["shape"], where)
    dt = t["datatype"]
    if dt not in INPUT_DATATYPES:
        known = "a protocol datatype" if dt in KNOWN_DATATYPES else "not a protocol datatype"
        raise ProtocolError(
            f"{where}.datatype {dt!r} is {known} this model cannot take; send FP32 (or FP16/FP64/INT*/UINT*)"
        )
    dtype = INPUT_DATATYPES[dt]
    count = math.prod(shape)
    params = t.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise ProtocolError(f"{where}.parameters must be an object")
    size = params.get("binary_data_size") if params else None
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or size > len(binary):
            raise ProtocolError(
                f"{where}.parameters.binary_data_size={size!r} must be {count * dtype.itemsize} "
                f"({count} {dt} values) and fit the {len(binary)} bytes after the JSON header"
            )
        if size != len(binary):
            raise ProtocolError(
                f"{len(binary) - size} bytes follow the tensor's binary data; send one tensor"
            )
        arr: np.ndarray[Any, Any] = np.frombuffer(binary, dtype=dtype)
    else:
        if "data" not in t:
            raise ProtocolError(f"{where}.data is missing; send the values flat or nested as the shape says")
        arr = _from_json(t["data"], where, dt, dtype)
        if arr.size != count:
            raise ProtocolError(f"{where}.data has {arr.size} values but shape {list(shape)} needs {count}")
    # [n, features] is the model's shape; [features] (one sample) and [n, h, w] (digits as 8x8 images)
    # hold the same values in the same order.
    per_sample = shape[0] if len(shape) == 1 else math.prod(shape[1:])
    if per_sample != signature.features:
        raise ProtocolError(
            f"{where}.shape {list(shape)} does not fit this model: it takes [n, {signature.features}] "
            f"({signature.features} features per sample)"
        )
    n = 1 if len(shape) == 1 else shape[0]
    if n == 0:
        raise ProtocolError(f"{where}.shape {list(shape)} has no samples")
    out = arr.reshape(n, signature.features)
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    if not np.isfinite(out).all():
        raise ProtocolError(f"{where}.data holds NaN, infinite or values beyond float32's range")
    return out


def _from_json(data: Any, where: str, dt: str, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    if not isinstance(data, list):
        raise ProtocolError(f"{where}.data must be a list (flat or nested); got {type(data).__name__}")
    if dtype.kind == "f" and data and not isinstance(data[0], bool):
        # The common case, straight to float32 in C; anything odd takes the careful path below for its
        # message (JSON booleans deep inside a float tensor are read as 0 and 1, as numpy does).
        try:
            with np.errstate(over="ignore"):  # overflow becomes inf, refused below with its reason
                return np.array(data, dtype=np.float32)
        except (ValueError, TypeError):
            pass
    try:
        arr = np.asarray(data)
    except ValueError:
        raise ProtocolError(f"{where}.data is ragged: nested lists must all have the same length") from None
    kind = arr.dtype.kind
    if kind == "b" or kind not in "iuf":
        what = "booleans" if kind == "b" else "non-numbers (strings, nulls or ragged lists)"
        raise ProtocolError(f"{where}.data holds {what}; datatype {dt} needs numbers")
    if dtype.kind in "iu" and kind == "f":
        raise ProtocolError(f"{where}.data holds fractional numbers but datatype is {dt}; send FP32")
    if dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise ProtocolError(f"{where}.data has values outside the range of {dt}")
    return arr


def _outputs(req: dict[str, Any], signature: ModelSignature) -> tuple[tuple[str, ...], frozenset[str]]:
    raw = req.get("outputs")
    all_binary = _binary_flag({"binary_data": (req.get("parameters") or {}).get("binary_data_output")})
    if raw is None or raw == []:
        names = DEFAULT_OUTPUTS
        return names, frozenset(names) if all_binary else frozenset()
    if not isinstance(raw, list):
        raise ProtocolError("outputs must be a list of {name} objects")
    names_l: list[str] = []
    binary: set[str] = set()
    for i, o in enumerate(raw):
        name = o.get("name") if isinstance(o, dict) else None
        if name not in OUTPUT_DATATYPES:
            raise ProtocolError(
                f"outputs[{i}].name {name!r} is not an output of this model; "
                f"ask for {', '.join(OUTPUT_DATATYPES)}"
            )
        names_l.append(name)
        if all_binary or _binary_flag(o.get("parameters")):
            binary.add(name)
    return tuple(dict.fromkeys(names_l)), frozenset(binary)


def output_tensors(
    logits: np.ndarray[Any, np.dtype[np.float32]], names: Sequence[str]
) -> dict[str, np.ndarray[Any, Any]]:
    """The named outputs of one request from its rows of logits."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name in names:
        if name == OUTPUT_LOGITS:
            out[name] = logits
        elif name == OUTPUT_CLASS:
            out[name] = logits.argmax(axis=1).astype(np.int64)
        else:
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            out[name] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def encode_response(
    name: str, version: str, req: InferRequest, tensors: Mapping[str, np.ndarray[Any, Any]]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for oname, arr in tensors.items():
        entry: dict[str, Any] = {"name": oname, "shape": list(arr.shape), "datatype": OUTPUT_DATATYPES[oname]}
        if oname in req.binary_outputs:
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
