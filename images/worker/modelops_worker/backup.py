"""`modelops-worker backup` and `restore`: copies that are complete and verified, or never trusted.

A backup is a new directory `<UTC timestamp>` under the destination. Files are copied into a hidden
`.partial-<name>` directory while their sha256 is computed, every file is fsynced, `manifest.json`
(each file's sha256 and size) is written last through a temporary file and a rename, and only then is
the directory renamed to its final name. A directory without a readable manifest is never listed,
counted or restored from; one left behind by a killed run is removed by the next run.

Retention runs after each backup, over complete backups only, oldest first: everything beyond the
newest `keep_last` goes, and so does everything older than `max_age`, except the newest backup,
which is never deleted (an old good backup beats none).

A restore verifies the backup against its manifest before anything is written, copies into a hidden
directory, verifies the copies again, checks any digests the caller expects (a ModelVersion's
artifact sha256), and only then moves the files into place. Any mismatch fails with exit code 65 and
names the file; nothing is moved.

No torch here: the backup pod needs only the standard library.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.api.runconfig import EXIT_BAD_CONFIG, EXIT_BAD_DATA
from modelops_worker.errors import WorkerError
from modelops_worker.files import fsync_dir as _fsync_dir
from modelops_worker.files import sha256_file

MANIFEST = "manifest.json"
PARTIAL_PREFIX = ".partial-"
RESTORE_PREFIX = ".restore-"
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_VERSION = 1
# Records of kept backups in the result: the termination message holds 4 KiB at most.
RESULT_RECORDS = 8

REASON_BACKUP_SUCCEEDED = "BackupSucceeded"
REASON_BACKUP_FAILED = "BackupFailed"
REASON_SOURCE_NOT_FOUND = "BackupSourceNotFound"
REASON_BACKUP_CORRUPT = "BackupCorrupt"
REASON_BACKUP_NOT_FOUND = "BackupNotFound"
REASON_RESTORE_SUCCEEDED = "RestoreSucceeded"
REASON_RESTORE_SKIPPED = "RestoreSkipped"
REASON_DIGEST_MISMATCH = "DigestMismatch"

_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BackupCorrupt(WorkerError):
    """The backup does not match its manifest (or has none): permanent, nothing is used."""

    def __init__(self, message: str) -> None:
        super().__init__(REASON_BACKUP_CORRUPT, message, EXIT_BAD_DATA)


def parse_duration(text: str) -> dt.timedelta:
    """`36h`, `7d`, `1h30m` -> a timedelta (the grammar of spec.backup.retention.maxAge)."""
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text):
        raise WorkerError(
            "InvalidRetention",
            f"--max-age {text!r} is not a duration: use a number with s, m, h or d (e.g. 36h, 7d)",
            EXIT_BAD_CONFIG,
        )
    return dt.timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in parts))


def _copy_hashing(src: Path, dst: Path) -> tuple[str, int]:
    """Copy one file, fsync it; (sha256, size) of the bytes written."""
    h = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest(), size


def _source_files(source: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every regular file to back up; half-written hidden entries are left out.

    A single file is backed up under its own name. In a directory, entries whose name starts with a
    dot (a checkpoint being written, `.tmp-ckpt-*`, or one set aside as bad) are skipped: they are
    either incomplete or known to be broken.
    """
    if source.is_file():
        return [(source.name, source)]
    if not source.is_dir():
        raise WorkerError(
            REASON_SOURCE_NOT_FOUND, f"--source {source} does not exist (nothing to back up)", EXIT_BAD_DATA
        )
    out: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                out.append((path.relative_to(source).as_posix(), path))
    return out


def _write_manifest(directory: Path, manifest: Mapping[str, Any]) -> str:
    raw = json.dumps(manifest, sort_keys=True, indent=1).encode()
    tmp = directory / f".{MANIFEST}.tmp"
    with tmp.open("wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, directory / MANIFEST)
    _fsync_dir(directory)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Backup:
    """A complete backup: its directory, manifest and the manifest's own sha256."""

    name: str
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def created(self) -> dt.datetime:
        return dt.datetime.strptime(str(self.manifest["createdAt"]), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC
        )

    @property
    def files(self) -> int:
        return len(self.manifest["files"])

    @property
    def size_bytes(self) -> int:
        return sum(int(f["sizeBytes"]) for f in self.manifest["files"].values())

    def record(self, prefix: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": f"{prefix}/{self.name}" if prefix else self.name,
            "time": self.manifest["createdAt"],
            "manifestSha256": self.manifest_sha256,
            "files": self.files,
            "sizeBytes": self.size_bytes,
        }


def read_manifest(directory: Path) -> tuple[dict[str, Any], str]:
    """The manifest of a backup directory and its sha256; BackupCorrupt when missing or unreadable."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupCorrupt(f"{directory.name} has no {MANIFEST}: the backup never finished, it is not used")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        str(manifest["createdAt"])
        if not isinstance(files, dict) or not all(
            isinstance(v, dict) and "sha256" in v and "sizeBytes" in v for v in files.values()
        ):
            raise TypeError("files must map each name to its sha256 and sizeBytes")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupCorrupt(
            f"{directory.name}/{MANIFEST} is unreadable ({exc}): the backup is not used"
        ) from None
    return manifest, hashlib.sha256(raw).hexdigest()


def verify(directory: Path) -> Backup:
    """Check every file of a backup against its manifest; BackupCorrupt names the first that differs."""
    manifest, digest = read_manifest(directory)
    for name, entry in sorted(manifest["files"].items()):
        f = directory / name
        if not f.is_file():
            raise BackupCorrupt(f"{directory.name}: {name} is missing (listed in the manifest)")
        size = f.stat().st_size
        if size != int(entry["sizeBytes"]):
            raise BackupCorrupt(
                f"{directory.name}: {name} has {size} bytes, the manifest says {entry['sizeBytes']}"
            )
        actual = sha256_file(f)
        if actual != entry["sha256"]:
            raise BackupCorrupt(
                f"{directory.name}: sha256 of {name} is {actual}, the manifest says {entry['sha256']}: "
                "the backup was altered or damaged"
            )
    return Backup(directory.name, directory, manifest, digest)


def complete_backups(root: Path) -> list[Backup]:
    """Backups under `root` with a readable manifest, oldest first (files are not re-hashed here)."""
    if not root.is_dir():
        return []
    out = []
    for entry in root.iterdir():
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            manifest, digest = read_manifest(entry)
        except BackupCorrupt:
            continue
        out.append(Backup(entry.name, entry, manifest, digest))
    return sorted(out, key=lambda b: (b.manifest["createdAt"], b.name))


def to_prune(
    backups: list[Backup], *, keep_last: int, max_age: dt.timedelta | None, now: dt.datetime
) -> list[Backup]:
    """Which complete backups retention deletes (oldest first); never the newest one."""
    if not backups:
        return []
    ordered = sorted(backups, key=lambda b: (b.manifest["createdAt"], b.name))
    newest = ordered[-1]
    doomed = ordered[: max(0, len(ordered) - keep_last)]
    if max_age is not None:
        doomed += [b for b in ordered[-keep_last:] if now - b.created > max_age]
    return [b for b in ordered if b in doomed and b is not newest]


def _unique_name(root: Path, now: dt.datetime) -> str:
    base = now.astimezone(dt.UTC).strftime(NAME_FORMAT)
    name, n = base, 1
    while (root / name).exists() or (root / f"{PARTIAL_PREFIX}{name}").exists():
        name = f"{base}-{n}"
        n += 1
    return name


def backup(
    source: Path,
    root: Path,
    *,
    prefix: str,
    keep_last: int,
    max_age: dt.timedelta | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Take one backup of `source` into a new directory of `root`, then apply retention.

    `prefix` is `root`'s path inside the destination claim, for the paths reported back.
    """
    now = now or dt.datetime.now(dt.UTC)
    files = _source_files(source)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)  # a run killed mid-copy (concurrencyPolicy Forbid)
    name = _unique_name(root, now)
    partial = root / f"{PARTIAL_PREFIX}{name}"
    partial.mkdir()
    entries: dict[str, dict[str, Any]] = {}
    for rel, path in files:
        digest, size = _copy_hashing(path, partial / rel)
        entries[rel] = {"sha256": digest, "sizeBytes": size}
    manifest = {
        "version": MANIFEST_VERSION,
        "createdAt": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": str(source.name),
        "files": entries,
    }
    _write_manifest(partial, manifest)
    os.rename(partial, root / name)
    _fsync_dir(root)
    taken = verify(root / name)
    kept = complete_backups(root)
    pruned = to_prune(kept, keep_last=keep_last, max_age=max_age, now=now)
    for old in pruned:
        shutil.rmtree(old.path)
    kept = [b for b in kept if b not in pruned]
    return {
        "status": "Succeeded",
        "reason": REASON_BACKUP_SUCCEEDED,
        "message": f"backed up {taken.files} files ({taken.size_bytes} bytes) to {name}; "
        f"{len(kept)} kept, {len(pruned)} pruned",
        "exitCode": 0,
        "backup": taken.record(prefix),
        "kept": len(kept),
        # Without paths (the operator knows the prefix): the message must stay under 4 KiB.
        "backups": [{k: v for k, v in b.record("").items() if k != "path"} for b in kept[-RESULT_RECORDS:]],
        "pruned": [b.name for b in pruned],
    }


def _expected(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, digest = pair.partition("=")
        digest = digest.lower().removeprefix("sha256:")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise WorkerError(
                "InvalidRestore", f"--expect {pair!r}: use <file>=<64 hex sha256>", EXIT_BAD_CONFIG
            )
        out[name] = digest
    return out


def restore(
    backup_dir: Path, target: Path, *, expect: Iterable[str] = (), if_empty: bool = False
) -> dict[str, Any]:
    """Verify a backup, copy it into `target`, verify the copies, check `expect`, then move into place.

    With `if_empty`, a target that already holds files is left alone (a restarted training pod must
    not roll its checkpoints back to the backup).
    """
    expected = _expected(expect)
    if not backup_dir.is_dir():
        raise WorkerError(
            REASON_BACKUP_NOT_FOUND,
            f"backup {backup_dir} does not exist: check restoreFrom.backup.path",
            EXIT_BAD_DATA,
        )
    if if_empty and target.is_dir() and any(not p.name.startswith(".") for p in target.iterdir()):
        return {
            "status": "Succeeded",
            "reason": REASON_RESTORE_SKIPPED,
            "message": f"{target} already holds data; the backup was not copied over it",
            "exitCode": 0,
        }
    taken = verify(backup_dir)
    files = taken.manifest["files"]
    for name, digest in expected.items():
        if name not in files:
            raise WorkerError(
                REASON_DIGEST_MISMATCH,
                f"{name} is not in backup {taken.name}; nothing was restored",
                EXIT_BAD_DATA,
            )
        if files[name]["sha256"] != digest:
            raise WorkerError(
                REASON_DIGEST_MISMATCH,
                f"backup {taken.name} holds {name} with sha256 {files[name]['sha256']}, expected {digest}; "
                "nothing was restored",
                EXIT_BAD_DATA,
            )
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f"{RESTORE_PREFIX}{taken.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        for name, entry in files.items():
            digest, _ = _copy_hashing(backup_dir / name, staging / name)
            if digest != entry["sha256"]:
                raise BackupCorrupt(
                    f"{name} changed while it was copied (sha256 {digest}); nothing was restored"
                )
        _fsync_dir(staging)
        for top in sorted({name.split("/", 1)[0] for name in files}):
            dest = target / top
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(staging / top, dest)
        _fsync_dir(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "status": "Succeeded",
        "reason": REASON_RESTORE_SUCCEEDED,
        "message": f"restored {taken.files} files ({taken.size_bytes} bytes) from {taken.name}, sha256 verified",
        "exitCode": 0,
        "backup": {"name": taken.name, "manifestSha256": taken.manifest_sha256},
        "sha256": next(iter(expected.values()), taken.manifest_sha256),
    }


def check(directory: Path, *, expect: Iterable[str]) -> dict[str, Any]:
    """Verify files in place (a claim restored from a VolumeSnapshot) against expected digests."""
    expected = _expected(expect)
    if not expected:
        raise WorkerError(
            "InvalidRestore", "--check needs at least one --expect <file>=<sha256>", EXIT_BAD_CONFIG
        )
    for name, digest in expected.items():
        f = directory / name
        if not f.is_file():
            raise WorkerError(REASON_DIGEST_MISMATCH, f"{name} is not in the restored data", EXIT_BAD_DATA)
        actual = sha256_file(f)
        if actual != digest:
            raise WorkerError(
                REASON_DIGEST_MISMATCH,
                f"sha256 of the restored {name} is {actual}, expected {digest}: do not use this data",
                EXIT_BAD_DATA,
            )
    return {
        "status": "Succeeded",
        "reason": REASON_RESTORE_SUCCEEDED,
        "message": f"{len(expected)} file(s) verified in place",
        "exitCode": 0,
        "sha256": next(iter(expected.values())),
    }


# -- the command line ---------------------------------------------------------------------------------

COMMANDS = ("backup", "restore")


def add_parsers(sub: Any) -> None:
    """Add `backup` and `restore` to the `modelops-worker` subcommands."""
    b = sub.add_parser("backup", help="copy a claim's files into a new backup with a sha256 manifest")
    b.add_argument("--source", required=True, help="file or directory to back up (mounted read-only)")
    b.add_argument("--dest", help="directory that holds the backups (on the destination claim)")
    b.add_argument(
        "--dest-uri",
        help="object storage prefix that holds the backups instead (s3://bucket/prefix, docs/storage.md)",
    )
    b.add_argument("--credentials-dir", help="the mounted credentials Secret (default: the pod's identity)")
    b.add_argument("--prefix", default="", help="--dest's path inside its claim, for the reported paths")
    b.add_argument("--keep-last", type=int, default=7, help="keep at most this many backups")
    b.add_argument("--max-age", help="delete backups older than this (e.g. 36h, 7d); never the newest")
    r = sub.add_parser("restore", help="verify a backup against its manifest, then copy it into place")
    r.add_argument("--backup", help="the backup directory (with manifest.json)")
    r.add_argument("--target", required=True, help="directory to restore into (or to --check in place)")
    r.add_argument(
        "--expect", action="append", default=[], help="<file>=<sha256> the restored file must have (repeat)"
    )
    r.add_argument("--if-empty", action="store_true", help="leave a target that already holds files alone")
    r.add_argument("--check", action="store_true", help="only verify --expect digests in --target")
    r.add_argument("--backup-uri", help="a backup directory in object storage (status.backup.backups[].uri)")
    r.add_argument("--credentials-dir", help="the mounted credentials Secret (default: the pod's identity)")


def run(args: Any) -> int:
    """Run `backup` or `restore`; the result JSON goes to the termination message and stdout."""
    import logging

    from modelops_worker.environment import termination_log_path, write_result

    log = logging.getLogger("modelops_worker.backup")
    try:
        if args.command == "backup":
            if args.keep_last < 1:
                raise WorkerError("InvalidRetention", "--keep-last must be at least 1", EXIT_BAD_CONFIG)
            if args.dest_uri:
                from modelops_worker.storage import backups as store_backups
                from modelops_worker.storage import open_location

                out = store_backups.backup(
                    Path(args.source),
                    open_location(args.dest_uri, args.credentials_dir),
                    keep_last=args.keep_last,
                    max_age=parse_duration(args.max_age) if args.max_age else None,
                )
            elif not args.dest:
                raise WorkerError("InvalidBackup", "backup needs --dest or --dest-uri", EXIT_BAD_CONFIG)
            else:
                out = backup(
                    Path(args.source),
                    Path(args.dest),
                    prefix=args.prefix.strip("/"),
                    keep_last=args.keep_last,
                    max_age=parse_duration(args.max_age) if args.max_age else None,
                )
        elif args.check:
            out = check(Path(args.target), expect=args.expect)
        elif args.backup_uri:
            from modelops_worker.storage import backups as store_backups
            from modelops_worker.storage import open_location

            location = open_location(args.backup_uri, args.credentials_dir)
            out = store_backups.restore(
                location, Path(args.target), expect=args.expect, if_empty=args.if_empty
            )
        elif not args.backup:
            raise WorkerError("InvalidRestore", "restore needs --backup (or --check)", EXIT_BAD_CONFIG)
        else:
            out = restore(Path(args.backup), Path(args.target), expect=args.expect, if_empty=args.if_empty)
        code = 0
        log.info("%s", out["message"])
    except WorkerError as exc:
        out = {"status": "Failed", "reason": exc.reason, "message": exc.message, "exitCode": exc.exit_code}
        code = exc.exit_code
        log.error("%s: %s", exc.reason, exc.message)
    except OSError as exc:
        # A full or unavailable destination: retryable, and the message says which path.
        out = {
            "status": "Failed",
            "reason": REASON_BACKUP_FAILED if args.command == "backup" else "RestoreFailed",
            "message": f"{type(exc).__name__}: {exc}",
            "exitCode": 1,
        }
        code = 1
        log.error("%s", out["message"])
    write_result(termination_log_path(), out)
    print(json.dumps(out, separators=(",", ":")))
    return code
