"""Exporting the trained model and its model card, atomically, and loading it back (verify, serve).

The artifact is self-describing: a TorchScript file carries the model's description as an extra file
`modelops.json`, a state_dict file carries it next to the weights, so `verify` and `serve` need nothing
but the artifact to rebuild and smoke-test it. The model card (hyperparameters, metrics, dataset
digest, code version) is written last, so its presence means the artifact it names is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from modelops import __version__
from modelops.api.trainingjob import ModelSpec
from modelops_worker import models
from modelops_worker.checkpoint import write_file_synced

ARTIFACT = "model.pt"
MODEL_CARD = "model-card.json"
DESCRIPTION = "modelops.json"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_file_synced(tmp, data)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export(
    model: models.Classifier,
    fmt: Literal["torchscript", "state_dict"],
    description: dict[str, Any],
    card: dict[str, Any],
    out_dir: Path,
) -> dict[str, Any]:
    """Write the artifact and the model card; returns the result's `artifact` entry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    desc_json = json.dumps(description, sort_keys=True)
    buf = io.BytesIO()
    if fmt == "torchscript":
        # TorchScript is deprecated upstream in favour of torch.export, but it is still the one format
        # every serving stack loads without the model's Python code; the warning is ours to track.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(model)
            torch.jit.save(scripted, buf, _extra_files={DESCRIPTION: desc_json})
    else:
        torch.save({"stateDict": model.state_dict(), "description": desc_json}, buf)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    _atomic_write(out_dir / ARTIFACT, data)
    full_card = {
        **card,
        "artifact": {"path": ARTIFACT, "sha256": sha, "sizeBytes": len(data), "format": fmt},
        "model": description,
        "codeVersion": __version__,
        "torchVersion": torch.__version__,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    card_bytes = json.dumps(full_card, indent=2, sort_keys=True).encode()
    _atomic_write(out_dir / MODEL_CARD, card_bytes)
    return {
        "path": ARTIFACT,
        "sha256": sha,
        "sizeBytes": len(data),
        "format": fmt,
        "modelCard": MODEL_CARD,
        "modelCardSha256": hashlib.sha256(card_bytes).hexdigest(),
    }


def load(path: Path, fmt: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model and its description from an artifact; `fmt` None detects the format."""
    if fmt in (None, "torchscript"):
        extra = {DESCRIPTION: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
        except Exception:
            if fmt == "torchscript":
                raise
        else:
            return module, json.loads(extra[DESCRIPTION] or "{}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    desc = json.loads(blob["description"])
    spec = ModelSpec.model_validate(desc["spec"])
    shape = desc.get("imageShape")
    n = int(desc["numFeatures"])
    model = models.build(
        spec,
        n,
        int(desc["numClasses"]),
        torch.zeros(n),
        torch.ones(n),
        (int(shape[0]), int(shape[1])) if shape else None,
    )
    model.load_state_dict(blob["stateDict"])
    return model.eval(), desc
