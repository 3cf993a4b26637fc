"""File digests and durable writes, shared by checkpoints, backups and verification (no torch here:
`backup` and `restore` must not pay for importing it)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_and_size(path: Path) -> tuple[str, int]:
    """The hex digest and size of a file, streamed in 1 MiB chunks into one reused buffer."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    """The hex digest of a file."""
    return sha256_and_size(path)[0]


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
