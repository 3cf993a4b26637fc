"""`modelops-worker verify`: is this artifact the one the registry recorded, and can it be served?

The ModelVersion controller runs it in a short-lived pod before a version becomes Ready, and again
when a user asks for re-verification. In order:

1. the sha256 must match (computed while streaming the file, never the whole file in memory);
2. a runtime must exist for the format: `torchscript`/`state_dict` (PyTorch) or `onnx` (ONNX
   Runtime); any other (`safetensors`, ...) fails with `NoRuntimeForFormat` naming it, because a
   version that no serving pod can load must never become Ready;
3. the model's signature is established: read from the ONNX graph (dynamic dims -1), or for PyTorch
   from the declared `--signature` (the ModelVersion's `spec.signature`) or the description our own
   export writes into the artifact (and its model card);
4. a smoke inference of zeros of exactly that signature (dynamic dims set to 2) must run and give
   finite outputs whose names, datatypes and shapes are the declared ones; anything else fails with
   `SignatureMismatch` naming the tensor and what differs.

The result (the termination message) records the signature under `signature` (camelCase
ModelSignature), which the controller copies into `ModelVersion.status.signature`. The model card next
to the artifact (written by `train`) carries the metrics and lineage the registry records; it is
trusted only when it names this artifact's digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelops.api.runconfig import EXIT_BAD_DATA, REASON_SUCCEEDED
from modelops.api.serveconfig import (
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
    REASON_NO_RUNTIME_FOR_FORMAT,
    REASON_SIGNATURE_MISMATCH,
    SERVABLE_FORMATS,
)
from modelops.api.signature import ModelSignature, TensorSpec
from modelops_worker import export
from modelops_worker.errors import WorkerError
from modelops_worker.files import sha256_and_size as sha256_file

REASON_NOT_FOUND = REASON_ARTIFACT_NOT_FOUND
REASON_DIGEST_MISMATCH = REASON_ARTIFACT_DIGEST_MISMATCH
REASON_LOAD_FAILED = REASON_ARTIFACT_LOAD_FAILED
REASON_NO_RUNTIME = REASON_NO_RUNTIME_FOR_FORMAT
REASON_SIGNATURE = REASON_SIGNATURE_MISMATCH
# Dynamic dims of the smoke inference's zeros.
SMOKE_BATCH = 2
# Lineage kept from the model card; the whole result must stay below the 4096-byte termination message.
_MAX_HYPERPARAMETERS_BYTES = 1200


def _card(path: Path, digest: str) -> dict[str, Any] | None:
    """Metrics and lineage from the model card beside the artifact, when it describes this artifact."""
    card_path = path.with_name(export.MODEL_CARD)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or (card.get("artifact") or {}).get("sha256") != digest:
        return None
    metrics = {k: float(v) for k, v in (card.get("metrics") or {}).items() if isinstance(v, int | float)}
    hyper = card.get("hyperparameters") or {}
    if len(json.dumps(hyper)) > _MAX_HYPERPARAMETERS_BYTES:
        hyper = {"truncated": True}
    out: dict[str, Any] = {
        "metrics": metrics,
        "datasetDigest": (card.get("dataset") or {}).get("digest"),
        "hyperparameters": hyper,
        "trainingJob": (card.get("job") or {}).get("name"),
        "codeVersion": card.get("codeVersion"),
        "created": card.get("createdAt"),
    }
    return {k: v for k, v in out.items() if v is not None}


def parse_signature(raw: str) -> ModelSignature:
    """`--signature`'s JSON; raises WorkerError (exit 64) naming the field."""
    from pydantic import ValidationError

    from modelops.api.runconfig import EXIT_BAD_CONFIG, REASON_INVALID_CONFIG

    try:
        return ModelSignature.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise WorkerError(
            REASON_INVALID_CONFIG, f"--signature is not a valid model signature: {problems}", EXIT_BAD_CONFIG
        ) from None


def _mismatch(message: str) -> WorkerError:
    return WorkerError(REASON_SIGNATURE_MISMATCH, message, EXIT_BAD_DATA)


def _load_failed(path: Path, fmt: str, exc: BaseException) -> WorkerError:
    return WorkerError(
        REASON_LOAD_FAILED,
        f"{path.name} does not load as {fmt}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
        EXIT_BAD_DATA,
    )


def _describe(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{t.name} {t.datatype}{t.shape}" for t in specs)


def check_declared(declared: ModelSignature, actual: ModelSignature, source: str) -> None:
    """The declared signature against the one read from the model; raises SignatureMismatch."""
    for kind, want, have in (
        ("input", declared.inputs, actual.inputs),
        ("output", declared.outputs, actual.outputs),
    ):
        if kind == "output" and not want:
            continue  # outputs not declared: the model's own are recorded
        by_name = {t.name: t for t in have}
        for t in want:
            got = by_name.get(t.name)
            if got is None:
                raise _mismatch(
                    f"{kind} {t.name!r} is declared but the {source} has no such {kind} "
                    f"(it has {', '.join(repr(h.name) for h in have)})"
                )
            if got.datatype != t.datatype:
                raise _mismatch(
                    f"{kind} {t.name!r} is declared {t.datatype} but the {source} says {got.datatype}"
                )
            if len(got.shape) != len(t.shape) or any(
                d >= 0 and g >= 0 and d != g for d, g in zip(t.shape, got.shape, strict=False)
            ):
                raise _mismatch(
                    f"{kind} {t.name!r} is declared with shape {t.shape} but the {source} says {got.shape}"
                )
        extra = [h.name for h in have if h.name not in {t.name for t in want}]
        if kind == "input" and extra:
            raise _mismatch(
                f"the {source} also takes input {', '.join(map(repr, extra))}, which the declared "
                "signature leaves out; declare every input"
            )


def _record_outputs(out: dict[str, Any], batched: bool) -> list[TensorSpec]:
    """Output specs from a smoke run's arrays (a first dim equal to the smoke batch is the batch)."""
    from modelops_worker.serve.protocol import datatype_of

    specs = []
    for name, arr in out.items():
        shape = list(arr.shape)
        if batched and shape[:1] == [SMOKE_BATCH]:
            shape[0] = -1
        specs.append(TensorSpec(name=name, datatype=datatype_of(arr.dtype), shape=shape))
    return specs


def _smoke(model: Any, signature: ModelSignature) -> tuple[ModelSignature, str]:
    """Run zeros of exactly `signature` through `model`; the signature to record and a summary."""
    import numpy as np

    from modelops_worker.serve.model import check_outputs, zeros

    try:
        out = model.run(zeros(signature.inputs, SMOKE_BATCH))
    except Exception as exc:
        raise _mismatch(
            f"the model does not run on zeros of the declared inputs ({_describe(signature.inputs)}, "
            f"dynamic dims as {SMOKE_BATCH}): {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        ) from None
    runtime_specs = [o for o in signature.outputs if o.name not in model.derived]
    if runtime_specs:
        problem = check_outputs(runtime_specs, out, SMOKE_BATCH)
        if problem:
            raise _mismatch(f"smoke inference of zeros: {problem}")
    else:
        bad = [n for n, a in out.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
        if bad:
            raise _mismatch(f"smoke inference of zeros: output {bad[0]!r} holds NaN or infinite values")
        signature = ModelSignature(inputs=signature.inputs, outputs=_record_outputs(out, model.batchable))
    summary = ", ".join(f"{n} {list(a.shape)}" for n, a in out.items())
    return signature, summary


def _detect(data: bytes) -> str:
    if data[:2] == b"PK":  # a zip archive: torch.save and torch.jit.save both write one
        return "torchscript"
    return "onnx"


def verify(
    path: Path, sha256: str | None, fmt: str | None, declared: ModelSignature | None = None
) -> dict[str, Any]:
    """The verification result; raises WorkerError (exit 65) with the reason on any failure."""
    if not path.is_file():
        raise WorkerError(REASON_NOT_FOUND, f"{path} does not exist or is not a file", EXIT_BAD_DATA)
    actual, size = sha256_file(path)
    expected = (sha256 or "").lower().removeprefix("sha256:")
    if expected and actual != expected:
        raise WorkerError(
            REASON_DIGEST_MISMATCH,
            f"sha256 of {path.name} is {actual}, expected {expected}: the file changed after it was "
            "registered, or is partial",
            EXIT_BAD_DATA,
        )
    if fmt is not None and fmt not in SERVABLE_FORMATS:
        raise WorkerError(
            REASON_NO_RUNTIME_FOR_FORMAT,
            f"format {fmt!r} has no serving runtime here (runtimes exist for {', '.join(SERVABLE_FORMATS)}): "
            f"the sha256 of {path.name} matches, but no serving pod could load it; convert the model "
            "(e.g. to onnx or torchscript) or serve it with a custom predictor",
            EXIT_BAD_DATA,
        )
    result: dict[str, Any] = {
        "status": "Succeeded",
        "reason": REASON_SUCCEEDED,
        "exitCode": 0,
        "artifact": {"path": str(path), "sha256": actual, "sizeBytes": size},
    }
    card = _card(path, actual)
    if card:
        result["card"] = card
    data = path.read_bytes()
    detected = fmt or _detect(data)
    if detected == "onnx":
        signature, summary, extra = _verify_onnx(path, data, declared)
    else:
        signature, summary, extra, detected = _verify_torch(path, data, fmt, declared)
    result["artifact"]["format"] = detected
    result["signature"] = signature.model_dump(by_alias=True)
    result["message"] = (
        f"sha256 matches, loads as {detected}, smoke inference of zeros of the signature gives {summary}"
    )
    result.update(extra)
    return _fit_termination_message(result)


# Kubernetes keeps at most 4096 bytes of a termination message.
_MAX_RESULT_BYTES = 4000


def _fit_termination_message(result: dict[str, Any]) -> dict[str, Any]:
    """The result within the termination message's limit: a model with very many tensors first loses
    the card's hyperparameters, then the recorded signature (its declaration or its graph still holds
    it), saying so, rather than the whole result being cut off mid-JSON."""
    if len(json.dumps(result, separators=(",", ":"))) <= _MAX_RESULT_BYTES:
        return result
    if "card" in result:
        result["card"].pop("hyperparameters", None)
    if len(json.dumps(result, separators=(",", ":"))) > _MAX_RESULT_BYTES:
        sig = result.pop("signature", None) or {}
        result["message"] = (
            f"{result['message']}; the signature ({len(sig.get('inputs', []))} inputs, "
            f"{len(sig.get('outputs', []))} outputs) is too large for the termination message and is not recorded"
        )[:1000]
    return result


def _verify_onnx(
    path: Path, data: bytes, declared: ModelSignature | None
) -> tuple[ModelSignature, str, dict[str, Any]]:
    from modelops_worker.serve.model import LoadedModel, OnnxRuntime, Placement

    try:
        rt = OnnxRuntime(data, Placement("cpu", "fp32"), threads=1)
    except Exception as exc:
        raise _load_failed(path, "onnx", exc) from None
    graph = rt.signature
    signature = graph
    if declared is not None:
        check_declared(declared, graph, "ONNX graph")
        # The declaration may be more specific than the graph (a dim the graph leaves dynamic).
        signature = ModelSignature(inputs=declared.inputs, outputs=declared.outputs or graph.outputs)
    model = LoadedModel(rt, signature, "", "onnx")
    signature, summary = _smoke(model, signature)
    return signature, summary, {}


def _verify_torch(
    path: Path, data: bytes, fmt: str | None, declared: ModelSignature | None
) -> tuple[ModelSignature, str, dict[str, Any], str]:
    import torch

    from modelops_worker.serve.model import Placement, build, described_signature, load_torch_bytes

    tried = [fmt] if fmt else ["torchscript", "state_dict"]
    desc: dict[str, Any] | None = None
    for candidate in tried:
        try:
            _, desc = load_torch_bytes(data, candidate)
            detected = candidate
            break
        except Exception as exc:
            error = exc
    if desc is None:
        raise _load_failed(path, fmt or "torchscript or state_dict", error) from None
    signature = declared or described_signature(desc)
    if signature is None:
        raise _mismatch(
            f"{path.name} is {detected} and records no signature (TorchScript does not say what it takes): "
            "declare the ModelVersion's spec.signature, the name, datatype and shape of each input "
            "(and output), e.g. inputs [{name: input, datatype: FP32, shape: [-1, 4]}]"
        )
    try:
        with torch.no_grad():
            model = build(data, detected, signature, Placement("cpu", "fp32"))
    except Exception as exc:
        raise _load_failed(path, detected, exc) from None
    signature, summary = _smoke(model, signature)
    extra: dict[str, Any] = {}
    if model.features is not None:  # our classifiers, as before
        extra = {"numFeatures": int(desc["numFeatures"]), "numClasses": int(desc["numClasses"])}
    return signature, summary, extra, detected
