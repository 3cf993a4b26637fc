"""OIP v2 tensors over gRPC: a `ModelInferRequest`'s inputs as numpy arrays, and arrays as outputs.

Pure functions over the generated messages and numpy, no server, so every refusal a gRPC client can
meet is tested without one. A tensor comes either typed (`contents`, one repeated field per family of
datatypes) or raw (`raw_input_contents[i]`, little-endian, row-major, what KServe's and Triton's
clients send for `set_data_from_numpy`); a request uses one way for all its inputs. The answer
mirrors the request: raw outputs for a raw request (FP16/BF16 outputs are always raw, the typed form
has no field for them), typed otherwise. Refusals are `TensorError`s whose message names the field
and says what to send instead; the server answers them with INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb
from modelops_worker.serve.protocol import NUMPY_DTYPES, WIRE_ITEMSIZE, Tensor

# The typed-contents field of each datatype; FP16 and BF16 have none (raw only), BYTES is not a
# numeric tensor and no model here takes it.
CONTENTS_FIELD: dict[str, str | None] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP16": None,
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BF16": None,
}
assert set(CONTENTS_FIELD) == set(NUMPY_DTYPES)


class TensorError(Exception):
    """A tensor the protocol cannot carry; the message names the field and the fix."""


def _shape(raw: Sequence[int], where: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in raw)
    if not shape or any(d < 0 for d in shape):
        raise TensorError(
            f"{where}.shape must be a non-empty list of non-negative sizes, e.g. [1, 64]; got {list(shape)}"
        )
    return shape


def decode_inputs(req: pb.ModelInferRequest) -> list[Tensor]:
    """The request's input tensors as numpy arrays (`protocol.Tensor`, as REST decodes them: BF16 as
    float32, float values finite); raises TensorError."""
    if not req.inputs:
        raise TensorError("inputs is empty: send at least one tensor (name, datatype, shape, and contents)")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise TensorError(
            f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs; send one per input, "
            "in the order of inputs"
        )
    out: list[Tensor] = []
    seen: set[str] = set()
    for i, t in enumerate(req.inputs):
        where = f"inputs[{i}]"
        if not t.name:
            raise TensorError(f"{where}.name is empty; name the tensor as the model metadata does")
        if t.name in seen:
            raise TensorError(f"{where}.name {t.name!r:.100} is given twice; send each input once")
        seen.add(t.name)
        shape = _shape(t.shape, where)
        if t.datatype not in NUMPY_DTYPES:
            what = (
                "a protocol datatype no model here takes" if t.datatype == "BYTES" else "not an OIP datatype"
            )
            raise TensorError(
                f"{where}.datatype {t.datatype!r:.50} is {what}; send one of {', '.join(NUMPY_DTYPES)}"
            )
        count = math.prod(shape)
        if raw:
            if t.HasField("contents"):
                raise TensorError(
                    f"{where} has contents while the request uses raw_input_contents; use one or the other"
                )
            arr = _from_raw(raw[i], t.datatype, count, where, i)
        else:
            arr = _typed(t, where, count)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise TensorError(f"{where} holds NaN or infinite values; {t.datatype} inputs must be finite")
        out.append(Tensor(t.name, t.datatype, arr.reshape(shape)))
    return out


def _from_raw(blob: bytes, dt: str, count: int, where: str, i: int) -> np.ndarray[Any, Any]:
    size = WIRE_ITEMSIZE[dt]
    if len(blob) != count * size:
        raise TensorError(
            f"raw_input_contents[{i}] has {len(blob)} bytes, but {where} ({dt}, {count} values) needs "
            f"{count * size}"
        )
    if dt == "BF16":  # the upper half of a float32
        return (np.frombuffer(blob, dtype="<u2").astype("<u4") << 16).view("<f4")
    if dt == "BOOL":
        arr = np.frombuffer(blob, dtype="u1")
        if arr.size and arr.max() > 1:
            raise TensorError(f"raw_input_contents[{i}]: BOOL values must be bytes 0 or 1")
        return arr.view("?")
    return np.frombuffer(blob, dtype=NUMPY_DTYPES[dt])


def _typed(t: pb.ModelInferRequest.InferInputTensor, where: str, count: int) -> np.ndarray[Any, Any]:
    dtype, field = NUMPY_DTYPES[t.datatype], CONTENTS_FIELD[t.datatype]
    if field is None:
        raise TensorError(
            f"{where} is {t.datatype}, which has no typed contents field; send it in raw_input_contents"
        )
    values = getattr(t.contents, field)
    present = [f.name for f, _ in t.contents.ListFields()]
    if present and present != [field]:
        raise TensorError(f"{where}.contents has {', '.join(present)}; a {t.datatype} tensor goes in {field}")
    if len(values) != count:
        raise TensorError(
            f"{where}.contents.{field} has {len(values)} values but shape {list(t.shape)} needs {count}"
        )
    if dtype.kind in "iu" and dtype.itemsize < 4 and count:
        wide = np.fromiter(values, dtype=np.int64, count=count)
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise TensorError(f"{where}.contents.{field} has values outside the range of {t.datatype}")
        return wide.astype(dtype)
    return np.fromiter(values, dtype=dtype.newbyteorder("="), count=count)


def requested_outputs(req: pb.ModelInferRequest) -> tuple[str, ...]:
    """The outputs a request names, in order, each once (empty: the model's defaults)."""
    names: list[str] = []
    for i, o in enumerate(req.outputs):
        if not o.name:
            raise TensorError(f"outputs[{i}].name is empty; name an output of the model metadata")
        names.append(o.name)
    return tuple(dict.fromkeys(names))


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str,
    outputs: Mapping[str, np.ndarray[Any, Any]],
    datatypes: Mapping[str, str],
    raw: bool,
) -> pb.ModelInferResponse:
    """The response message: raw outputs when `raw` or when an output's datatype has no typed field
    (the protocol puts all outputs one way or the other)."""
    resp = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    raw = raw or any(CONTENTS_FIELD[datatypes[n]] is None for n in outputs)
    for name, arr in outputs.items():
        dt = datatypes[name]
        tensor = resp.outputs.add(name=name, datatype=dt, shape=arr.shape)
        if raw:
            resp.raw_output_contents.append(_raw_bytes(arr, dt))
        else:
            flat = np.ascontiguousarray(arr, dtype=NUMPY_DTYPES[dt]).reshape(-1)
            getattr(tensor.contents, CONTENTS_FIELD[dt]).extend(flat.tolist())  # type: ignore[arg-type]
    return resp


def _raw_bytes(arr: np.ndarray[Any, Any], dt: str) -> bytes:
    if dt == "BF16":  # round to nearest even, as torch casts float32 to bfloat16
        bits = np.ascontiguousarray(arr, dtype="<f4").view("<u4").astype(np.uint64)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(arr, dtype=NUMPY_DTYPES[dt]).tobytes()


def parameter_value(p: pb.InferParameter) -> Any:
    """The Python value of an InferParameter (None when unset)."""
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)
