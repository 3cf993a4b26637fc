"""Copy backups in object storage: the same layout, manifest, retention and verified restore as on a claim.

A backup is `<destination>/<UTC timestamp>/` holding the files and `manifest.json` (each file's sha256
and size, written last). Objects appear only when their upload completes, so the manifest is the
commit point: a prefix without a readable manifest is an unfinished backup, never listed, counted or
restored from, and the next run (CronJobs run one at a time, `concurrencyPolicy: Forbid`) deletes it.
Each file's sha256 is computed over exactly the bytes uploaded; after the upload every object's size is
checked against the manifest by listing.

Retention is `modelops_worker.backup.to_prune` itself (newest `keepLast`, `maxAge`, never the newest).
A restore reads the manifest, checks the digests the caller expects against it before anything is
downloaded, downloads every file with its sha256 verified while streaming into a hidden directory of
the target, and then hands that directory to the claim restore, which verifies it against the manifest
once more and moves the files into place: nothing reaches the target unverified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelops_worker import backup as claim_backup
from modelops_worker.errors import WorkerError
from modelops_worker.storage import Location, ObjectNotFound, StorageError

MANIFEST = claim_backup.MANIFEST


def _manifest(location: Location, name: str) -> tuple[dict[str, Any], str] | None:
    """A backup's manifest and its sha256, None when it has none (unfinished) or it is unreadable."""
    try:
        raw = location.read_bytes(f"{name}/{MANIFEST}", limit=64 << 20)
    except ObjectNotFound:
        return None
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        str(manifest["createdAt"])
        if not isinstance(files, dict):
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return manifest, hashlib.sha256(raw).hexdigest()


def _names(location: Location) -> dict[str, list[str]]:
    """Every backup directory under the destination and the keys in it."""
    out: dict[str, list[str]] = {}
    for obj in location.list():
        name, sep, _ = obj.key.partition("/")
        if sep and not name.startswith("."):
            out.setdefault(name, []).append(obj.key)
    return out


def complete_backups(location: Location) -> tuple[list[claim_backup.Backup], list[str]]:
    """(complete backups oldest first, names of unfinished ones) under the destination."""
    done: list[claim_backup.Backup] = []
    unfinished: list[str] = []
    for name in sorted(_names(location)):
        found = _manifest(location, name)
        if found is None:
            unfinished.append(name)
            continue
        manifest, digest = found
        done.append(claim_backup.Backup(name, Path(name), manifest, digest))
    return sorted(done, key=lambda b: (b.manifest["createdAt"], b.name)), unfinished


def _delete_backup(location: Location, name: str) -> None:
    # The manifest first: a deletion cut short leaves an unfinished backup, never a complete-looking one.
    location.delete(f"{name}/{MANIFEST}")
    for obj in location.list(f"{name}/"):
        location.delete(obj.key)  # keys are relative to the destination


def backup(
    source: Path,
    location: Location,
    *,
    keep_last: int,
    max_age: dt.timedelta | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One backup of `source` into a new prefix of `location`, then retention (the claim's result shape)."""
    now = now or dt.datetime.now(dt.UTC)
    files = claim_backup._source_files(source)
    existing, unfinished = complete_backups(location)
    for stale in unfinished:
        _delete_backup(location, stale)  # a run killed mid-upload
    taken_names = {b.name for b in existing}
    base = now.astimezone(dt.UTC).strftime(claim_backup.NAME_FORMAT)
    name, n = base, 1
    while name in taken_names:
        name = f"{base}-{n}"
        n += 1
    entries: dict[str, dict[str, Any]] = {}
    for rel, path in files:
        digest, size = location.upload(path, f"{name}/{rel}")
        entries[rel] = {"sha256": digest, "sizeBytes": size}
    stored = {obj.key.removeprefix(f"{name}/"): obj.size for obj in location.list(f"{name}/")}
    for rel, entry in entries.items():
        if stored.get(rel) != entry["sizeBytes"]:
            raise claim_backup.BackupCorrupt(
                f"{location.uri_of(name)}/{rel}: the store holds {stored.get(rel)} bytes after the upload, "
                f"{entry['sizeBytes']} were sent; the backup is not committed"
            )
    manifest = {
        "version": claim_backup.MANIFEST_VERSION,
        "createdAt": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": str(source.name),
        "files": entries,
    }
    raw = json.dumps(manifest, sort_keys=True, indent=1).encode()
    location.put_bytes(raw, f"{name}/{MANIFEST}")
    taken = claim_backup.Backup(name, Path(name), manifest, hashlib.sha256(raw).hexdigest())
    kept = sorted([*existing, taken], key=lambda b: (b.manifest["createdAt"], b.name))
    pruned = claim_backup.to_prune(kept, keep_last=keep_last, max_age=max_age, now=now)
    for old in pruned:
        _delete_backup(location, old.name)
    kept = [b for b in kept if b not in pruned]
    prefix = location.uri.rstrip("/")
    return {
        "status": "Succeeded",
        "reason": claim_backup.REASON_BACKUP_SUCCEEDED,
        "message": f"backed up {taken.files} files ({taken.size_bytes} bytes) to {prefix}/{name}; "
        f"{len(kept)} kept, {len(pruned)} pruned",
        "exitCode": 0,
        "backup": {**taken.record(""), "uri": f"{prefix}/{name}"},
        "kept": len(kept),
        "backups": [
            {k: v for k, v in b.record("").items() if k != "path"}
            for b in kept[-claim_backup.RESULT_RECORDS :]
        ],
        "pruned": [b.name for b in pruned],
    }


def restore(
    location: Location, target: Path, *, expect: Iterable[str] = (), if_empty: bool = False
) -> dict[str, Any]:
    """Download the backup at `location` (a backup directory) verified, then restore it like a claim's."""
    expected = claim_backup._expected(expect)
    if if_empty and target.is_dir() and any(not p.name.startswith(".") for p in target.iterdir()):
        return {
            "status": "Succeeded",
            "reason": claim_backup.REASON_RESTORE_SKIPPED,
            "message": f"{target} already holds data; the backup was not copied over it",
            "exitCode": 0,
        }
    try:
        raw = location.read_bytes(MANIFEST, limit=64 << 20)
    except ObjectNotFound:
        raise WorkerError(
            claim_backup.REASON_BACKUP_NOT_FOUND,
            f"{location.uri} has no {MANIFEST}: not a complete backup; check restoreFrom.backup.uri "
            "(status.backup.backups[].uri lists them)",
            65,
        ) from None
    try:
        files = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError):
        raise claim_backup.BackupCorrupt(
            f"{location.uri}/{MANIFEST} is unreadable: the backup is not used"
        ) from None
    for name, digest in expected.items():
        if name not in files or files[name]["sha256"] != digest:
            have = files.get(name, {}).get("sha256")
            raise WorkerError(
                claim_backup.REASON_DIGEST_MISMATCH,
                f"backup {location.uri} holds {name} with sha256 {have}, expected {digest}; nothing was restored",
                65,
            )
    target.mkdir(parents=True, exist_ok=True)
    download = target / f".download-{location.parsed.key.rstrip('/').rsplit('/', 1)[-1]}"
    shutil.rmtree(download, ignore_errors=True)
    try:
        download.mkdir()
        for name, entry in files.items():
            try:
                location.download(
                    download / name, entry["sha256"], key=name, expected_size=int(entry["sizeBytes"])
                )
            except StorageError as exc:
                if exc.reason == "DigestMismatch":
                    raise claim_backup.BackupCorrupt(
                        f"{location.uri}: {name} does not match its manifest ({exc.message})"
                    ) from None
                raise
        (download / MANIFEST).write_bytes(raw)
        out = claim_backup.restore(download, target, expect=list(expect))
    finally:
        shutil.rmtree(download, ignore_errors=True)
    out["message"] = str(out["message"]).replace(f"from {download.name}", f"from {location.uri}")
    return out
