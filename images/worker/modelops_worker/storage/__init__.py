"""The one storage layer of every pod: read and write `pvc://`, `s3://`, `gs://`, `az://` and `https://`.

Built on obstore (Python bindings of Rust's `object_store`, the crate Arrow, Delta Lake and InfluxDB
use): it needs no botocore (whose pins clash with the kubernetes client), streams GETs in chunks,
uploads in multipart parts with bounded concurrency, and retries with exponential backoff and jitter
for connection errors, timeouts and 5xx/429 answers. docs/storage.md says why this library.

What this module adds on top is what the operator's guarantees need:

- `download` streams into a temporary file next to the destination while computing the sha256, fsyncs
  it, checks the digest (and size) and only then renames it into place: a partial or wrong file is
  never where a reader looks. A connection lost mid-object resumes with a ranged GET pinned to the
  object's ETag, so a changed object is never stitched together from two versions.
- `upload` streams a file in parts (bounded memory: `PART_SIZE` x `PART_CONCURRENCY`), computing the
  sha256 of exactly the bytes sent; the object appears only when the upload completes.
- Failures become typed errors with the reasons and exit codes of `modelops.api.storage`: access
  denied, bucket not found and object not found are permanent (exit 64/65, the condition says what to
  fix), an unreachable store is retryable (exit 75) after the library's own retries.
- Credentials come from a directory of files (the mounted Secret, `ENV_CREDENTIALS_DIR`) or, without
  one, from the pod's identity (IRSA / workload identity / instance metadata, as the library finds it).
  No secret value is ever put into a message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.api.storage import (
    CREDENTIALS_MOUNT,
    ENV_CLAIMS_DIR,
    ENV_CREDENTIALS_DIR,
    ENV_SECRET_NAME_PREFIX,
    EXIT_CODES,
    KEY_ACCESS_KEY_ID,
    KEY_AZURE_ACCOUNT_KEY,
    KEY_AZURE_ACCOUNT_NAME,
    KEY_AZURE_SAS_TOKEN,
    KEY_CA_BUNDLE,
    KEY_ENDPOINT,
    KEY_GOOGLE_SERVICE_ACCOUNT,
    KEY_REGION,
    KEY_SECRET_ACCESS_KEY,
    KEY_SESSION_TOKEN,
    REASON_ACCESS_DENIED,
    REASON_BUCKET_NOT_FOUND,
    REASON_DIGEST_MISMATCH,
    REASON_INVALID_CONFIG,
    REASON_OBJECT_NOT_FOUND,
    REASON_UNREACHABLE,
    WHAT_TO_DO,
    ParsedUri,
    parse_uri,
)
from modelops_worker.errors import WorkerError

__all__ = [
    "BucketNotFound",
    "DigestMismatch",
    "InvalidStorageConfig",
    "Location",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageAccessDenied",
    "StorageError",
    "StorageUnreachable",
    "open_location",
]

CHUNK = 8 << 20  # the GET stream's chunk, and the unit of hashing and writing
PART_SIZE = 8 << 20  # multipart part size
PART_CONCURRENCY = 4  # parts in flight: memory of an upload is about PART_SIZE x this
RESUMES = 5  # ranged re-GETs of one download after a lost connection
ENV_RETRY_TIMEOUT = "MODELOPS_STORAGE_RETRY_TIMEOUT"  # seconds the library retries one request
ENV_MAX_RETRIES = "MODELOPS_STORAGE_MAX_RETRIES"
DEFAULT_RETRY_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 6
DEFAULT_REGION = "us-east-1"


# -- errors ---------------------------------------------------------------------------------------------


class StorageError(WorkerError):
    """A storage failure with its reason, the URI it concerns, and the exit code of the reason."""

    reason_code = REASON_UNREACHABLE

    def __init__(self, uri: str, detail: str, *, credentials: str | None = None) -> None:
        who = f" (credentials: {credentials})" if credentials else ""
        hint = WHAT_TO_DO.get(self.reason_code, "")
        message = f"{uri}{who}: {detail}" + (f"; {hint}" if hint else "")
        super().__init__(self.reason_code, message, EXIT_CODES[self.reason_code])
        self.uri = uri

    @property
    def permanent(self) -> bool:
        return self.reason_code != REASON_UNREACHABLE


class StorageAccessDenied(StorageError):
    reason_code = REASON_ACCESS_DENIED


class BucketNotFound(StorageError):
    reason_code = REASON_BUCKET_NOT_FOUND


class ObjectNotFound(StorageError):
    reason_code = REASON_OBJECT_NOT_FOUND


class StorageUnreachable(StorageError):
    reason_code = REASON_UNREACHABLE


class InvalidStorageConfig(StorageError):
    reason_code = REASON_INVALID_CONFIG


class DigestMismatch(StorageError):
    reason_code = REASON_DIGEST_MISMATCH


_SECRETISH = re.compile(r"(Credential=|Signature=|X-Amz-[A-Za-z-]+=|AWSAccessKeyId=)[^&\s,\"]+")


_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def _clean(text: str) -> str:
    """A library error as one short line: the store's error code and message when it sent them, the
    status line otherwise, without the debug dump, request ids or anything that looks like a signature."""
    head = text.split("Debug source", 1)[0]
    code, message = _S3_CODE.search(head), _S3_MESSAGE.search(head)
    head = head.split("<?xml", 1)[0]
    if code:
        head = f"{head.rstrip(' :')}: {code.group(1)}" + (f": {message.group(1)}" if message else "")
    return " ".join(_SECRETISH.sub(r"\1<redacted>", head).split())[:500]


# -- credentials ----------------------------------------------------------------------------------------


def read_credentials(directory: Path | str | None) -> dict[str, str]:
    """The Secret's keys from a directory of files (one per key); empty without a directory."""
    if directory is None or str(directory) == "":
        return {}
    root = Path(directory)
    if not root.is_dir():
        raise InvalidStorageConfig(
            str(root), "the credentials directory does not exist: is the Secret mounted?", credentials=None
        )
    out: dict[str, str] = {}
    for entry in sorted(root.iterdir()):
        # A mounted Secret has ..data and timestamped directories beside the key symlinks.
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            out[entry.name] = entry.read_text().strip() if entry.name != KEY_CA_BUNDLE else entry.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidStorageConfig(
                str(root), f"cannot read the credentials key {entry.name}: {type(exc).__name__}"
            ) from None
    return out


def _credentials_dir(credentials_dir: Path | str | None) -> Path | None:
    if credentials_dir is not None and str(credentials_dir) != "":
        return Path(credentials_dir)
    env = os.environ.get(ENV_CREDENTIALS_DIR, "")
    return Path(env) if env else None


def _retry_config() -> dict[str, Any]:
    timeout = float(os.environ.get(ENV_RETRY_TIMEOUT, DEFAULT_RETRY_TIMEOUT))
    return {
        "max_retries": int(os.environ.get(ENV_MAX_RETRIES, DEFAULT_MAX_RETRIES)),
        "retry_timeout": dt.timedelta(seconds=timeout),
        "backoff": {
            "init_backoff": dt.timedelta(milliseconds=100),
            "max_backoff": dt.timedelta(seconds=min(15.0, max(timeout / 4, 0.5))),
            "base": 2,
        },
    }


def _client_options(creds: Mapping[str, str], endpoint: str | None) -> dict[str, Any]:
    # No overall deadline short enough to cut a multi-GB object; a stalled read fails after a minute
    # and is retried (or resumed) like any other transient error.
    opts: dict[str, Any] = {"connect_timeout": "10s", "timeout": "6h", "read_timeout": "60s"}
    if endpoint and endpoint.startswith("http://"):
        opts["allow_http"] = True
    ca = creds.get(KEY_CA_BUNDLE)
    if ca:
        if "-----BEGIN CERTIFICATE-----" not in ca:
            raise InvalidStorageConfig(
                endpoint or "", f"the Secret's {KEY_CA_BUNDLE} is not a PEM certificate bundle"
            )
        opts["root_certificate"] = ca
    return opts


def _make_store(parsed: ParsedUri, creds: Mapping[str, str], claims_dir: Path | None) -> Any:
    import obstore.store as stores

    if parsed.scheme == "pvc":
        root = (
            claims_dir or Path(os.environ.get(ENV_CLAIMS_DIR, "/var/run/modelops/claims"))
        ) / parsed.bucket
        if not root.is_dir():
            raise BucketNotFound(
                parsed.uri,
                f"claim {parsed.bucket} is not mounted at {root}: check the claim name in the URI",
            )
        return stores.LocalStore(prefix=root, mkdir=True)
    retry = _retry_config()
    if parsed.scheme == "s3":
        endpoint = (
            creds.get(KEY_ENDPOINT) or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(KEY_ENDPOINT)
        )
        if endpoint and not re.match(r"^https?://[^/\s]+", endpoint):
            raise InvalidStorageConfig(parsed.uri, f"{KEY_ENDPOINT} {endpoint!r} is not an http(s):// URL")
        config: dict[str, Any] = {}
        if creds.get(KEY_ACCESS_KEY_ID) or creds.get(KEY_SECRET_ACCESS_KEY):
            if not (creds.get(KEY_ACCESS_KEY_ID) and creds.get(KEY_SECRET_ACCESS_KEY)):
                raise InvalidStorageConfig(
                    parsed.uri,
                    f"the credentials Secret must hold both {KEY_ACCESS_KEY_ID} and {KEY_SECRET_ACCESS_KEY}",
                )
            config["access_key_id"] = creds[KEY_ACCESS_KEY_ID]
            config["secret_access_key"] = creds[KEY_SECRET_ACCESS_KEY]
            if creds.get(KEY_SESSION_TOKEN):
                config["session_token"] = creds[KEY_SESSION_TOKEN]
        region = creds.get(KEY_REGION) or os.environ.get(KEY_REGION) or os.environ.get("AWS_DEFAULT_REGION")
        config["region"] = region or DEFAULT_REGION
        if endpoint:
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        return stores.S3Store(
            parsed.bucket,
            config=config,  # type: ignore[arg-type]
            client_options=_client_options(creds, endpoint),  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )
    if parsed.scheme == "gs":
        gconfig: dict[str, Any] = {}
        if creds.get(KEY_GOOGLE_SERVICE_ACCOUNT):
            gconfig["service_account_key"] = creds[KEY_GOOGLE_SERVICE_ACCOUNT]
        return stores.GCSStore(
            parsed.bucket,
            config=gconfig,  # type: ignore[arg-type]
            client_options=_client_options(creds, None),  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )
    if parsed.scheme == "az":
        aconfig: dict[str, Any] = {}
        for key, name in (
            (KEY_AZURE_ACCOUNT_NAME, "account_name"),
            (KEY_AZURE_ACCOUNT_KEY, "account_key"),
            (KEY_AZURE_SAS_TOKEN, "sas_key"),
        ):
            if creds.get(key):
                aconfig[name] = creds[key]
        return stores.AzureStore(
            parsed.bucket,
            config=aconfig,  # type: ignore[arg-type]
            client_options=_client_options(creds, None),  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )
    return stores.HTTPStore.from_url(
        f"https://{parsed.bucket}",
        client_options=_client_options(creds, None),  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
    )


# -- the location ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """An object's metadata; `key` is relative to the location it was listed from."""

    key: str
    size: int
    etag: str | None = None
    last_modified: dt.datetime | None = None


def _join(base: str, key: str) -> str:
    if not key:
        return base
    if not base:
        return key
    return f"{base.rstrip('/')}/{key.lstrip('/')}"


class Location:
    """A URI opened with its credentials: the object (or prefix) it names, and keys below it."""

    def __init__(self, uri: str, store: Any, parsed: ParsedUri, credentials: str | None) -> None:
        self.uri = uri
        self.parsed = parsed
        self._store = store
        self._credentials = credentials

    # ---- naming

    def path(self, key: str = "") -> str:
        """The store path of `key` below this location ('' is the location itself)."""
        return _join(self.parsed.key, key)

    def uri_of(self, key: str = "") -> str:
        p = self.path(key)
        return (
            f"{self.parsed.scheme}://{self.parsed.bucket}/{p}"
            if p
            else f"{self.parsed.scheme}://{self.parsed.bucket}"
        )

    def child(self, key: str) -> Location:
        """The location of `key` below this one (same store, same credentials)."""
        parsed = ParsedUri(self.parsed.scheme, self.parsed.bucket, self.path(key))
        return Location(parsed.uri, self._store, parsed, self._credentials)

    # ---- errors

    def _error(self, exc: BaseException, key: str = "", *, what: str = "") -> StorageError:
        """The typed error of a library exception."""
        import obstore.exceptions as oe

        uri = self.uri_of(key)
        text = _clean(f"{type(exc).__name__}: {exc}")
        lower = text.lower()
        prefix = f"{what}: " if what else ""
        if isinstance(exc, StorageError):
            return exc
        if "nosuchbucket" in lower or "bucket does not exist" in lower or "containernotfound" in lower:
            return BucketNotFound(
                uri,
                f"{prefix}the bucket {self.parsed.bucket!r} does not exist ({text})",
                credentials=self._credentials,
            )
        if isinstance(exc, oe.PermissionDeniedError | oe.UnauthenticatedError) or any(
            s in lower
            for s in (
                "accessdenied",
                "invalidaccesskeyid",
                "signaturedoesnotmatch",
                "403 forbidden",
                "401 unauthorized",
                "status: 403",
                "status: 401",
                "authorizationheadermalformed",
                "expiredtoken",
                "invalidtoken",
            )
        ):
            return StorageAccessDenied(uri, f"{prefix}access denied ({text})", credentials=self._credentials)
        if isinstance(exc, oe.NotFoundError | FileNotFoundError) or "nosuchkey" in lower or "404" in lower:
            return ObjectNotFound(uri, f"{prefix}no such object", credentials=self._credentials)
        if isinstance(exc, oe.PreconditionError):
            return StorageUnreachable(
                uri,
                f"{prefix}the object changed while it was being read (its ETag no longer matches); "
                "nothing partial was kept, the next attempt reads the new object",
                credentials=self._credentials,
            )
        if isinstance(exc, oe.NotSupportedError):
            return InvalidStorageConfig(
                uri,
                f"{prefix}{self.parsed.scheme}:// does not support this ({text})",
                credentials=self._credentials,
            )
        if isinstance(exc, oe.UnknownConfigurationKeyError | oe.InvalidPathError):
            return InvalidStorageConfig(uri, f"{prefix}{text}", credentials=self._credentials)
        if "certificate" in lower or "invalid peer" in lower or "unknownissuer" in lower:
            return StorageUnreachable(
                uri,
                f"{prefix}TLS failed ({text}): if the endpoint's certificate is self-signed, put its CA "
                f"bundle in the Secret's {KEY_CA_BUNDLE}",
                credentials=self._credentials,
            )
        return StorageUnreachable(
            uri, f"{prefix}{text} (after retries with backoff)", credentials=self._credentials
        )

    # ---- metadata

    def head(self, key: str = "") -> ObjectInfo:
        """Metadata of one object; ObjectNotFound / BucketNotFound / StorageAccessDenied otherwise."""
        import obstore

        try:
            meta = obstore.head(self._store, self.path(key))
        except Exception as exc:
            raise self._refine(exc, key) from None
        return ObjectInfo(key, int(meta["size"]), meta.get("e_tag"), meta.get("last_modified"))

    def _refine(self, exc: BaseException, key: str) -> StorageError:
        """A not-found error split into bucket and object (S3 answers HEAD 404 without a body)."""
        err = self._error(exc, key)
        if isinstance(err, ObjectNotFound) and self.parsed.scheme != "https" and not self._bucket_exists():
            return BucketNotFound(
                err.uri,
                f"the bucket {self.parsed.bucket!r} does not exist",
                credentials=self._credentials,
            )
        return err

    def _bucket_exists(self) -> bool:
        import obstore

        try:
            next(iter(obstore.list(self._store, "", chunk_size=1)), None)
        except Exception as exc:
            return not isinstance(self._error(exc), BucketNotFound | ObjectNotFound)
        return True

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object below this location (and `prefix`), keys relative to the location, sorted."""
        import obstore

        base = self.path(prefix)
        search = base if not base or base.endswith("/") else base + "/"
        strip = len(self.parsed.key.rstrip("/") + "/") if self.parsed.key else 0
        # A space in a list prefix is sent as '+' in the query string, which some S3-compatible servers
        # sign differently from AWS (SignatureDoesNotMatch): list from the directory before the first
        # space (the library's prefixes are whole path segments) and filter here.
        sent = search[: search.rfind("/", 0, search.find(" ")) + 1] if " " in search else search
        out: list[ObjectInfo] = []
        try:
            for batch in obstore.list(self._store, sent or None):
                for meta in batch:
                    path = str(meta["path"])
                    if not path.startswith(search):
                        continue
                    out.append(
                        ObjectInfo(
                            path[strip:], int(meta["size"]), meta.get("e_tag"), meta.get("last_modified")
                        )
                    )
        except Exception as exc:
            raise self._error(exc, prefix, what="list") from None
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str = "") -> None:
        """Delete one object (a missing one is not an error: deleting is idempotent)."""
        import obstore

        try:
            obstore.delete(self._store, self.path(key))
        except Exception as exc:
            err = self._error(exc, key, what="delete")
            if not isinstance(err, ObjectNotFound):
                raise err from None

    # ---- reading

    def stream(self, key: str = "", *, chunk: int | None = None) -> Iterator[memoryview]:
        """The object's bytes in chunks of about `chunk` bytes, resuming after a lost connection.

        The first GET pins the ETag; a resumed ranged GET must match it (If-Match), so an object
        replaced meanwhile fails instead of mixing two versions.
        """
        import obstore

        path = self.path(key)
        offset = 0
        etag: str | None = None
        resumes = 0
        while True:
            options: dict[str, Any] = {}
            if offset:
                options["range"] = {"offset": offset}
                if etag:
                    options["if_match"] = etag
            try:
                result = obstore.get(self._store, path, options=options or None)  # type: ignore[arg-type]
            except Exception as exc:
                if offset == 0:
                    raise self._refine(exc, key) from None
                raise self._error(exc, key, what=f"resuming at byte {offset}") from None
            if etag is None:
                etag = result.meta.get("e_tag")
            size = int(result.meta["size"])
            try:
                for buf in result.stream(min_chunk_size=chunk or CHUNK):
                    view = memoryview(buf)
                    offset += len(view)
                    yield view
                if offset >= size or size == 0:
                    return
                raise ConnectionError(f"the stream ended at byte {offset} of {size}")
            except StorageError:
                raise
            except Exception as exc:
                err = self._error(exc, key, what=f"reading at byte {offset}")
                if err.permanent or resumes >= RESUMES:
                    raise err from None
                resumes += 1
                time.sleep(min(0.2 * 2**resumes, 5.0))

    def read_bytes(self, key: str = "", *, limit: int = 16 << 20) -> bytes:
        """A small object (a manifest) in memory; InvalidStorageConfig beyond `limit` bytes."""
        parts: list[bytes] = []
        total = 0
        for view in self.stream(key):
            total += len(view)
            if total > limit:
                raise InvalidStorageConfig(
                    self.uri_of(key), f"larger than {limit} bytes, not read into memory"
                )
            parts.append(bytes(view))
        return b"".join(parts)

    def download(
        self,
        dest: Path | str,
        expected_sha256: str | None = None,
        *,
        key: str = "",
        expected_size: int | None = None,
        durable: bool = True,
    ) -> tuple[str, int]:
        """Stream the object to `dest` (temp file, fsync, verify, atomic rename): (sha256, size).

        DigestMismatch when `expected_sha256` differs; nothing is left at `dest` then (an old file
        there stays as it was). `durable=False` skips the two fsyncs, for a destination that does not
        outlive the pod anyway (an emptyDir: the serving pod's model volume, the verifier's scratch);
        the rename stays atomic, so a reader still sees the whole verified file or none. Forcing 1 GiB
        to disk costs about 5 s here, four times the GET and the hash together (docs/benchmarks.md).
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        expected = (expected_sha256 or "").lower().removeprefix("sha256:")
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb", buffering=0) as fh:
                # Three stages in parallel (network, sha256, disk), each releasing the GIL, joined by
                # bounded queues: as fast as the slowest stage, memory bounded by PIPELINE chunks.
                with _Stage(fh.write) as writer:
                    for view in _prefetched(self.stream(key)):
                        digest.update(view)
                        writer.put(view)
                        size += len(view)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            actual = digest.hexdigest()
            if expected and actual != expected:
                raise DigestMismatch(
                    self.uri_of(key),
                    f"sha256 is {actual}, expected {expected} ({size} bytes): the object changed after it "
                    "was registered, or is partial; it was not kept",
                    credentials=self._credentials,
                )
            if expected_size is not None and size != expected_size:
                raise DigestMismatch(
                    self.uri_of(key), f"{size} bytes, expected {expected_size}", credentials=self._credentials
                )
            os.replace(tmp, dest)
            if durable:
                _fsync_dir(dest.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return actual, size

    def digest(self, key: str = "") -> tuple[str, int]:
        """sha256 and size of the object, streamed, nothing written."""
        h = hashlib.sha256()
        size = 0
        for view in _prefetched(self.stream(key)):
            h.update(view)
            size += len(view)
        return h.hexdigest(), size

    # ---- writing

    def upload(self, src: Path | str, key: str = "") -> tuple[str, int]:
        """Upload a file to `key` in multipart parts, bounded memory: (sha256, size) of the bytes sent."""
        import obstore

        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"{src} does not exist or is not a file: nothing to upload")
        digest = hashlib.sha256()
        sent = [0]

        def parts() -> Iterator[bytes]:
            with src.open("rb") as fh:
                while chunk := fh.read(PART_SIZE):
                    digest.update(chunk)
                    sent[0] += len(chunk)
                    yield chunk

        try:
            if src.stat().st_size <= PART_SIZE:
                data = src.read_bytes()
                digest.update(data)
                sent[0] = len(data)
                obstore.put(self._store, self.path(key), data)
            else:
                obstore.put(
                    self._store,
                    self.path(key),
                    parts(),
                    chunk_size=PART_SIZE,
                    max_concurrency=PART_CONCURRENCY,
                )
        except Exception as exc:
            raise self._refine(exc, key) from None
        return digest.hexdigest(), sent[0]

    def put_bytes(self, data: bytes, key: str = "") -> None:
        """Write a small object (a manifest) in one request."""
        import obstore

        try:
            obstore.put(self._store, self.path(key), data)
        except Exception as exc:
            raise self._refine(exc, key) from None


PIPELINE = 3  # chunks waiting between two stages of a download (memory: about 2 x PIPELINE x CHUNK)
_DONE = object()


def _prefetched(chunks: Iterator[memoryview]) -> Iterator[memoryview]:
    """`chunks`, read ahead by a thread (so the next chunk arrives while this one is hashed); the
    reader's exception is raised here."""
    q: queue.Queue[Any] = queue.Queue(maxsize=PIPELINE)
    stop = threading.Event()

    def pull() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=pull, name="storage-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class _Stage:
    """A consumer thread applying `fn` to each item put, in order; its exception is raised on exit."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self._q: queue.Queue[Any] = queue.Queue(maxsize=PIPELINE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="storage-write", daemon=True)

    def _run(self) -> None:
        while (item := self._q.get()) is not _DONE:
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:
                    self._error = exc

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(item)

    def __enter__(self) -> _Stage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._q.put(_DONE)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _secret_name(cdir: Path) -> str:
    """'Secret <name>' when the builders said which Secret is mounted there, else where it is mounted."""
    if cdir.parent == Path(CREDENTIALS_MOUNT):
        name = os.environ.get(f"{ENV_SECRET_NAME_PREFIX}{cdir.name.upper()}")
        if name:
            return f"Secret {name}"
    return f"Secret mounted at {cdir}"


def open_location(
    uri: str,
    credentials_dir: Path | str | None = None,
    *,
    claims_dir: Path | str | None = None,
    credentials_name: str | None = None,
) -> Location:
    """Open `uri` with the credentials in `credentials_dir` (default: `ENV_CREDENTIALS_DIR`, else the
    pod's identity). `credentials_name` (a Secret's name) is only used in messages."""
    try:
        parsed = parse_uri(uri)
    except ValueError as exc:
        raise InvalidStorageConfig(uri, str(exc)) from None
    cdir = _credentials_dir(credentials_dir)
    creds = read_credentials(cdir) if parsed.is_object_store else {}
    who = credentials_name or (_secret_name(cdir) if cdir else "the pod's identity")
    if not parsed.is_object_store:
        who = ""
    try:
        store = _make_store(parsed, creds, Path(claims_dir) if claims_dir else None)
    except StorageError:
        raise
    except Exception as exc:
        raise InvalidStorageConfig(
            uri, _clean(f"{type(exc).__name__}: {exc}"), credentials=who or None
        ) from None
    return Location(uri, store, parsed, who or None)
