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
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb

# OIP datatype -> (numpy dtype of the raw bytes, InferTensorContents field of the typed form or None).
DATATYPES: dict[str, tuple[np.dtype[Any], str | None]] = {
    "BOOL": (np.dtype("?"), "bool_contents"),
    "UINT8": (np.dtype("u1"), "uint_contents"),
    "UINT16": (np.dtype("<u2"), "uint_contents"),
    "UINT32": (np.dtype("<u4"), "uint_contents"),
    "UINT64": (np.dtype("<u8"), "uint64_contents"),
    "INT8": (np.dtype("i1"), "int_contents"),
    "INT16": (np.dtype("<i2"), "int_contents"),
    "INT32": (np.dtype("<i4"), "int_contents"),
    "INT64": (np.dtype("<i8"), "int64_contents"),
    "FP16": (np.dtype("<f2"), None),
    "FP32": (np.dtype("<f4"), "fp32_contents"),
    "FP64": (np.dtype("<f8"), "fp64_contents"),
}
# Known to the protocol, not numeric tensors a model here takes.
OTHER_DATATYPES = frozenset({"BYTES", "BF16"})

_BY_NUMPY = {
    np.dtype(dt).newbyteorder("=") if dt.itemsize > 1 else dt: name for name, (dt, _) in DATATYPES.items()
}


class TensorError(Exception):
    """A tensor the protocol or the model cannot take; the message names the field and the fix."""


@dataclass(frozen=True)
class Input:
    """One decoded input tensor: `array` has `shape` and the numpy type of `datatype`."""

    name: str
    datatype: str
    array: np.ndarray[Any, Any]


def datatype_of(arr: np.ndarray[Any, Any]) -> str:
    """The OIP datatype name of a numpy array's element type."""
    dt = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        raise TypeError(f"no OIP datatype for numpy {arr.dtype}") from None


def _shape(raw: Sequence[int], where: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in raw)
    if not shape or any(d < 0 for d in shape):
        raise TensorError(
            f"{where}.shape must be a non-empty list of non-negative sizes, e.g. [1, 64]; got {list(shape)}"
        )
    return shape


def decode_inputs(req: pb.ModelInferRequest, max_elements: int | None = None) -> list[Input]:
    """The request's input tensors as numpy arrays; raises TensorError."""
    if not req.inputs:
        raise TensorError("inputs is empty: send at least one tensor (name, datatype, shape, and contents)")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise TensorError(
            f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs; send one per input, "
            "in the order of inputs"
        )
    out: list[Input] = []
    seen: set[str] = set()
    for i, t in enumerate(req.inputs):
        where = f"inputs[{i}]"
        if not t.name:
            raise TensorError(f"{where}.name is empty; name the tensor as the model metadata does")
        if t.name in seen:
            raise TensorError(f"{where}.name {t.name!r} appears twice; send each input once")
        seen.add(t.name)
        shape = _shape(t.shape, where)
        if t.datatype not in DATATYPES:
            what = (
                "not a tensor datatype this server takes"
                if t.datatype in OTHER_DATATYPES
                else "not an OIP datatype"
            )
            raise TensorError(
                f"{where}.datatype {t.datatype!r} is {what}; send one of {', '.join(DATATYPES)}"
            )
        dtype, field = DATATYPES[t.datatype]
        count = math.prod(shape)
        if max_elements is not None and count > max_elements:
            raise TensorError(f"{where}.shape {list(shape)} has {count} elements, more than {max_elements}")
        if raw:
            if t.HasField("contents"):
                raise TensorError(
                    f"{where} has contents while the request uses raw_input_contents; use one or the other"
                )
            blob = raw[i]
            if len(blob) != count * dtype.itemsize:
                raise TensorError(
                    f"raw_input_contents[{i}] has {len(blob)} bytes, but {where} ({t.datatype}, shape "
                    f"{list(shape)}) needs {count * dtype.itemsize}"
                )
            arr: np.ndarray[Any, Any] = np.frombuffer(blob, dtype=dtype)
        else:
            arr = _typed(t, where, dtype, field, count)
        out.append(Input(t.name, t.datatype, arr.reshape(shape)))
    return out


def _typed(
    t: pb.ModelInferRequest.InferInputTensor, where: str, dtype: np.dtype[Any], field: str | None, count: int
) -> np.ndarray[Any, Any]:
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
        wide = np.fromiter(values, dtype=np.int64 if dtype.kind == "i" else np.uint64, count=count)
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
    raw: bool,
    datatypes: Mapping[str, str] | None = None,
) -> pb.ModelInferResponse:
    """The response message: raw outputs when `raw` (or when a datatype has no typed field)."""
    resp = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    arrays = list(outputs.items())
    raw = raw or any(DATATYPES[(datatypes or {}).get(n) or datatype_of(a)][1] is None for n, a in arrays)
    for name, arr in arrays:
        dt = (datatypes or {}).get(name) or datatype_of(arr)
        dtype, field = DATATYPES[dt]
        tensor = resp.outputs.add(name=name, datatype=dt, shape=arr.shape)
        flat = np.ascontiguousarray(arr, dtype=dtype)
        if raw:
            resp.raw_output_contents.append(flat.tobytes())
        else:
            getattr(tensor.contents, field).extend(flat.reshape(-1).tolist())  # type: ignore[arg-type]
    return resp


def parameter_value(p: pb.InferParameter) -> Any:
    """The Python value of an InferParameter (None when unset)."""
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)
