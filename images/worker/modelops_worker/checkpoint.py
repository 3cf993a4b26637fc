"""Checkpoints that are either complete and verified, or never loaded.

A pod can be killed at any instant (OOM, node loss, preemption), including halfway through writing a
checkpoint. So a checkpoint is written into a temporary directory, every file is fsynced, a
`manifest.json` with the sha256 of each file is written last, and only then is the directory renamed
to `ckpt-<step>`: a rename is atomic on one filesystem. On start the newest checkpoint whose manifest
verifies is loaded; anything else (no manifest, a truncated or altered file) is skipped, logged and
counted, and the previous one is tried.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelops_worker.files import fsync_dir as _fsync_dir
from modelops_worker.files import sha256_file

log = logging.getLogger("modelops_worker.checkpoint")

PREFIX = "ckpt-"
TMP_PREFIX = ".tmp-ckpt-"
BAD_PREFIX = ".bad-ckpt-"
STATE_FILE = "state.pt"
MANIFEST = "manifest.json"


def write_file_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass(frozen=True)
class Saved:
    """A checkpoint on disk: its step, directory and the sha256 of its manifest."""

    step: int
    path: Path
    manifest_sha256: str


def snapshot(obj: Any) -> Any:
    """A deep copy of the tensors in a state (moved to CPU), so training can go on while it is written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj


class CheckpointStore:
    """The checkpoint directory of one job: save, verify, load the newest good one, keep the last K.

    `save_async` writes in a background thread (serialising and fsyncing a large model takes long
    enough to stall training); one write is in flight at most, and `wait` returns the last written.
    """

    def __init__(self, root: Path, keep: int, on_fallback: Callable[[], None] | None = None) -> None:
        self.root = root
        self.keep = keep
        self.on_fallback = on_fallback or (lambda: None)
        self._thread: threading.Thread | None = None
        self._done: Saved | None = None
        self._error: BaseException | None = None

    def save_async(
        self,
        step: int,
        state: dict[str, Any],
        meta: dict[str, Any],
        on_saved: Callable[[Saved], None] | None = None,
    ) -> None:
        """Snapshot `state` now and write it in the background (after any write still in flight)."""
        self.wait()
        copy = snapshot(state)

        def write() -> None:
            try:
                saved = self.save(step, copy, meta)
            except BaseException as exc:
                self._error = exc
                return
            self._done = saved
            if on_saved is not None:
                on_saved(saved)

        self._thread = threading.Thread(target=write, name=f"checkpoint-{step}", daemon=True)
        self._thread.start()

    def wait(self) -> Saved | None:
        """Block until the write in flight is on disk; re-raises its error (a retryable crash)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"writing a checkpoint to {self.root} failed: {err}") from err
        return self._done

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> Saved:
        """Write `state` as checkpoint `step` atomically and drop all but the newest `keep`."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"{PREFIX}{step:010d}"
        tmp = self.root / f"{TMP_PREFIX}{step:010d}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        write_file_synced(tmp / STATE_FILE, data)
        manifest = {
            **meta,
            "step": step,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {STATE_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "sizeBytes": len(data)}},
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True, indent=1).encode()
        write_file_synced(tmp / MANIFEST, manifest_bytes)
        _fsync_dir(tmp)
        if final.exists():
            # Same step written again (a resume that stopped before the next step): replace it whole.
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.root)
        self._retain()
        return Saved(step, final, hashlib.sha256(manifest_bytes).hexdigest())

    def _candidates(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            if p.is_dir() and p.name.startswith(PREFIX):
                try:
                    out.append((int(p.name[len(PREFIX) :]), p))
                except ValueError:
                    continue
        return sorted(out, reverse=True)

    def _retain(self) -> None:
        for _, p in self._candidates()[self.keep :]:
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.iterdir():
            # Left behind by a process killed mid-write; ours was just renamed away.
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)

    def verify(self, path: Path) -> tuple[dict[str, Any], str]:
        """The manifest and its sha256 if every file matches it; raises ValueError saying what does not."""
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise ValueError("no manifest.json (the write never finished)")
        raw = mpath.read_bytes()
        try:
            manifest = json.loads(raw)
            files = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable manifest.json ({exc})") from None
        for name, entry in files.items():
            f = path / name
            if not f.is_file():
                raise ValueError(f"{name} is missing")
            size = f.stat().st_size
            if size != entry.get("sizeBytes"):
                raise ValueError(f"{name} has {size} bytes, the manifest says {entry.get('sizeBytes')}")
            actual = sha256_file(f)
            if actual != entry.get("sha256"):
                raise ValueError(f"{name} sha256 {actual[:12]}... does not match the manifest")
        return manifest, hashlib.sha256(raw).hexdigest()

    def load_latest(
        self, accept: Callable[[dict[str, Any]], str | None] | None = None
    ) -> tuple[dict[str, Any], Saved] | None:
        """The state of the newest checkpoint that verifies (and that `accept` does not refuse)."""
        for step, path in self._candidates():
            try:
                manifest, msha = self.verify(path)
                refusal = accept(manifest) if accept else None
                if refusal:
                    raise ValueError(refusal)
                state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
            except Exception as exc:
                log.warning("checkpoint %s skipped, falling back to an older one: %s", path.name, exc)
                self.on_fallback()
                # Set aside (kept for a post-mortem, never retried) so that retention cannot keep it in
                # place of the good checkpoints written after the fallback.
                path.rename(self.root / f"{BAD_PREFIX}{path.name[len(PREFIX) :]}-{int(time.time())}")
                continue
            return state, Saved(step, path, msha)
        return None
