"""The fine-tune's artifact: a Hugging Face model directory, written whole or not at all, with its digest.

The directory (config.json, generation_config.json, tokenizer files, `*.safetensors`; or an adapter's
adapter_config.json + adapter_model.safetensors) is written into a temporary sibling, every file is
fsynced, the digest manifest is written last, and the directory is renamed into place: a pod killed
mid-export leaves the previous export or none, never a half-written one that verifies.

The directory digest is `directory_digest` (one definition; the serving side checks the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from modelops_worker.files import fsync_dir, sha256_file

MANIFEST = "modelops-manifest.json"


def file_digests(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `root` but the manifest, by POSIX relative path."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p), "sizeBytes": p.stat().st_size}
    return out


def directory_digest(files: dict[str, dict[str, Any]]) -> str:
    """sha256 over the lines `<sha256>  <relative path>\\n` of every file, sorted by path."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{files[rel]['sha256']}  {rel}\n".encode())
    return h.hexdigest()


def write_manifest(root: Path, extra: dict[str, Any]) -> tuple[str, int]:
    """Write the digest manifest of `root`; (digest, total bytes)."""
    files = file_digests(root)
    digest = directory_digest(files)
    manifest = {
        **extra,
        "digest": f"sha256:{digest}",
        "files": files,
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with (root / MANIFEST).open("w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    return digest, sum(int(f["sizeBytes"]) for f in files.values())


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(root)


def export(model: Any, tokenizer: Any, out_dir: Path, name: str, card: dict[str, Any]) -> dict[str, Any]:
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
    digest, size = write_manifest(tmp, {"name": card.get("name"), "format": "huggingface"})
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
        "format": "huggingface",
        "modelCard": f"{name}/modelops-card.json",
        "modelCardSha256": sha256_file(final / "modelops-card.json"),
    }
