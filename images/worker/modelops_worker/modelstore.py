"""The content-addressed model store: verified artifacts by digest, published once, fetched by digest.

The verification pod publishes what it has just verified (`verify --publish STORE`), and every
serving pod's init container fetches it back (`fetch --store STORE --sha256 D --to PATH`) into the
pod's own volume, so a serving pod never mounts a training claim and never depends on the source
staying where it was. STORE is a directory (the store's claim mounted into the pod, for `pvc://`
stores) or an object storage prefix (`s3://bucket/prefix`, `gs://`, `az://`, through the one storage
layer `modelops_worker.storage`, credentials from the mounted Secret or the pod's identity).

Layout: `sha256/<hex>` under the store's root.

- A file artifact (TorchScript, ONNX, GGUF) is the object `sha256/<its sha256>`.
- A directory artifact (a Hugging Face model, a LoRA adapter) is its manifest
  (`modelops.api.llmconfig`: every file's path, size and sha256) stored as `sha256/<directory digest>`,
  and each of its files as the object `sha256/<that file's sha256>`: files shared by versions are stored
  once. The manifest is written last, so its presence means every file is there.

What holds on both sides:

- Nothing is ever written under a digest name directly: bytes go to a partial name (a `.partial-*` file,
  or a `.partial/` staging key and a server-side copy) and appear under the digest only after their
  sha256, computed while they streamed, equals it. A crash or a changed source leaves at most a partial
  nobody reads.
- An object already under the digest name is re-used only after it is hashed again; one that does not
  match (bit rot, a hand edit) is replaced, and the result says so.
- The fetched artifact is hashed while it is copied and moved into place only when it matches;
  otherwise the init container exits 65 with `ArtifactDigestMismatch` (or `ArtifactNotFound`) in its
  termination message, which the InferenceService reports, and the server never starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from modelops.api.llmconfig import MANIFEST_ALGORITHM, MANIFEST_FILE, build_manifest, directory_digest
from modelops.api.runconfig import EXIT_BAD_DATA
from modelops.api.serveconfig import REASON_ARTIFACT_DIGEST_MISMATCH, REASON_ARTIFACT_NOT_FOUND
from modelops_worker.errors import ConfigError, WorkerError
from modelops_worker.files import CHUNK, fsync_dir, sha256_and_size

REASON_STORE_UNAVAILABLE = "ModelStoreUnavailable"
OBJECTS = "sha256"
PARTIAL = ".partial-"
STAGING = ".partial"
# A partial file this old belongs to a publisher that died: nobody will rename it any more.
STALE_PARTIAL_SECONDS = 3600.0
# Exit code of a store directory that cannot be read or written now (retryable).
EXIT_STORE_UNAVAILABLE = 1
# A directory's manifest is small; anything bigger under a digest name is not one.
MAX_MANIFEST_BYTES = 16 << 20


def object_key(digest: str) -> str:
    """The object's name under the store's root."""
    return f"{OBJECTS}/{digest}"


def _normalize(digest: str) -> str:
    hexdigest = digest.lower().removeprefix("sha256:")
    if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise ConfigError(f"--sha256 {digest!r} is not a sha256 digest (64 hex digits, optionally sha256:)")
    return hexdigest


def _mismatch(message: str) -> WorkerError:
    return WorkerError(REASON_ARTIFACT_DIGEST_MISMATCH, message, EXIT_BAD_DATA)


def _not_found(digest: str) -> WorkerError:
    return WorkerError(
        REASON_ARTIFACT_NOT_FOUND,
        f"the model store has no object {object_key(digest)}: set the annotation modelops.dev/reverify on "
        "the ModelVersion to verify and publish it again",
        EXIT_BAD_DATA,
    )


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


class _Backend(Protocol):
    """Where objects live: a directory, or an object storage prefix."""

    def digest_of(self, key: str) -> tuple[str, int] | None: ...
    def put_verified(self, source: Path, key: str, digest: str) -> int: ...
    def read_small(self, key: str) -> bytes | None: ...
    def put_small(self, key: str, data: bytes) -> None: ...
    def fetch(self, key: str, dest: Path, digest: str) -> int: ...


class _Directory:
    """A store directory (the store's claim, mounted)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def _cleanup(self, objects: Path) -> None:
        now = time.time()
        for entry in objects.glob(f"{PARTIAL}*"):
            try:
                if now - entry.stat().st_mtime > STALE_PARTIAL_SECONDS:
                    entry.unlink()
            except OSError:
                continue  # another publisher's cleanup got it first

    def digest_of(self, key: str) -> tuple[str, int] | None:
        path = self._path(key)
        try:
            return sha256_and_size(path) if path.is_file() else None
        except OSError as error:
            raise _unavailable(f"read {key} under {self.root}", error) from None

    def _commit(self, partial: Path, target: Path) -> None:
        os.chmod(partial, 0o444)
        os.replace(partial, target)  # atomic: the name appears complete or not at all
        fsync_dir(target.parent)

    def put_verified(self, source: Path, key: str, digest: str) -> int:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._cleanup(target.parent)
            partial = target.with_name(f"{PARTIAL}{target.name[:16]}-{uuid.uuid4().hex[:12]}")
            try:
                actual, size = _copy_hashed(source, partial)
                if actual != digest:
                    raise _mismatch(
                        f"{source.name} changed while it was published to the model store (sha256 {actual}, "
                        f"verified as {digest}); nothing was stored"
                    )
                self._commit(partial, target)
            finally:
                partial.unlink(missing_ok=True)
        except OSError as error:
            raise _unavailable(f"store {key} under {self.root}", error) from None
        return size

    def read_small(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
                return None
            return path.read_bytes()
        except OSError as error:
            raise _unavailable(f"read {key} under {self.root}", error) from None

    def put_small(self, key: str, data: bytes) -> None:
        target = self._path(key)
        partial = target.with_name(f"{PARTIAL}{target.name[:16]}-{uuid.uuid4().hex[:12]}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._commit(partial, target)
        except OSError as error:
            raise _unavailable(f"store {key} under {self.root}", error) from None
        finally:
            partial.unlink(missing_ok=True)

    def fetch(self, key: str, dest: Path, digest: str) -> int:
        source = self._path(key)
        if not source.is_file():
            raise _not_found(digest)
        partial = dest.with_name(f"{PARTIAL}{dest.name}-{uuid.uuid4().hex[:12]}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            actual, size = _copy_hashed(source, partial)
            if actual != digest:
                raise _mismatch(
                    f"the model store's object {key} has sha256 {actual}: it changed after it was published; "
                    "set the annotation modelops.dev/reverify on the ModelVersion to publish it again"
                )
            os.chmod(partial, 0o444)
            os.replace(partial, dest)
        except OSError as error:
            raise _unavailable(f"copy {key} to {dest}", error) from None
        finally:
            partial.unlink(missing_ok=True)
        return size


class _ObjectStore:
    """An object storage prefix through the storage layer (`modelops_worker.storage`)."""

    def __init__(self, uri: str, credentials_dir: str | None) -> None:
        from modelops_worker import storage

        self.storage = storage
        self.location = storage.open_location(uri, credentials_dir)

    def digest_of(self, key: str) -> tuple[str, int] | None:
        try:
            return self.location.digest(key)
        except self.storage.ObjectNotFound:
            return None

    def put_verified(self, source: Path, key: str, digest: str) -> int:
        import obstore

        # Uploaded under a staging key, checked, then copied server-side under the digest name (a copy
        # is atomic: readers see the whole object or none), so a changed source is never visible there.
        self._cleanup()
        staging = f"{STAGING}/{digest[:16]}-{uuid.uuid4().hex[:12]}"
        try:
            sent, size = self.location.upload(source, staging)
            if sent != digest:
                raise _mismatch(
                    f"{source.name} changed while it was published to the model store (sha256 {sent}, "
                    f"verified as {digest}); nothing was stored"
                )
            store = self.location._store  # the storage layer's own client, for a server-side copy
            try:
                obstore.copy(store, self.location.path(staging), self.location.path(key))
            except Exception as exc:
                raise self.location._refine(exc, key) from None
        finally:
            # A staging object left behind is never read under a digest name.
            with contextlib.suppress(self.storage.StorageError):
                self.location.delete(staging)
        return size

    def _cleanup(self) -> None:
        """Staging objects of publishers that died (older than an hour): best effort, never fatal."""
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        try:
            for info in self.location.list(STAGING):
                modified = info.last_modified
                if modified is not None and modified.tzinfo is None:
                    modified = modified.replace(tzinfo=dt.UTC)
                if modified is not None and (now - modified).total_seconds() > STALE_PARTIAL_SECONDS:
                    self.location.delete(info.key)
        except self.storage.StorageError:
            return  # e.g. a key that may write but not list or delete: the staging objects stay

    def read_small(self, key: str) -> bytes | None:
        try:
            info = self.location.head(key)
            if info.size > MAX_MANIFEST_BYTES:
                return None
            return self.location.read_bytes(key, limit=MAX_MANIFEST_BYTES)
        except self.storage.ObjectNotFound:
            return None

    def put_small(self, key: str, data: bytes) -> None:
        self.location.put_bytes(data, key)

    def fetch(self, key: str, dest: Path, digest: str) -> int:
        try:
            # Into the pod's own emptyDir: nothing to make durable (storage.Location.download).
            return self.location.download(dest, digest, key=key, durable=False)[1]
        except self.storage.ObjectNotFound:
            raise _not_found(digest) from None
        except self.storage.DigestMismatch as exc:
            raise _mismatch(
                f"the model store's object {key}: {exc.message}; set the annotation modelops.dev/reverify "
                "on the ModelVersion to publish it again"
            ) from None


def _backend(store: str | Path, credentials_dir: str | None) -> _Backend:
    text = str(store)
    if "://" in text:
        return _ObjectStore(text.rstrip("/"), credentials_dir)
    return _Directory(Path(text))


def _manifest_of(data: bytes | None, digest: str) -> dict[str, Any] | None:
    """A directory manifest stored under `digest`, if the bytes are one that names exactly this digest."""
    if not data:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    if not isinstance(manifest, dict) or manifest.get("algorithm") != MANIFEST_ALGORITHM:
        return None
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
        for f in files
    ):
        return None
    if directory_digest([(f["path"], f["sha256"]) for f in files]) != digest:
        return None
    return manifest


def publish(
    source: Path, digest: str, store: str | Path, credentials_dir: str | None = None
) -> dict[str, Any]:
    """Put the verified `source` (a file or a directory) into `store` under `digest`, once.

    Raises WorkerError: ArtifactDigestMismatch (exit 65) when the source no longer hashes to the digest
    it was verified with; ModelStoreUnavailable, or the storage layer's reasons, when the store cannot
    be written.
    """
    digest = _normalize(digest)
    try:
        return _publish(source, digest, _backend(store, credentials_dir))
    except WorkerError as error:
        if error.reason in (REASON_ARTIFACT_DIGEST_MISMATCH, REASON_STORE_UNAVAILABLE):
            raise
        # The object store refused (access, bucket, network): said as the store's problem, never as the
        # source's (whose failures share these reasons), the store's own reason kept in the message.
        raise WorkerError(
            REASON_STORE_UNAVAILABLE, f"{error.reason}: {error.message}", error.exit_code
        ) from None


def _publish(source: Path, digest: str, backend: _Backend) -> dict[str, Any]:
    if source.is_dir():
        return _publish_directory(source, digest, backend)
    found = backend.digest_of(object_key(digest))
    if found is not None and found[0] == digest:
        return {"key": object_key(digest), "reused": True, "sizeBytes": found[1]}
    size = backend.put_verified(source, object_key(digest), digest)
    out: dict[str, Any] = {"key": object_key(digest), "reused": False, "sizeBytes": size}
    if found is not None:
        out["replaced"] = True  # the stored object rotted or was edited: written again
    return out


def _publish_directory(source: Path, digest: str, backend: _Backend) -> dict[str, Any]:
    manifest = build_manifest(source)
    if manifest["digest"] != digest:
        raise _mismatch(
            f"the directory {source.name} now has digest {manifest['digest']}, verified as {digest}: it changed "
            "after verification; nothing was stored"
        )
    stored = 0
    total = 0
    for entry in manifest["files"]:
        key = object_key(entry["sha256"])
        total += int(entry["size"])
        found = backend.digest_of(key)
        if found is not None and found[0] == entry["sha256"]:
            continue
        backend.put_verified(source / entry["path"], key, entry["sha256"])
        stored += 1
    reused = _manifest_of(backend.read_small(object_key(digest)), digest) is not None
    if not reused:
        backend.put_small(object_key(digest), json.dumps(manifest, indent=1).encode() + b"\n")
    return {
        "key": object_key(digest),
        "reused": reused and stored == 0,
        "sizeBytes": total,
        "files": len(manifest["files"]),
        "filesStored": stored,
    }


def fetch(store: str | Path, digest: str, dest: Path, credentials_dir: str | None = None) -> dict[str, Any]:
    """Copy the artifact `digest` from `store` to `dest` (a file, or a directory for a directory
    artifact), verified; the result for the termination message.

    Raises WorkerError (exit 65): ArtifactNotFound when the store has no such object,
    ArtifactDigestMismatch when its bytes do not hash to the digest (`dest` is then not created).
    """
    digest = _normalize(digest)
    backend = _backend(store, credentials_dir)
    started = time.monotonic()
    manifest = _manifest_of(backend.read_small(object_key(digest)), digest)
    if manifest is not None:
        size = _fetch_directory(backend, manifest, dest)
        what = f"{len(manifest['files'])} files"
    else:
        size = backend.fetch(object_key(digest), dest, digest)
        what = f"{size} bytes"
    seconds = max(time.monotonic() - started, 1e-6)
    return {
        "status": "Succeeded",
        "reason": "Fetched",
        "exitCode": 0,
        "message": f"fetched {object_key(digest)} ({what}) in {seconds:.2f}s and verified its sha256",
        "artifact": {"path": str(dest), "sha256": digest, "sizeBytes": size},
        "seconds": round(seconds, 3),
        "bytesPerSecond": int(size / seconds),
    }


def _fetch_directory(backend: _Backend, manifest: dict[str, Any], dest: Path) -> int:
    """Every file of the manifest into a partial directory, each verified, then renamed to `dest`."""
    partial = dest.with_name(f"{PARTIAL}{dest.name}-{uuid.uuid4().hex[:12]}")
    size = 0
    try:
        for entry in manifest["files"]:
            rel = Path(entry["path"])
            if rel.is_absolute() or ".." in rel.parts:
                raise _mismatch(f"the manifest names the path {entry['path']!r}, which leaves the directory")
            size += backend.fetch(object_key(entry["sha256"]), partial / rel, entry["sha256"])
        (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        if dest.is_dir():  # an earlier run of this init container (the pod restarted): replaced whole
            shutil.rmtree(dest)
        os.replace(partial, dest)
    except OSError as error:
        raise _unavailable(f"assemble {dest}", error) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return size
