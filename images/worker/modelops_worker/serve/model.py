"""The served model: verified before it is loaded, run by the runtime its format needs, warmed up.

Runtimes by format (docs/serving.md has the table):

- `torchscript`, `state_dict`: PyTorch. Any number of named inputs and outputs of every numeric
  datatype and BOOL, any rank; a module returning a tensor, a tuple or a dict maps to the signature's
  outputs (by position, or by key). The signature comes from `ServeConfig.signature` (what
  verification recorded) or from the description our own export writes into the artifact. Our
  classifiers (their description has `numClasses`) keep the conveniences `probabilities` and
  `predicted_class`, derived from `logits` per request.
- `onnx`: ONNX Runtime; the signature is read from the graph (dynamic dims are -1), CUDA execution
  provider first when the model is placed on a GPU.

The sha256 is checked on the bytes that are then loaded (read once), so a file replaced between the
check and the load cannot slip through. int8 dynamic quantization rebuilds the eager model from the
artifact's own description (TorchScript modules cannot be quantized eagerly) and swaps its Linear
layers for int8 ones. Device and precision: `select_placement` decides (pure, tested with CUDA
availability faked); fp16/bf16 casts happen on a GPU only, and the log and the model metadata say what
happened on a CPU.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelops.api.runconfig import EXIT_BAD_CONFIG, EXIT_BAD_DATA
from modelops.api.serveconfig import (
    OUTPUT_CLASS,
    OUTPUT_LOGITS,
    OUTPUT_PROBABILITIES,
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
    REASON_DEVICE_UNAVAILABLE,
    ServeConfig,
)
from modelops.api.signature import ModelSignature, TensorSpec
from modelops.api.trainingjob import ModelSpec
from modelops_worker import export, models
from modelops_worker.errors import WorkerError
from modelops_worker.serve.protocol import NUMPY_DTYPES, datatype_of

log = logging.getLogger("modelops_worker.serve")

Arrays = dict[str, np.ndarray[Any, Any]]

# Outputs our classifiers get for free, computed from `logits` per request.
DERIVED_OUTPUTS = frozenset({OUTPUT_PROBABILITIES, OUTPUT_CLASS})

TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "UINT16": torch.uint16,
    "UINT32": torch.uint32,
    "UINT64": torch.uint64,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "FP32": torch.float32,
    "FP64": torch.float64,
    "BF16": torch.bfloat16,
}
_DATATYPE_OF_TORCH = {v: k for k, v in TORCH_DTYPES.items()}

# ONNX Runtime's type strings.
ONNX_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    return NUMPY_DTYPES[datatype]


# --- device and precision -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the model runs and in which precision, and what to tell the operator about it."""

    device: str  # "cpu" or "cuda"
    precision: str  # the precision actually used: fp32 on a CPU whatever was asked
    note: str = ""


def select_placement(device: str, precision: str, cuda_available: bool) -> Placement:
    """`ServeConfig.device`/`precision` against what the pod has. Raises WorkerError (exit 64) when a
    GPU was asked for explicitly and none is visible: serving on the CPU instead would be the lie of a
    GPU InferenceService whose model never leaves the CPU."""
    if device == "cuda" and not cuda_available:
        raise WorkerError(
            REASON_DEVICE_UNAVAILABLE,
            "device is cuda but no CUDA device is visible to this process (torch.cuda.is_available() is "
            "False): check the pod's nvidia.com/gpu limit, the node's driver and that the image is the "
            "CUDA variant, or set device: auto",
            EXIT_BAD_CONFIG,
        )
    on_gpu = device == "cuda" or (device == "auto" and cuda_available)
    if on_gpu:
        return Placement("cuda", precision, f"on cuda in {precision}")
    if precision != "fp32":
        return Placement(
            "cpu",
            "fp32",
            f"precision {precision} was asked for, but the model runs on the CPU, where it computes in fp32 "
            "(fp16/bf16 casts only take effect on a GPU)",
        )
    return Placement("cpu", "fp32", "on cpu in fp32")


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


# --- runtimes -------------------------------------------------------------------------------------


class TorchRuntime:
    """A PyTorch module behind named numpy inputs and outputs."""

    def __init__(
        self,
        module: nn.Module,
        inputs: list[TensorSpec],
        outputs: list[str],
        placement: Placement,
    ) -> None:
        self.module = module
        self.input_names = [t.name for t in inputs]
        self.output_names = outputs
        self.device = torch.device(placement.device)
        self.float_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(placement.precision)
        if self.device.type != "cpu" or self.float_dtype is not None:
            self.module = self.module.to(self.device)
            if self.float_dtype is not None:
                self.module = self.module.to(self.float_dtype)

    def _tensor(self, arr: np.ndarray[Any, Any]) -> torch.Tensor:
        if not arr.flags.writeable:  # a binary tensor read straight from the request's bytes
            arr = arr.copy()
        t = torch.from_numpy(arr)
        if self.device.type != "cpu":
            t = t.to(self.device, non_blocking=True)
        if self.float_dtype is not None and t.is_floating_point():
            t = t.to(self.float_dtype)
        return t

    def run(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        args = [self._tensor(inputs[n]) for n in self.input_names]
        with torch.inference_mode():
            out = self.module(*args)
        return self._name_outputs(out)

    def _name_outputs(self, out: Any) -> Arrays:
        if isinstance(out, torch.Tensor):
            items: list[tuple[str, Any]] = [(self.output_names[0] if self.output_names else "output", out)]
        elif isinstance(out, tuple | list):
            if len(out) != len(self.output_names):
                raise ValueError(
                    f"the model returned {len(out)} tensors but its signature names "
                    f"{len(self.output_names)} outputs ({', '.join(self.output_names)})"
                )
            items = list(zip(self.output_names, out, strict=True))
        elif isinstance(out, dict):
            items = [(str(k), v) for k, v in out.items()]
        else:
            raise ValueError(f"the model returned a {type(out).__name__}; want a tensor, tuple or dict")
        result: Arrays = {}
        for name, t in items:
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"output {name!r} is a {type(t).__name__}, not a tensor")
            t = t.detach()
            if t.dtype == torch.bfloat16:
                t = t.float()
            result[name] = t.cpu().numpy()
        return result


class OnnxRuntime:
    """An ONNX Runtime session behind named numpy inputs and outputs."""

    def __init__(self, data: bytes, placement: Placement, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only; its warnings about providers are ours to report
        providers = onnx_providers(placement, ort.get_available_providers())
        self.session = ort.InferenceSession(data, sess_options=opts, providers=providers)
        self.providers = self.session.get_providers()
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.signature = onnx_signature(self.session)

    def run(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        feed = {t.name: inputs[t.name] for t in self.signature.inputs}
        outs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outs, strict=True))


def onnx_providers(placement: Placement, available: list[str]) -> list[str]:
    """ONNX Runtime's execution providers for a placement: CUDA first on a GPU, the CPU always."""
    if placement.device != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise WorkerError(
            REASON_DEVICE_UNAVAILABLE,
            "the model is placed on cuda but this onnxruntime has no CUDAExecutionProvider "
            f"(it has {', '.join(available)}): install onnxruntime-gpu in the CUDA image",
            EXIT_BAD_CONFIG,
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _dims(shape: Any) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [])]


def onnx_signature(session: Any) -> ModelSignature:
    """The signature of an ONNX Runtime session's graph (symbolic or unknown dims are -1)."""

    def spec(node: Any) -> TensorSpec:
        dt = ONNX_DATATYPES.get(node.type)
        if dt is None:
            raise ValueError(f"tensor {node.name!r} has type {node.type}, which the protocol cannot carry")
        return TensorSpec(name=node.name, datatype=dt, shape=_dims(node.shape))

    return ModelSignature(
        inputs=[spec(i) for i in session.get_inputs()], outputs=[spec(o) for o in session.get_outputs()]
    )


# --- the loaded model -----------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready to serve: `run` maps named numpy inputs to the runtime's named outputs.

    `signature` is what the model takes and gives (what metadata answers; outputs include derived
    ones); `runtime_outputs` the names the runtime itself produces; `classifier_logits` names the
    output `probabilities`/`predicted_class` are derived from (our classifiers only).
    """

    runtime: Any  # TorchRuntime | OnnxRuntime: `run(inputs) -> outputs`
    signature: ModelSignature
    sha256: str
    format: str
    quantized: bool = False
    placement: Placement = field(default_factory=lambda: Placement("cpu", "fp32"))
    classifier_logits: str | None = None
    features: int | None = None  # our classifiers: values per sample (legacy input shapes)

    @property
    def platform(self) -> str:
        return {"torchscript": "pytorch_torchscript", "onnx": "onnxruntime_onnx"}.get(
            self.format, "pytorch_state_dict"
        )

    @property
    def runtime_outputs(self) -> list[str]:
        return [o.name for o in self.signature.outputs if o.name not in self.derived]

    @property
    def derived(self) -> frozenset[str]:
        return DERIVED_OUTPUTS if self.classifier_logits else frozenset()

    @property
    def batchable(self) -> bool:
        """Requests can share a pass: every input's first dim is dynamic (the batch), and so is every
        output's (else a pass's outputs could not be split back into the requests)."""
        return all(t.shape[:1] == [-1] for t in self.signature.inputs) and all(
            t.shape[:1] == [-1] for t in self.signature.outputs if t.name not in self.derived
        )

    def run(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        out: Arrays = self.runtime.run(inputs)
        return out

    # The classifier's old entry point: float32 (n, features) -> logits (n, classes).
    def forward(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        name = self.signature.inputs[0].name
        return self.run({name: batch})[self.classifier_logits or self.runtime_outputs[0]]


def _digest(expected: str) -> str:
    return expected.lower().removeprefix("sha256:")


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The artifact's bytes, only if their sha256 is the one the ModelVersion verified."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WorkerError(
            REASON_ARTIFACT_NOT_FOUND,
            f"artifact {path} does not exist; check the ModelVersion's artifact and the pod's volume",
            EXIT_BAD_DATA,
        ) from None
    except IsADirectoryError:
        raise WorkerError(
            REASON_ARTIFACT_NOT_FOUND, f"artifact {path} is a directory, not a model file", EXIT_BAD_DATA
        ) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != _digest(expected_sha256):
        raise WorkerError(
            REASON_ARTIFACT_DIGEST_MISMATCH,
            f"sha256 of {path} is {actual}, but the ModelVersion verified {_digest(expected_sha256)}: "
            "the artifact changed or is partial; refusing to serve it",
            EXIT_BAD_DATA,
        )
    return data


def _eager_from_description(state: dict[str, torch.Tensor], desc: dict[str, Any]) -> nn.Module:
    spec = ModelSpec.model_validate(desc["spec"])
    n = int(desc["numFeatures"])
    shape = desc.get("imageShape")
    model = models.build(
        spec,
        n,
        int(desc["numClasses"]),
        torch.zeros(n),
        torch.ones(n),
        (int(shape[0]), int(shape[1])) if shape else None,
    )
    model.load_state_dict(state)
    return model.eval()


def quantize_int8(module: nn.Module, desc: dict[str, Any]) -> nn.Module:
    """Dynamic int8 quantization of every Linear layer (CPU)."""
    if isinstance(module, torch.jit.ScriptModule):
        if "spec" not in desc:
            raise ValueError("int8 quantization needs our model description (spec); this artifact has none")
        module = _eager_from_description(dict(module.state_dict()), desc)
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which the worker does not ship;
        # quantize_dynamic is still the one CPU int8 path in torch itself.
        warnings.simplefilter("ignore")
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            module, {nn.Linear}, dtype=torch.qint8
        )
    return quantized.eval()


def classifier_signature(features: int, classes: int) -> ModelSignature:
    """The signature of our classifiers: one FP32 input, logits and the two conveniences."""
    return ModelSignature.model_validate(export.classifier_signature(features, classes))


def described_signature(desc: Mapping[str, Any]) -> ModelSignature | None:
    """The signature an artifact's own description gives: written by our export, or derived from the
    classifier's numFeatures/numClasses (artifacts exported before signatures were recorded)."""
    if isinstance(desc.get("signature"), dict):
        return ModelSignature.model_validate(desc["signature"])
    features, classes = int(desc.get("numFeatures") or 0), int(desc.get("numClasses") or 0)
    if features > 0 and classes > 0:
        return classifier_signature(features, classes)
    return None


def load_torch_bytes(data: bytes, fmt: str) -> tuple[nn.Module, dict[str, Any]]:
    """The module and its description from the verified bytes, without writing a copy anywhere (the
    root filesystem is read-only, and models can be large)."""
    if fmt == "torchscript":
        extra = {export.DESCRIPTION: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(data), map_location="cpu", _extra_files=extra
            )
        desc = json.loads(extra[export.DESCRIPTION] or "{}")
    else:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        desc = json.loads(blob["description"])
        module = _eager_from_description(blob["stateDict"], desc)
    return module.eval(), desc


def build(
    data: bytes,
    fmt: str,
    declared: ModelSignature | None,
    placement: Placement,
    quantization: str = "none",
    threads: int = 1,
) -> LoadedModel:
    """A LoadedModel from verified bytes (sha256 left empty); raises on anything that does not load."""
    rt: OnnxRuntime | TorchRuntime
    sig: ModelSignature | None
    if fmt == "onnx":
        rt = OnnxRuntime(data, placement, threads)
        sig = rt.signature
        if declared is not None:
            # Names must agree with the graph (checked at verification); the declaration may only be
            # more specific about dims the graph leaves dynamic.
            sig = declared
        return LoadedModel(rt, sig, "", fmt, placement=placement)
    module, desc = load_torch_bytes(data, fmt)
    sig = declared or described_signature(desc)
    if sig is None:
        raise ValueError(
            "it carries no signature (no model description): declare the ModelVersion's spec.signature "
            "(its inputs and outputs: name, datatype, shape)"
        )
    classifier = int(desc.get("numClasses") or 0) > 0 and any(o.name == OUTPUT_LOGITS for o in sig.outputs)
    quantized = quantization == "int8"
    if quantized:
        if placement.device != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only; set device: cpu or drop it")
        module = quantize_int8(module, desc)
    derived = DERIVED_OUTPUTS if classifier else frozenset()
    outputs = [o.name for o in sig.outputs if o.name not in derived]
    rt = TorchRuntime(module, sig.inputs, outputs, placement)
    return LoadedModel(
        rt,
        sig,
        "",
        fmt,
        quantized=quantized,
        placement=placement,
        classifier_logits=OUTPUT_LOGITS if classifier else None,
        features=int(desc["numFeatures"]) if classifier else None,
    )


def load(cfg: ServeConfig) -> LoadedModel:
    """Verify, load, optionally quantize and warm up the artifact; raises WorkerError (exit 65)."""
    path = Path(cfg.artifact_path)
    started = time.monotonic()
    data = read_verified(path, cfg.sha256)
    # int8 dynamic quantization is a CPU technique: with device auto it keeps the model on the CPU.
    device = "cpu" if cfg.quantization == "int8" and cfg.device == "auto" else cfg.device
    placement = select_placement(device, cfg.precision, cuda_available())
    if placement.note and placement.precision != cfg.precision:
        log.warning("%s", placement.note)
    try:
        model = build(data, cfg.format, cfg.signature, placement, cfg.quantization, thread_count())
    except WorkerError:
        raise
    except Exception as exc:
        raise WorkerError(
            REASON_ARTIFACT_LOAD_FAILED,
            f"artifact {path.name} does not load as {cfg.format}: {type(exc).__name__}: {exc}",
            EXIT_BAD_DATA,
        ) from None
    model.sha256 = _digest(cfg.sha256)
    _warm_up(model, cfg.batching.max_batch_size)
    sig = model.signature
    log.info(
        "loaded %s (%s%s, %s, inputs %s, outputs %s, sha256 %s) in %.2fs",
        path.name,
        cfg.format,
        ", int8" if model.quantized else "",
        placement.note or placement.device,
        ", ".join(f"{t.name} {t.datatype}{t.shape}" for t in sig.inputs),
        ", ".join(f"{t.name} {t.datatype}{t.shape}" for t in sig.outputs),
        model.sha256[:12],
        time.monotonic() - started,
    )
    return model


def zeros(specs: list[TensorSpec], batch: int) -> Arrays:
    """Zeros of exactly these specs, every dynamic dim set to `batch`."""
    return {
        t.name: np.zeros([batch if d < 0 else d for d in t.shape], dtype=numpy_dtype(t.datatype))
        for t in specs
    }


def check_outputs(specs: list[TensorSpec], out: Mapping[str, np.ndarray[Any, Any]], batch: int) -> str | None:
    """What differs between the outputs a run gave and the declared ones, or None when they agree."""
    for t in specs:
        if t.name not in out:
            return f"output {t.name!r} is declared but the model returned {', '.join(out) or 'nothing'}"
        arr = out[t.name]
        try:
            got_dt = datatype_of(arr.dtype)
        except ValueError:
            got_dt = str(arr.dtype)
        if got_dt != t.datatype and not (t.datatype == "BF16" and got_dt == "FP32"):
            return f"output {t.name!r} is {got_dt}, declared {t.datatype}"
        want = [batch if d < 0 else d for d in t.shape]
        if len(arr.shape) != len(t.shape) or any(
            d >= 0 and a != d for a, d in zip(arr.shape, t.shape, strict=False)
        ):
            return f"output {t.name!r} has shape {list(arr.shape)}, declared {t.shape} (for batch {batch}: {want})"
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return f"output {t.name!r} holds NaN or infinite values for an input of zeros"
    return None


def _warm_up(model: LoadedModel, max_batch: int) -> None:
    # The first calls of a TorchScript module profile and optimise it; pay that before Ready, at the
    # batch sizes the batcher will use, rather than on the first users' requests. Each pass must give
    # the declared outputs, or the model is not what its signature says.
    sizes = sorted({1, 2, max(1, max_batch // 2), max_batch}) if model.batchable else [1]
    runtime_specs = [o for o in model.signature.outputs if o.name not in model.derived]
    for _ in range(3):
        for n in sizes:
            out = model.run(zeros(model.signature.inputs, n))
            problem = check_outputs(runtime_specs, out, n)
            if problem:
                raise WorkerError(
                    REASON_ARTIFACT_LOAD_FAILED, f"a warm-up inference of zeros: {problem}", EXIT_BAD_DATA
                )


def cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The container's CPU limit in whole CPUs (cgroup v2 `cpu.max`), None when unlimited or unknown.

    A pod limited to 1 CPU on a 64-core node still sees 64 CPUs in its affinity mask; sizing threads
    from that would only make them fight over the quota.
    """
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def thread_count() -> int:
    """Intra-op threads for the forward passes: OMP_NUM_THREADS if set, else the CPUs this process may
    use (affinity and cgroup limit) minus one for the event loop; at least one, at most four (a small
    model gains nothing more)."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = cpu_limit()
    if limit is not None:
        cpus = min(cpus, limit)
    return max(1, min(4, cpus - 1))


def configure_threads() -> int:
    """Set this thread's intra-op thread count (also run in the forward thread itself, since OpenMP
    keeps the setting per thread)."""
    n = thread_count()
    torch.set_num_threads(n)
    return n


Loader = Callable[[ServeConfig], LoadedModel]
