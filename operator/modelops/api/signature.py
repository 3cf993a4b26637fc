"""A model's signature: the named, typed, shaped tensors it takes and gives.

Shared by the registry (declared in `ModelVersion.spec.signature`, recorded in `status.signature` by
verification), the serving contract (`ServeConfig.signature`, what `GET /v2/models/{name}` answers) and
the worker that reads it from an ONNX graph or checks it with a smoke inference. One definition, so the
three cannot drift. No torch here: the operator imports this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from modelops.api.common import PRINTABLE_PATTERN, ApiModel

# The Open Inference Protocol v2 tensor datatypes (BYTES is for strings and raw bytes).
Datatype = Literal[
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
    "BYTES",
]
MAX_RANK = 16
# Tensor names are the list keys: two inputs (or two outputs) of one name could not be told apart.
_BY_NAME: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
DATATYPES: tuple[str, ...] = Datatype.__args__  # type: ignore[attr-defined]


class TensorSpec(ApiModel):
    """One named tensor of a signature."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=PRINTABLE_PATTERN,
        description="Tensor name as the protocol uses it.",
    )
    datatype: Datatype = Field(description="Open Inference Protocol v2 datatype, e.g. FP32, INT64, BOOL.")
    shape: list[Annotated[int, Field(ge=-1, le=2**31 - 1)]] = Field(
        max_length=MAX_RANK,
        description="Shape; -1 marks a dynamic dimension (the first is usually the batch, -1).",
    )


class ModelSignature(ApiModel):
    """The inputs and outputs of a model, in order."""

    inputs: list[TensorSpec] = Field(
        min_length=1, max_length=64, description="Input tensors, in order.", json_schema_extra=_BY_NAME
    )
    outputs: list[TensorSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Output tensors, in order.",
        json_schema_extra=_BY_NAME,
    )
