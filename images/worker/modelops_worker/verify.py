"""`modelops-worker verify`: is this artifact the one the registry recorded, and does it run?

The ModelVersion controller runs it in a short-lived pod before a version becomes Ready, and again
when a user asks for re-verification: the sha256 must match, the file must load in the format
claimed, and a smoke inference must return finite logits of the right shape. The digest is computed
while streaming the file (never the whole file in memory), and the file is read once more only to
load it. The model card next to the artifact (written by `train`) carries the metrics and lineage the
registry records; it is trusted only when it names this artifact's digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from modelops.api.runconfig import EXIT_BAD_DATA, REASON_SUCCEEDED
from modelops_worker import export
from modelops_worker.errors import WorkerError
from modelops_worker.files import sha256_and_size as sha256_file

REASON_NOT_FOUND = "ArtifactNotFound"
REASON_DIGEST_MISMATCH = "ArtifactDigestMismatch"
REASON_LOAD_FAILED = "ArtifactLoadFailed"
# Formats the worker cannot load (no runtime for them here): their digest is still checked.
DIGEST_ONLY_FORMATS = frozenset({"safetensors", "onnx"})
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


def verify(path: Path, sha256: str | None, fmt: str | None) -> dict[str, Any]:
    """The verification result; raises WorkerError (exit 65) with the reason on any mismatch."""
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
    result: dict[str, Any] = {
        "status": "Succeeded",
        "reason": REASON_SUCCEEDED,
        "exitCode": 0,
        "artifact": {"path": str(path), "sha256": actual, "sizeBytes": size},
    }
    card = _card(path, actual)
    if card:
        result["card"] = card
    if fmt in DIGEST_ONLY_FORMATS:
        result["artifact"]["format"] = fmt
        result["message"] = f"sha256 matches; {fmt} is not loaded by this worker, so no smoke inference ran"
        return result
    try:
        model, desc = export.load(path, fmt)
    except Exception as exc:
        raise WorkerError(
            REASON_LOAD_FAILED,
            f"{path.name} does not load as {fmt or 'torchscript or state_dict'}: {exc}",
            EXIT_BAD_DATA,
        ) from None
    n_features = int(desc.get("numFeatures", 0))
    n_classes = int(desc.get("numClasses", 0))
    if n_features <= 0 or n_classes <= 0:
        raise WorkerError(
            REASON_LOAD_FAILED,
            f"{path.name} carries no model description (numFeatures/numClasses); re-export it",
            EXIT_BAD_DATA,
        )
    with torch.no_grad():
        out = model(torch.zeros(2, n_features))
    if tuple(out.shape) != (2, n_classes) or not bool(torch.isfinite(out).all()):
        raise WorkerError(
            REASON_LOAD_FAILED,
            f"smoke inference returned shape {tuple(out.shape)} (want (2, {n_classes})) "
            f"finite={bool(torch.isfinite(out).all())}",
            EXIT_BAD_DATA,
        )
    detected = fmt or ("torchscript" if isinstance(model, torch.jit.ScriptModule) else "state_dict")
    result["artifact"]["format"] = detected
    result["message"] = (
        f"sha256 matches, loads as {detected}, smoke inference gives {n_classes} finite logits"
    )
    result["numFeatures"] = n_features
    result["numClasses"] = n_classes
    return result
