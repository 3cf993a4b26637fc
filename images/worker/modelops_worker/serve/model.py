"""The served model: verified before it is loaded, optionally quantized, warmed up, and run batched.

The sha256 is checked on the bytes that are then loaded (read once), so a file replaced between the
check and the load cannot slip through. int8 dynamic quantization rebuilds the eager model from the
artifact's own description (TorchScript modules cannot be quantized eagerly) and swaps its Linear
layers for int8 ones: smaller weights and faster matmuls on CPU, logits within a small error.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelops.api.runconfig import EXIT_BAD_DATA
from modelops.api.serveconfig import (
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
    ServeConfig,
)
from modelops.api.trainingjob import ModelSpec
from modelops_worker import export, models
from modelops_worker.errors import WorkerError
from modelops_worker.serve.protocol import ModelSignature

log = logging.getLogger("modelops_worker.serve")


@dataclass
class LoadedModel:
    """A model ready to serve: `forward` takes float32 (n, features) and returns float32 (n, classes)."""

    module: nn.Module
    signature: ModelSignature
    sha256: str
    format: str
    quantized: bool

    @property
    def platform(self) -> str:
        return "pytorch_torchscript" if self.format == "torchscript" else "pytorch_state_dict"

    def forward(self, batch: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        if not batch.flags.writeable:  # a binary tensor read straight from the request's bytes
            batch = batch.copy()
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch))
        return out.float().numpy()  # type: ignore[no-any-return]


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
        module = _eager_from_description(dict(module.state_dict()), desc)
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which the worker does not ship;
        # quantize_dynamic is still the one CPU int8 path in torch itself.
        warnings.simplefilter("ignore")
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            module, {nn.Linear}, dtype=torch.qint8
        )
    return quantized.eval()


def load(cfg: ServeConfig) -> LoadedModel:
    """Verify, load, optionally quantize and warm up the artifact; raises WorkerError (exit 65)."""
    path = Path(cfg.artifact_path)
    started = time.monotonic()
    data = read_verified(path, cfg.sha256)
    try:
        module, desc = _load_bytes(data, cfg.format)
        features, classes = int(desc["numFeatures"]), int(desc["numClasses"])
        if cfg.quantization == "int8":
            module = quantize_int8(module, desc)
    except Exception as exc:
        raise WorkerError(
            REASON_ARTIFACT_LOAD_FAILED,
            f"artifact {path.name} does not load as {cfg.format}: {type(exc).__name__}: {exc}",
            EXIT_BAD_DATA,
        ) from None
    model = LoadedModel(
        module=module,
        signature=ModelSignature(features=features, classes=classes),
        sha256=_digest(cfg.sha256),
        format=cfg.format,
        quantized=cfg.quantization == "int8",
    )
    _warm_up(model, cfg.batching.max_batch_size)
    log.info(
        "loaded %s (%s%s, %d features, %d classes, sha256 %s) in %.2fs",
        path.name,
        cfg.format,
        ", int8" if model.quantized else "",
        features,
        classes,
        model.sha256[:12],
        time.monotonic() - started,
    )
    return model


def _load_bytes(data: bytes, fmt: str) -> tuple[nn.Module, dict[str, Any]]:
    """The module and its description from the verified bytes, the way `export.load` reads a file,
    without writing a copy anywhere (the root filesystem is read-only, and models can be large)."""
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
    if int(desc.get("numFeatures", 0)) <= 0 or int(desc.get("numClasses", 0)) <= 0:
        raise ValueError("it carries no model description (numFeatures/numClasses); re-export it")
    return module.eval(), desc


def _warm_up(model: LoadedModel, max_batch: int) -> None:
    # The first calls of a TorchScript module profile and optimise it; pay that before Ready, at the
    # batch sizes the batcher will use, rather than on the first users' requests.
    sizes = sorted({1, 2, max(1, max_batch // 2), max_batch})
    for _ in range(3):
        for n in sizes:
            out = model.forward(np.zeros((n, model.signature.features), dtype=np.float32))
            if out.shape != (n, model.signature.classes) or not np.isfinite(out).all():
                raise WorkerError(
                    REASON_ARTIFACT_LOAD_FAILED,
                    f"a warm-up inference returned shape {out.shape}, want ({n}, {model.signature.classes}), "
                    "or non-finite logits",
                    EXIT_BAD_DATA,
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
