"""The worker's storage layer against a real S3 server (moto, IAM enforced) and real claim directories.

What a user would notice: the bytes that land are the bytes in the bucket (sha256 checked), a wrong
digest leaves nothing behind, wrong credentials / a missing bucket / a missing key are told apart with
the URI and the Secret named and the secret itself never shown, a flaky network is retried, and a
connection lost mid-object resumes instead of failing or mixing two versions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from faults import FaultProxy
from s3server import Credentials, S3Server

from modelops.api.runconfig import EXIT_BAD_CONFIG, EXIT_BAD_DATA
from modelops.api.storage import EXIT_STORAGE_UNAVAILABLE
from modelops_worker import storage


@pytest.fixture()
def creds(s3: S3Server, tmp_path: Path) -> Path:
    return s3.write_secret_dir(tmp_path / "creds", s3.admin)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, storage.PART_SIZE - 1, storage.PART_SIZE + 1, 3 * storage.PART_SIZE + 12345],
    ids=["empty", "one-byte", "small", "just-under-a-part", "just-over-a-part", "multipart"],
)
def test_upload_then_download_is_byte_identical(s3: S3Server, creds: Path, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    loc = storage.open_location(f"s3://{s3.bucket}/roundtrip/{size}.bin", creds)
    assert loc.upload(src) == (_sha(data), size)
    assert s3.get(f"roundtrip/{size}.bin") == data  # what the server holds, read by another client
    assert loc.head().size == size
    dest = tmp_path / "out" / "model.bin"
    assert loc.download(dest, expected_sha256=_sha(data)) == (_sha(data), size)
    assert dest.read_bytes() == data
    assert _leftovers(dest.parent) == []


@pytest.mark.parametrize(
    "key",
    ["models/ünïcödé/模型.pt", "with space/and+plus=eq&amp.bin", "deep/" * 20 + "leaf.bin", "emoji-🙂.onnx"],
)
def test_keys_with_unicode_and_reserved_characters(
    s3: S3Server, creds: Path, tmp_path: Path, key: str
) -> None:
    data = key.encode() * 100
    src = tmp_path / "src"
    src.write_bytes(data)
    loc = storage.open_location(f"s3://{s3.bucket}/{key}", creds)
    loc.upload(src)
    assert loc.download(tmp_path / "dl")[0] == _sha(data)
    parent, _, name = key.rpartition("/")
    listed = storage.open_location(
        f"s3://{s3.bucket}/{parent}/" if parent else f"s3://{s3.bucket}", creds
    ).list()
    assert name in [o.key for o in listed]


def test_list_a_prefix_of_shards_in_order_and_nothing_beside_it(s3: S3Server, creds: Path) -> None:
    for i in (2, 0, 10, 1):
        s3.put(f"shards/train/part-{i:05d}.csv", f"a,label\n{i},0\n".encode())
    s3.put("shards/train-other/part-0.csv", b"x")  # shares the string prefix, not the directory
    s3.put("shards/trainer.csv", b"x")
    loc = storage.open_location(f"s3://{s3.bucket}/shards/train/", creds)
    assert [o.key for o in loc.list()] == [f"part-{i:05d}.csv" for i in (0, 1, 2, 10)]
    # Without the trailing slash it is the same directory.
    assert [o.key for o in storage.open_location(f"s3://{s3.bucket}/shards/train", creds).list()] == [
        f"part-{i:05d}.csv" for i in (0, 1, 2, 10)
    ]


def test_digest_mismatch_keeps_nothing_and_leaves_an_old_file_alone(
    s3: S3Server, creds: Path, tmp_path: Path
) -> None:
    s3.put("mismatch/model.pt", b"the bytes in the bucket")
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"what was here before")
    loc = storage.open_location(f"s3://{s3.bucket}/mismatch/model.pt", creds)
    with pytest.raises(storage.DigestMismatch) as err:
        loc.download(dest, expected_sha256="0" * 64)
    assert err.value.exit_code == EXIT_BAD_DATA and err.value.reason == "DigestMismatch"
    assert f"s3://{s3.bucket}/mismatch/model.pt" in err.value.message
    assert _sha(b"the bytes in the bucket") in err.value.message
    assert dest.read_bytes() == b"what was here before"
    assert _leftovers(tmp_path) == []


def test_wrong_secret_key_is_access_denied_naming_uri_and_secret_never_the_secret(
    s3: S3Server, tmp_path: Path
) -> None:
    s3.put("private/model.pt", b"x")
    wrong = Credentials(s3.admin.access_key_id, "not-the-secret-" + "x" * 25)
    cdir = s3.write_secret_dir(tmp_path / "wrong", wrong)
    loc = storage.open_location(
        f"s3://{s3.bucket}/private/model.pt", cdir, credentials_name="Secret s3-creds"
    )
    with pytest.raises(storage.StorageAccessDenied) as err:
        loc.download(tmp_path / "m.pt")
    exc = err.value
    assert exc.exit_code == EXIT_BAD_CONFIG and exc.permanent
    assert f"s3://{s3.bucket}/private/model.pt" in exc.message and "Secret s3-creds" in exc.message
    assert "SignatureDoesNotMatch" in exc.message
    assert wrong.secret_access_key not in exc.message and s3.admin.secret_access_key not in exc.message
    assert not (tmp_path / "m.pt").exists()


def test_unknown_access_key_is_access_denied(s3: S3Server, tmp_path: Path) -> None:
    cdir = s3.write_secret_dir(tmp_path / "unknown", Credentials("AKIAUNKNOWNUNKNOWN00", "s" * 40))
    with pytest.raises(storage.StorageAccessDenied, match="InvalidAccessKeyId"):
        storage.open_location(f"s3://{s3.bucket}/anything", cdir).download(tmp_path / "x")


def test_a_read_only_user_cannot_write(s3: S3Server, tmp_path: Path) -> None:
    s3.put("ro/data.csv", b"a,label\n1,0\n")
    cdir = s3.write_secret_dir(tmp_path / "reader", s3.reader)
    assert storage.open_location(f"s3://{s3.bucket}/ro/data.csv", cdir).download(tmp_path / "d")[1] == 12
    src = tmp_path / "up"
    src.write_bytes(b"no")
    with pytest.raises(storage.StorageAccessDenied, match="AccessDenied"):
        storage.open_location(f"s3://{s3.bucket}/ro/new.csv", cdir).upload(src)
    assert "ro/new.csv" not in s3.keys("ro/")


@pytest.mark.parametrize("operation", ["download", "head", "list", "upload"])
def test_missing_bucket_is_bucket_not_found(
    s3: S3Server, creds: Path, tmp_path: Path, operation: str
) -> None:
    loc = storage.open_location("s3://modelops-no-such-bucket/k/model.pt", creds)
    src = tmp_path / "src"
    src.write_bytes(b"x")
    with pytest.raises(storage.BucketNotFound) as err:
        {
            "download": lambda: loc.download(tmp_path / "m"),
            "head": loc.head,
            "list": loc.list,
            "upload": lambda: loc.upload(src),
        }[operation]()
    assert err.value.exit_code == EXIT_BAD_CONFIG
    assert "modelops-no-such-bucket" in err.value.message and "create the bucket" in err.value.message


def test_missing_object_is_object_not_found(s3: S3Server, creds: Path, tmp_path: Path) -> None:
    loc = storage.open_location(f"s3://{s3.bucket}/no/such/key.pt", creds)
    for call in (lambda: loc.download(tmp_path / "m"), loc.head):
        with pytest.raises(storage.ObjectNotFound) as err:
            call()
        assert err.value.exit_code == EXIT_BAD_DATA and "no/such/key.pt" in err.value.message
    assert not (tmp_path / "m").exists()


def test_unreachable_endpoint_is_retryable_after_retries(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(storage.ENV_RETRY_TIMEOUT, "2")
    monkeypatch.setenv(storage.ENV_MAX_RETRIES, "2")
    with socket_closed_port() as port:
        cdir = s3.write_secret_dir(tmp_path / "c", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
        with pytest.raises(storage.StorageUnreachable) as err:
            storage.open_location(f"s3://{s3.bucket}/k", cdir).download(tmp_path / "m")
    assert err.value.exit_code == EXIT_STORAGE_UNAVAILABLE and not err.value.permanent
    assert "retries" in err.value.message


def test_throttling_is_retried_with_backoff_until_it_passes(s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    s3.put("flaky/model.pt", data)
    proxy = FaultProxy(s3.port)
    try:
        cdir = s3.write_secret_dir(tmp_path / "c", AWS_ENDPOINT_URL=proxy.endpoint)
        proxy.faults.slow_down = 3
        loc = storage.open_location(f"s3://{s3.bucket}/flaky/model.pt", cdir)
        assert loc.download(tmp_path / "m", expected_sha256=_sha(data))[0] == _sha(data)
        assert proxy.faults.slow_down == 0 and proxy.faults.requests >= 4
    finally:
        proxy.close()


def test_a_connection_lost_mid_object_resumes_and_verifies(s3: S3Server, tmp_path: Path) -> None:
    data = os.urandom(6 << 20)
    s3.put("cut/model.pt", data)
    proxy = FaultProxy(s3.port)
    try:
        cdir = s3.write_secret_dir(tmp_path / "c", AWS_ENDPOINT_URL=proxy.endpoint)
        proxy.faults.cut_after, proxy.faults.cuts = 1 << 20, 2
        loc = storage.open_location(f"s3://{s3.bucket}/cut/model.pt", cdir)
        sha, size = loc.download(tmp_path / "m", expected_sha256=_sha(data))
        assert (sha, size) == (_sha(data), len(data))
        assert proxy.faults.cuts == 0, "the faults fired"
        assert (tmp_path / "m").read_bytes() == data
    finally:
        proxy.close()


def test_an_object_replaced_during_a_resume_fails_instead_of_mixing_versions(
    s3: S3Server, tmp_path: Path
) -> None:
    old = os.urandom(4 << 20)
    s3.put("swap/model.pt", old)
    proxy = FaultProxy(s3.port)
    try:
        cdir = s3.write_secret_dir(tmp_path / "c", AWS_ENDPOINT_URL=proxy.endpoint)
        loc = storage.open_location(f"s3://{s3.bucket}/swap/model.pt", cdir)
        proxy.faults.cut_after, proxy.faults.cuts = 1 << 20, 1
        stream = loc.stream(chunk=256 << 10)
        first = next(stream)
        s3.put("swap/model.pt", os.urandom(4 << 20))  # replaced while we read
        with pytest.raises(storage.StorageUnreachable, match="changed while it was being read"):
            for _ in stream:
                pass
        assert len(first) > 0
    finally:
        proxy.close()


def test_pvc_uris_read_and_write_files_on_the_mounted_claim(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    (claims / "models" / "digits").mkdir(parents=True)
    (claims / "models" / "digits" / "model.pt").write_bytes(b"torch bytes")
    loc = storage.open_location("pvc://models/digits/model.pt", claims_dir=claims)
    assert loc.download(tmp_path / "m.pt", expected_sha256=_sha(b"torch bytes"))[0] == _sha(b"torch bytes")
    up = storage.open_location("pvc://models/backups/", claims_dir=claims)
    up.upload(tmp_path / "m.pt", "2026/m.pt")
    assert (claims / "models" / "backups" / "2026" / "m.pt").read_bytes() == b"torch bytes"
    assert [o.key for o in up.list()] == ["2026/m.pt"]
    with pytest.raises(storage.ObjectNotFound):
        storage.open_location("pvc://models/nope.pt", claims_dir=claims).download(tmp_path / "x")
    with pytest.raises(storage.BucketNotFound, match="claim other is not mounted"):
        storage.open_location("pvc://other/m.pt", claims_dir=claims)


def test_bad_credentials_files_and_uris_are_config_errors(s3: S3Server, tmp_path: Path) -> None:
    only_key = tmp_path / "only-key"
    only_key.mkdir()
    (only_key / "AWS_ACCESS_KEY_ID").write_text("AKIA")
    with pytest.raises(
        storage.InvalidStorageConfig, match="both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ):
        storage.open_location(f"s3://{s3.bucket}/k", only_key)
    bad_ca = s3.write_secret_dir(tmp_path / "ca", **{"ca.crt": "not a certificate"})
    with pytest.raises(storage.InvalidStorageConfig, match=r"ca\.crt is not a PEM"):
        storage.open_location(f"s3://{s3.bucket}/k", bad_ca)
    with pytest.raises(storage.InvalidStorageConfig, match="not a storage URI"):
        storage.open_location("ftp://host/file")
    with pytest.raises(storage.InvalidStorageConfig, match="credentials directory does not exist"):
        storage.open_location(f"s3://{s3.bucket}/k", tmp_path / "not-mounted")


def test_the_credentials_directory_comes_from_the_environment(
    s3: S3Server, creds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("env/model.pt", b"abc")
    monkeypatch.setenv("MODELOPS_STORAGE_CREDENTIALS_DIR", str(creds))
    assert storage.open_location(f"s3://{s3.bucket}/env/model.pt").download(tmp_path / "m")[0] == _sha(b"abc")


class socket_closed_port:
    """A loopback port nothing listens on (bound then closed)."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = int(s.getsockname()[1])
        s.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        return None
