"""The content-addressed model store: verified artifacts by sha256, published once, fetched by digest.

The verification pod publishes what it has just verified (`verify --publish STORE`), and every
serving pod's init container fetches it back (`fetch --store STORE --sha256 D --to FILE`) into the
pod's own volume, so a serving pod never mounts a training claim and never depends on the source
staying where it was. What holds on both sides:

- An object's name is its digest, `sha256/<hex>` under the store's root. Nothing is ever written
  under that name directly: bytes go to a `.partial-*` name first and are renamed only after their
  sha256, computed while they streamed, equals the digest. A crash or a changed source leaves at
  most a partial file nobody reads (cleaned up by the next publish after an hour).
- An object already under the digest name is re-used only after it is hashed again; one that does
  not match (bit rot, a hand edit) is replaced, and the result says so.
- The fetched file is hashed while it is copied and renamed into place only when it matches;
  otherwise the init container exits 65 with `ArtifactDigestMismatch` (or `ArtifactNotFound`) in its
  termination message, which the InferenceService reports, and the server never starts.

STORE is a directory (the store's claim mounted into the pod, `pvc://` stores).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

from modelops.api.runconfig import EXIT_BAD_DATA
from modelops.api.serveconfig import REASON_ARTIFACT_DIGEST_MISMATCH, REASON_ARTIFACT_NOT_FOUND
from modelops_worker.errors import WorkerError
from modelops_worker.files import CHUNK, fsync_dir, sha256_and_size

REASON_STORE_UNAVAILABLE = "ModelStoreUnavailable"
OBJECTS = "sha256"
PARTIAL = ".partial-"
# A partial file this old belongs to a publisher that died: nobody will rename it any more.
STALE_PARTIAL_SECONDS = 3600.0
# Exit code of a store that cannot be read or written now (retryable: the operator tries again).
EXIT_STORE_UNAVAILABLE = 1


def object_key(digest: str) -> str:
    """The object's name under the store's root."""
    return f"{OBJECTS}/{digest}"


def _normalize(digest: str) -> str:
    hexdigest = digest.lower().removeprefix("sha256:")
    if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        from modelops_worker.errors import ConfigError

        raise ConfigError(f"--sha256 {digest!r} is not a sha256 digest (64 hex digits, optionally sha256:)")
    return hexdigest


def _unavailable(what: str, error: OSError) -> WorkerError:
    return WorkerError(
        REASON_STORE_UNAVAILABLE,
        f"the model store cannot {what}: {error.strerror or error} ({type(error).__name__})",
        EXIT_STORE_UNAVAILABLE,
    )


def _copy_hashed(source: Path, partial: Path) -> tuple[str, int]:
    """Copy `source` to `partial` (created, never overwritten) in bounded memory; its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with source.open("rb", buffering=0) as src:
            while n := src.readinto(buf):
                digest.update(view[:n])
                written = 0
                while written < n:
                    written += os.write(fd, view[written:n])
                size += n
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def _remove_stale_partials(objects: Path, now: float) -> None:
    for entry in objects.glob(f"{PARTIAL}*"):
        try:
            if now - entry.stat().st_mtime > STALE_PARTIAL_SECONDS:
                entry.unlink()
        except OSError:
            continue  # another publisher's cleanup got it first


def publish(source: Path, digest: str, store: Path) -> dict[str, Any]:
    """Put the verified `source` into `store` under `digest`, once; what was done, for the result.

    Raises WorkerError: ArtifactDigestMismatch (exit 65) when the source no longer hashes to the
    digest it was verified with, ModelStoreUnavailable (exit 1) when the store cannot be written.
    """
    digest = _normalize(digest)
    objects = store / OBJECTS
    target = objects / digest
    replaced = False
    try:
        objects.mkdir(parents=True, exist_ok=True)
        if target.is_file():
            have, size = sha256_and_size(target)
            if have == digest:
                return {"key": object_key(digest), "reused": True, "sizeBytes": size}
            replaced = True  # the stored object rotted or was edited: write it again below
        _remove_stale_partials(objects, time.time())
        partial = objects / f"{PARTIAL}{digest[:16]}-{uuid.uuid4().hex[:12]}"
        try:
            actual, size = _copy_hashed(source, partial)
            if actual != digest:
                raise WorkerError(
                    REASON_ARTIFACT_DIGEST_MISMATCH,
                    f"{source.name} changed while it was published to the model store (sha256 {actual}, "
                    f"verified as {digest}); nothing was stored",
                    EXIT_BAD_DATA,
                )
            os.chmod(partial, 0o444)
            os.replace(partial, target)  # atomic: the digest name appears complete or not at all
            fsync_dir(objects)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as error:
        raise _unavailable(f"store {object_key(digest)} under {store}", error) from None
    out: dict[str, Any] = {"key": object_key(digest), "reused": False, "sizeBytes": size}
    if replaced:
        out["replaced"] = True
    return out


def fetch(store: Path, digest: str, dest: Path) -> dict[str, Any]:
    """Copy the object `digest` from `store` to `dest`, verified; the result for the termination message.

    Raises WorkerError (exit 65): ArtifactNotFound when the store has no such object,
    ArtifactDigestMismatch when its bytes do not hash to the digest (`dest` is then not created).
    """
    digest = _normalize(digest)
    source = store / OBJECTS / digest
    if not source.is_file():
        raise WorkerError(
            REASON_ARTIFACT_NOT_FOUND,
            f"the model store has no object {object_key(digest)}: set the annotation modelops.dev/reverify "
            "on the ModelVersion to verify and publish it again",
            EXIT_BAD_DATA,
        )
    started = time.monotonic()
    partial = dest.with_name(f"{PARTIAL}{dest.name}-{uuid.uuid4().hex[:12]}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        actual, size = _copy_hashed(source, partial)
        if actual != digest:
            raise WorkerError(
                REASON_ARTIFACT_DIGEST_MISMATCH,
                f"the model store's object {object_key(digest)} has sha256 {actual}: it changed after it "
                "was published; set the annotation modelops.dev/reverify on the ModelVersion to publish it "
                "again",
                EXIT_BAD_DATA,
            )
        os.chmod(partial, 0o444)
        os.replace(partial, dest)
    except OSError as error:
        raise _unavailable(f"copy {object_key(digest)} to {dest}", error) from None
    finally:
        partial.unlink(missing_ok=True)
    seconds = max(time.monotonic() - started, 1e-6)
    return {
        "status": "Succeeded",
        "reason": "Fetched",
        "exitCode": 0,
        "message": f"fetched {object_key(digest)} ({size} bytes) in {seconds:.2f}s and verified its sha256",
        "artifact": {"path": str(dest), "sha256": actual, "sizeBytes": size},
        "seconds": round(seconds, 3),
        "bytesPerSecond": int(size / seconds),
    }
