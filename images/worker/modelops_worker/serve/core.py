"""The protocol-agnostic serving core: named numpy tensors in, named numpy tensors out, batched.

Every front (the OIP v2 REST server in `server.py`, the gRPC server beside it) decodes its wire format
into numpy arrays and calls the same `InferenceCore`, so checks, batching, metrics of forward passes
and the outputs are the same whichever protocol a client speaks.

Contract for a front:

- `core.signature` (`modelops.api.signature.ModelSignature`) is what the model takes and gives;
  `core.metadata(name, version)` is the OIP v2 model metadata (a dict, JSON-ready), `core.platform`.
- `core.check(tensors)` takes the request's tensors (`protocol.Tensor(name, datatype, array)`: array
  with the request's shape and the numpy type of `protocol.NUMPY_DTYPES[datatype]`; BF16 as float32)
  and returns a `Prepared` request, or raises `protocol.ProtocolError` (its `.status` is 400 or 413:
  the client's mistake; gRPC maps 400 to INVALID_ARGUMENT, 413 to RESOURCE_EXHAUSTED).
- `await core.infer(prepared, requested_outputs)` returns `dict[name, np.ndarray]` in the order
  asked for (None: the model's default outputs; unknown names raise ProtocolError 400). It raises
  `batching.QueueFull` (HTTP 503 / gRPC UNAVAILABLE; retry), `batching.ShuttingDown` (same), or
  whatever the forward pass raised (a server error: HTTP 500 / gRPC INTERNAL).
- `core.output_datatype(name)` is the OIP datatype of an output (for the response's `datatype`).
- Shortcut: `await core.infer_arrays({name: array}, requested_outputs)` does both steps, taking each
  array's datatype from its numpy dtype.
- Counting requests by code is the front's job (`ServeMetrics.observe`, one counter for all fronts);
  the core records batch sizes and the queue.

Inputs are matched to the signature by name (a model with one input takes one tensor of any name, as
before), datatypes must be the declared ones, shapes must fit (-1 matches any size). Our classifiers
keep their old leniency: any numeric datatype converted to FP32, and `[features]` or `[n, h, w]` with
`h*w = features` read as `[n, features]`. Models whose inputs all have a dynamic first dim are
batched across requests (each input concatenated along dim 0); the others run one request per pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops.api.inferenceservice import Batching
from modelops.api.serveconfig import OUTPUT_CLASS, OUTPUT_LOGITS, OUTPUT_PROBABILITIES
from modelops.api.signature import ModelSignature, TensorSpec
from modelops_worker.serve.batching import Batcher
from modelops_worker.serve.model import LoadedModel
from modelops_worker.serve.protocol import NUMPY_DTYPES, ProtocolError, Tensor, datatype_of

Arrays = dict[str, np.ndarray[Any, Any]]

__all__ = ["InferenceCore", "Prepared", "ProtocolError", "Tensor"]


@dataclass
class Prepared:
    """A request checked against the signature: inputs by the model's names, `n` samples."""

    inputs: Arrays
    n: int


def _shape_text(spec: TensorSpec) -> str:
    return (
        "["
        + ", ".join("n" if i == 0 and d < 0 else ("*" if d < 0 else str(d)) for i, d in enumerate(spec.shape))
        + "]"
    )


class InferenceCore:
    """One loaded model behind a batcher; see the module docstring for the contract."""

    def __init__(
        self,
        model: LoadedModel,
        batching: Batching,
        *,
        inflight: Callable[[], int] = lambda: 0,
        on_batch: Callable[[int], None] = lambda n: None,
        on_queue: Callable[[int], None] = lambda n: None,
        thread_init: Callable[[], object] | None = None,
        forward_delay: float = 0.0,
    ) -> None:
        self.model = model
        self.signature: ModelSignature = model.signature
        self.batching = batching
        self._out_types = {o.name: o.datatype for o in model.signature.outputs}
        self._out_dtypes = {o.name: NUMPY_DTYPES[o.datatype] for o in model.signature.outputs}
        self._by_name = {t.name: t for t in model.signature.inputs}
        if model.classifier_logits:
            self.default_outputs: tuple[str, ...] = (OUTPUT_LOGITS, OUTPUT_CLASS)
        else:
            self.default_outputs = tuple(model.runtime_outputs)
        forward: Callable[[Arrays], Arrays] = model.run
        if forward_delay > 0:  # fault injection for tests: a slow model, without one

            def slow_forward(inputs: Arrays, _f: Any = model.run) -> Arrays:
                time.sleep(forward_delay)
                out: Arrays = _f(inputs)
                return out

            forward = slow_forward

        self.batcher = Batcher(
            forward,
            batching,
            inflight=inflight,
            on_batch=on_batch,
            on_queue=on_queue,
            thread_init=thread_init,
            batchable=model.batchable,
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the batcher (on the running event loop)."""
        self.batcher.start()

    async def close(self, timeout: float | None = None) -> None:
        await self.batcher.close(timeout)

    # --- metadata ----------------------------------------------------------------------------------

    @property
    def platform(self) -> str:
        return self.model.platform

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        sig = self.signature.model_dump(by_alias=True)
        return {
            "name": name,
            "versions": [version],
            "platform": self.platform,
            "inputs": sig["inputs"],
            "outputs": sig["outputs"],
        }

    def output_datatype(self, name: str) -> str:
        return self._out_types[name]

    @property
    def output_types(self) -> Mapping[str, str]:
        """Every output's OIP datatype, by name."""
        return self._out_types

    # --- checking ----------------------------------------------------------------------------------

    def check(self, tensors: Sequence[Tensor]) -> Prepared:
        """The request's tensors matched to the signature; raises ProtocolError naming the tensor."""
        specs = self.signature.inputs
        if len(specs) == 1:
            if len(tensors) != 1:
                raise ProtocolError(
                    f"inputs has {len(tensors)} tensors; this model takes exactly one "
                    f"({specs[0].name!r}, {specs[0].datatype} {_shape_text(specs[0])})"
                )
            pairs = [(specs[0], tensors[0], "inputs[0]")]
        else:
            given = {t.name: (i, t) for i, t in enumerate(tensors)}
            for i, t in enumerate(tensors):
                if t.name not in self._by_name:
                    raise ProtocolError(
                        f"inputs[{i}].name {t.name!r:.100} is not an input of this model; it takes "
                        + ", ".join(f"{s.name!r} ({s.datatype} {_shape_text(s)})" for s in specs)
                    )
            missing = [s.name for s in specs if s.name not in given]
            if missing:
                raise ProtocolError(
                    f"input {', '.join(map(repr, missing))} is missing; this model takes "
                    + ", ".join(f"{s.name!r} ({s.datatype} {_shape_text(s)})" for s in specs)
                )
            pairs = [(s, given[s.name][1], f"inputs[{given[s.name][0]}]") for s in specs]
        inputs: Arrays = {}
        n: int | None = None
        batchable = self.model.batchable
        for spec, t, where in pairs:
            arr = self._fit(spec, t, where)
            if batchable:
                rows = arr.shape[0]
                if rows == 0:
                    raise ProtocolError(f"{where}.shape {list(t.array.shape)} has no samples")
                if n is not None and rows != n:
                    raise ProtocolError(
                        f"{where} has {rows} samples (its first dim) but the other inputs have {n}; "
                        "every input needs the same batch size"
                    )
                n = rows
            inputs[spec.name] = arr
        n = n if n is not None else 1
        limit = self.batching.max_queue_size
        if n > limit:
            raise ProtocolError(
                f"the request has {n} samples, more than this server queues ({limit}, "
                "batching.maxQueueSize); split it",
                413,
            )
        return Prepared(inputs, n)

    def _fit(self, spec: TensorSpec, t: Tensor, where: str) -> np.ndarray[Any, Any]:
        arr = t.array
        features = self.model.features
        if features is not None:
            return self._fit_classifier(arr, t, where, features)
        if t.datatype != spec.datatype:
            raise ProtocolError(
                f"{where} ({t.name!r:.100}) has datatype {t.datatype}, but the model's input {spec.name!r} "
                f"is {spec.datatype}; send {spec.datatype}"
            )
        if len(arr.shape) != len(spec.shape) or any(
            d >= 0 and a != d for a, d in zip(arr.shape, spec.shape, strict=False)
        ):
            raise ProtocolError(
                f"{where}.shape {list(arr.shape)} does not fit the model's input {spec.name!r}: it takes "
                f"{spec.datatype} {_shape_text(spec)} (-1 in {spec.shape} is any size)"
            )
        return arr

    def _fit_classifier(
        self, arr: np.ndarray[Any, Any], t: Tensor, where: str, features: int
    ) -> np.ndarray[Any, Any]:
        if t.datatype == "BOOL":
            raise ProtocolError(f"{where}.datatype BOOL: this model takes numbers; send FP32")
        shape = arr.shape
        per_sample = 0 if not shape else shape[0] if len(shape) == 1 else math.prod(shape[1:])
        if per_sample != features:
            raise ProtocolError(
                f"{where}.shape {list(shape)} does not fit this model: it takes [n, {features}] "
                f"({features} features per sample)"
            )
        n = 1 if len(shape) == 1 else shape[0]
        out = arr.reshape(n, features)
        if out.dtype != np.float32:
            with np.errstate(over="ignore"):
                out = out.astype(np.float32)
            if not np.isfinite(out).all():
                raise ProtocolError(f"{where}.data holds values beyond float32's range")
        return out

    def outputs(self, requested: Sequence[str] | None) -> tuple[str, ...]:
        """The output names to answer with; raises ProtocolError for a name the model has not."""
        if requested is None:
            return self.default_outputs
        for i, name in enumerate(requested):
            if name not in self._out_types:
                raise ProtocolError(
                    f"outputs[{i}].name {name!r:.100} is not an output of this model; "
                    f"ask for {', '.join(self._out_types)}"
                )
        return tuple(requested)

    # --- inference ---------------------------------------------------------------------------------

    async def infer(self, prepared: Prepared, requested_outputs: Sequence[str] | None = None) -> Arrays:
        """The requested outputs of a checked request (see the module docstring for what it raises)."""
        names = self.outputs(requested_outputs)
        raw = await self.batcher.submit(prepared.inputs, prepared.n)
        return self._select(raw, names)

    async def infer_arrays(
        self, inputs: Mapping[str, np.ndarray[Any, Any]], requested_outputs: Sequence[str] | None = None
    ) -> Arrays:
        """`infer` of plain named arrays (datatypes from their numpy dtypes)."""
        tensors = []
        for name, arr in inputs.items():
            try:
                dt = datatype_of(arr.dtype)
            except ValueError as exc:
                raise ProtocolError(f"input {name!r}: {exc}") from None
            tensors.append(Tensor(name, dt, arr))
        return await self.infer(self.check(tensors), requested_outputs)

    def _select(self, raw: Mapping[str, np.ndarray[Any, Any]], names: Sequence[str]) -> Arrays:
        out: Arrays = {}
        logits = raw.get(self.model.classifier_logits) if self.model.classifier_logits else None
        for name in names:
            if name == OUTPUT_CLASS and logits is not None:
                arr: np.ndarray[Any, Any] = logits.argmax(axis=1).astype(np.int64)
            elif name == OUTPUT_PROBABILITIES and logits is not None:
                z = logits - logits.max(axis=1, keepdims=True)
                e = np.exp(z)
                arr = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            elif name in raw:
                arr = raw[name]
            else:
                raise RuntimeError(f"the model gave no output {name!r} (it gave {', '.join(raw)})")
            want = self._out_dtypes[name]
            if arr.dtype != want:
                arr = arr.astype(want)
            out[name] = arr
        return out
