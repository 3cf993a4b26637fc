"""`modelops-worker verify`: is this artifact the one the registry recorded, and does it run?

The ModelVersion controller runs it before a version becomes Ready: the sha256 must match, the file
must load in the format claimed, and a smoke inference must return finite logits of the right shape.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from modelops.api.runconfig import (
    EXIT_BAD_DATA,
    REASON_SUCCEEDED,
    REASON_VERIFICATION_FAILED,
)
from modelops_worker import export
from modelops_worker.errors import WorkerError


def _fail(message: str) -> WorkerError:
    return WorkerError(REASON_VERIFICATION_FAILED, message, EXIT_BAD_DATA)


def verify(path: Path, sha256: str | None, fmt: str | None) -> dict[str, Any]:
    """The verification result; raises WorkerError (exit 65) on any mismatch."""
    if not path.is_file():
        raise WorkerError(
            "ArtifactNotFound", f"--artifact {path} does not exist or is not a file", EXIT_BAD_DATA
        )
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if sha256 and actual != sha256.lower().removeprefix("sha256:"):
        raise _fail(
            f"sha256 of {path.name} is {actual}, expected {sha256}: the artifact changed or is partial"
        )
    try:
        model, desc = export.load(path, fmt)
    except Exception as exc:
        raise _fail(f"{path.name} does not load as {fmt or 'torchscript or state_dict'}: {exc}") from None
    n_features = int(desc.get("numFeatures", 0))
    n_classes = int(desc.get("numClasses", 0))
    if n_features <= 0 or n_classes <= 0:
        raise _fail(f"{path.name} carries no model description (numFeatures/numClasses); re-export it")
    with torch.no_grad():
        out = model(torch.zeros(2, n_features))
    if tuple(out.shape) != (2, n_classes) or not bool(torch.isfinite(out).all()):
        raise _fail(
            f"smoke inference returned shape {tuple(out.shape)} (want (2, {n_classes})) "
            f"finite={bool(torch.isfinite(out).all())}"
        )
    detected = fmt or ("torchscript" if isinstance(model, torch.jit.ScriptModule) else "state_dict")
    return {
        "status": "Succeeded",
        "reason": REASON_SUCCEEDED,
        "message": f"sha256 matches, loads as {detected}, smoke inference gives {n_classes} finite logits",
        "exitCode": 0,
        "artifact": {"path": str(path), "sha256": actual, "sizeBytes": len(data), "format": detected},
        "numFeatures": n_features,
        "numClasses": n_classes,
    }
