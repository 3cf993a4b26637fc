"""Exporting the trained model and its model card, atomically, and loading it back (verify, serve).

The artifact is self-describing: a TorchScript file carries the model's description as an extra file
`modelops.json`, a state_dict file carries it next to the weights, so `verify` and `serve` need nothing
but the artifact to rebuild and smoke-test it. The description (and the model card) include the
model's signature (`classifier_signature`: one FP32 input, `logits`, and the `probabilities` and
`predicted_class` conveniences), which TorchScript itself does not record. The model card (hyperparameters, metrics, dataset
digest, code version) is written last, so its presence means the artifact it names is complete.

Two identical seeded runs export byte-identical TorchScript, so a digest says "same model": torch
writes a random `.data/serialization_id` record into every archive (replaced here by one derived from
the archive's other records), and TorchScript emits a module's constants in the iteration order of a
Python set of names, which depends on the interpreter's string-hash seed (scripting runs in a child
interpreter with PYTHONHASHSEED=0 unless this one already has it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from modelops import __version__
from modelops.api.trainingjob import ModelSpec
from modelops_worker import models
from modelops_worker.checkpoint import write_file_synced

SERIALIZATION_ID = ".data/serialization_id"
OUTPUT_LOGITS, OUTPUT_PROBABILITIES, OUTPUT_CLASS = "logits", "probabilities", "predicted_class"
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


def _deterministic_id(data: bytes) -> bytes:
    """The archive with its random serialization_id replaced by a digest of every other record.

    The record is stored uncompressed with a fixed width, so it is rewritten in place (the CRC in the
    local header and in the central directory too), keeping torch's record alignment intact.
    """
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(SERIALIZATION_ID)]
        if len(infos) != 1 or infos[0].compress_type != zipfile.ZIP_STORED:
            return data
        info = infos[0]
        digest = hashlib.sha256()
        for other in zf.infolist():
            if other is not info:
                digest.update(other.filename.encode() + b"\0" + zf.read(other))
        old = zf.read(info)
    new = str(int.from_bytes(digest.digest()[:16], "big")).rjust(len(old), "0")[: len(old)].encode()
    name_len, extra_len = struct.unpack_from("<HH", buf, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    if bytes(buf[start : start + len(old)]) != old:
        return data
    buf[start : start + len(old)] = new
    crc = zlib.crc32(new)
    struct.pack_into("<I", buf, info.header_offset + 14, crc)
    # The record's central directory entry: walk the directory from the end-of-directory record.
    eocd = bytes(buf).rfind(b"PK\x05\x06")
    if eocd == -1:
        return data
    (count,) = struct.unpack_from("<H", buf, eocd + 10)
    (entry,) = struct.unpack_from("<I", buf, eocd + 16)
    for _ in range(count):
        if bytes(buf[entry : entry + 4]) != b"PK\x01\x02":
            break
        n, m, k = struct.unpack_from("<HHH", buf, entry + 28)
        (offset,) = struct.unpack_from("<I", buf, entry + 42)
        if offset == info.header_offset:
            struct.pack_into("<I", buf, entry + 16, crc)
            return bytes(buf)
        entry += 46 + n + m + k
    return data


def _script(model: nn.Module, desc_json: str) -> bytes:
    buf = io.BytesIO()
    # TorchScript is deprecated upstream in favour of torch.export, but it is still the one format
    # every serving stack loads without the model's Python code; the warning is ours to track.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, buf, _extra_files={DESCRIPTION: desc_json})
    return _deterministic_id(buf.getvalue())


def _script_child() -> None:
    """Entry of the child interpreter: argv = model pickle, description file, output file."""
    model_path, desc_path, out_path = sys.argv[1:4]
    model = torch.load(model_path, map_location="cpu", weights_only=False)
    Path(out_path).write_bytes(_script(model, Path(desc_path).read_text()))


def scripted_bytes(model: nn.Module, desc_json: str) -> bytes:
    """The TorchScript archive of `model`, byte-reproducible for equal weights."""
    if os.environ.get("PYTHONHASHSEED") == "0":
        return _script(model, desc_json)
    with tempfile.TemporaryDirectory(prefix="modelops-export-") as tmp:
        model_path, desc_path, out_path = (os.path.join(tmp, n) for n in ("model.pkl", "desc", "out"))
        torch.save(model, model_path)
        Path(desc_path).write_text(desc_json)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        code = "from modelops_worker.export import _script_child; _script_child()"
        done = subprocess.run(
            [sys.executable, "-c", code, model_path, desc_path, out_path],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not os.path.exists(out_path):
            # Never lose a trained model over reproducibility: script it here instead.
            return _script(model, desc_json)
        return Path(out_path).read_bytes()


def classifier_signature(features: int, classes: int) -> dict[str, Any]:
    """The signature (wire form of `modelops.api.signature.ModelSignature`) of our classifiers."""
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, features]}],
        "outputs": [
            {"name": OUTPUT_LOGITS, "datatype": "FP32", "shape": [-1, classes]},
            {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, classes]},
            {"name": OUTPUT_CLASS, "datatype": "INT64", "shape": [-1]},
        ],
    }


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
    if "signature" not in description and description.get("numFeatures") and description.get("numClasses"):
        description = {
            **description,
            "signature": classifier_signature(
                int(description["numFeatures"]), int(description["numClasses"])
            ),
        }
    desc_json = json.dumps(description, sort_keys=True)
    if fmt == "torchscript":
        data = scripted_bytes(model, desc_json)
    else:
        buf = io.BytesIO()
        torch.save({"stateDict": model.state_dict(), "description": desc_json}, buf)
        data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    _atomic_write(out_dir / ARTIFACT, data)
    full_card = {
        **card,
        "artifact": {"path": ARTIFACT, "sha256": sha, "sizeBytes": len(data), "format": fmt},
        "model": description,
        "signature": description.get("signature"),
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
