"""The fine-tune's artifact: a Hugging Face model directory, written whole or not at all, with its digest.

The directory (config.json, generation_config.json, tokenizer files, `*.safetensors`; or an adapter's
adapter_config.json + adapter_model.safetensors) is written into a temporary sibling, every file is
fsynced, the digest manifest is written last, and the directory is renamed into place: a pod killed
mid-export leaves the previous export or none, never a half-written one that verifies.

The directory digest and its manifest are `modelops.api.llmconfig`'s (defined once; verification and
the serving pods recompute the same).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from modelops.api import llmconfig
from modelops_worker.files import fsync_dir, sha256_file

MANIFEST = llmconfig.MANIFEST_FILE


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(root)


def export(
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    name: str,
    card: dict[str, Any],
    fmt: Literal["huggingface", "lora"] = "huggingface",
) -> dict[str, Any]:
    """Save `model` (a transformers or peft model) and `tokenizer` as `out_dir/name`, atomically.

    Returns the result artifact: path (relative to out_dir), sha256 (the directory digest), size, format.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    tmp = out_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "modelops-card.json").write_text(json.dumps(card, indent=1, sort_keys=True, default=str))
    _fsync_tree(tmp)
    manifest = llmconfig.write_manifest(tmp)
    digest = str(manifest["digest"])
    size = sum(int(f["size"]) for f in manifest["files"])
    fsync_dir(tmp)
    if final.exists():
        old = out_dir / f".old-{name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_dir(out_dir)
    return {
        "path": name,
        "sha256": digest,
        "sizeBytes": size,
        "format": fmt,
        "modelCard": f"{name}/modelops-card.json",
        "modelCardSha256": sha256_file(final / "modelops-card.json"),
    }
