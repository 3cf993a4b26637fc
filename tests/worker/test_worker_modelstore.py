"""`modelops-worker verify --publish` and `modelops-worker fetch`: the model store's two sides, as processes.

Real files on a real directory (what the store claim is inside a pod), the real CLI, its exit codes and
its termination message: an object appears under its digest only complete and checked, an existing one
is re-used only after it is hashed again, a fetch never leaves a file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_worker import modelstore


def run(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    log = tmp_path / "termination-log"
    env = {**os.environ, "MODELOPS_TERMINATION_LOG": str(log)}
    done = subprocess.run(
        [sys.executable, "-m", "modelops_worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(log.read_text())


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 << 20))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_puts_the_bytes_under_their_digest_once(tmp_path: Path, artifact: Path) -> None:
    store = tmp_path / "store"
    sha = digest(artifact)
    first = modelstore.publish(artifact, sha, store)
    assert first == {"key": f"sha256/{sha}", "reused": False, "sizeBytes": 3 << 20}
    stored = store / "sha256" / sha
    assert stored.read_bytes() == artifact.read_bytes() and stored.stat().st_mode & 0o222 == 0
    assert [p.name for p in (store / "sha256").iterdir()] == [sha]
    mtime = stored.stat().st_mtime_ns
    again = modelstore.publish(artifact, sha, store)
    assert again["reused"] is True and stored.stat().st_mtime_ns == mtime


def test_a_rotten_object_is_never_reused(tmp_path: Path, artifact: Path) -> None:
    store = tmp_path / "store"
    sha = digest(artifact)
    (store / "sha256").mkdir(parents=True)
    (store / "sha256" / sha).write_bytes(b"rotten")
    out = modelstore.publish(artifact, sha, store)
    assert out["reused"] is False and out["replaced"] is True
    assert digest(store / "sha256" / sha) == sha


def test_a_source_that_changed_since_verification_is_not_published(tmp_path: Path, artifact: Path) -> None:
    store = tmp_path / "store"
    with pytest.raises(modelstore.WorkerError) as caught:
        modelstore.publish(artifact, "cd" * 32, store)
    assert caught.value.reason == "ArtifactDigestMismatch" and caught.value.exit_code == 65
    # Nothing under the digest name, and no partial file left behind.
    assert list((store / "sha256").iterdir()) == []


def test_a_store_that_cannot_be_written_is_unavailable_not_a_crash(tmp_path: Path, artifact: Path) -> None:
    store = tmp_path / "store"
    store.write_text("a file where the store's directory should be (a claim mounted wrong)")
    with pytest.raises(modelstore.WorkerError) as caught:
        modelstore.publish(artifact, digest(artifact), store)
    assert caught.value.reason == "ModelStoreUnavailable" and caught.value.exit_code == 1
    assert "Not a directory" in caught.value.message


def test_fetch_copies_and_checks_and_refuses_with_the_reason(tmp_path: Path, artifact: Path) -> None:
    store = tmp_path / "store"
    sha = digest(artifact)
    modelstore.publish(artifact, sha, store)
    dest = tmp_path / "pod" / "model" / "model.pt"
    code, out = run(tmp_path, "fetch", "--store", str(store), "--sha256", f"sha256:{sha}", "--to", str(dest))
    assert code == 0 and out["artifact"]["sha256"] == sha and out["bytesPerSecond"] > 0
    assert dest.read_bytes() == artifact.read_bytes()

    stored = store / "sha256" / sha
    stored.chmod(0o644)
    stored.write_bytes(b"changed after it was published")
    other = tmp_path / "pod2" / "model.pt"
    code, out = run(tmp_path, "fetch", "--store", str(store), "--sha256", sha, "--to", str(other))
    assert code == 65 and out["reason"] == "ArtifactDigestMismatch" and sha in out["message"]
    assert not other.exists() and list(other.parent.iterdir()) == []

    code, out = run(tmp_path, "fetch", "--store", str(store), "--sha256", "ef" * 32, "--to", str(other))
    assert code == 65 and out["reason"] == "ArtifactNotFound" and "modelops.dev/reverify" in out["message"]

    code, out = run(tmp_path, "fetch", "--store", str(store), "--sha256", "nope", "--to", str(other))
    assert code == 64 and "--sha256" in out["message"]


# -- the same against a real S3-compatible server (moto, IAM auth on), and directory artifacts ---------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from s3server import S3Server  # noqa: E402


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


def test_an_s3_store_publishes_once_and_fetches_verified(
    tmp_path: Path, artifact: Path, s3: S3Server
) -> None:
    creds = str(s3.write_secret_dir(tmp_path / "creds", s3.admin))
    store = f"s3://{s3.bucket}/models"
    sha = digest(artifact)
    first = modelstore.publish(artifact, sha, store, creds)
    assert first["reused"] is False and first["sizeBytes"] == 3 << 20
    # Only the digest name is left: the staging object of the upload is gone.
    assert s3.keys("models/") == [f"models/sha256/{sha}"]
    assert s3.get(f"models/sha256/{sha}") == artifact.read_bytes()
    assert modelstore.publish(artifact, sha, store, creds)["reused"] is True

    dest = tmp_path / "pod" / "model.pt"
    code, out = run(
        tmp_path, "fetch", "--store", store, "--sha256", sha, "--to", str(dest), "--credentials-dir", creds
    )
    assert code == 0 and dest.read_bytes() == artifact.read_bytes(), out

    # Changed in the bucket after it was published: a fetch refuses it, nothing is left at dest.
    s3.put(f"models/sha256/{sha}", b"changed in the bucket")
    other = tmp_path / "pod2" / "model.pt"
    code, out = run(
        tmp_path, "fetch", "--store", store, "--sha256", sha, "--to", str(other), "--credentials-dir", creds
    )
    assert code == 65 and out["reason"] == "ArtifactDigestMismatch", out
    assert not other.exists()
    # Re-publishing (what a re-verification does) hashes the stored object again and replaces it.
    again = modelstore.publish(artifact, sha, store, creds)
    assert again["reused"] is False and again["replaced"] is True
    assert s3.get(f"models/sha256/{sha}") == artifact.read_bytes()


def test_wrong_store_credentials_are_named_and_never_printed(
    tmp_path: Path, artifact: Path, s3: S3Server
) -> None:
    wrong = type(s3.admin)("AKIAWRONGWRONGWRONG1", "wrong-secret-value-never-printed")
    creds = str(s3.write_secret_dir(tmp_path / "creds", wrong))
    code, out = run(
        tmp_path,
        "fetch",
        "--store",
        f"s3://{s3.bucket}/models",
        "--sha256",
        digest(artifact),
        "--to",
        str(tmp_path / "m"),
        "--credentials-dir",
        creds,
    )
    assert code == 64 and out["reason"] == "StorageAccessDenied", out
    assert "wrong-secret-value-never-printed" not in json.dumps(out)
    with pytest.raises(modelstore.WorkerError) as caught:
        modelstore.publish(
            artifact,
            digest(artifact),
            f"s3://{s3.bucket}/models",
            str(s3.write_secret_dir(tmp_path / "r", s3.reader)),
        )
    # Said as the store's problem (a source's refusal has the same storage reasons), its reason kept.
    assert caught.value.reason == "ModelStoreUnavailable" and "StorageAccessDenied" in caught.value.message
    assert caught.value.exit_code == 64


@pytest.mark.parametrize("where", ["directory", "s3"])
def test_a_directory_artifact_is_stored_file_by_file_and_fetched_whole(
    tmp_path: Path, where: str, s3: S3Server
) -> None:
    from modelops.api.llmconfig import MANIFEST_FILE, artifact_digest

    model = tmp_path / "hf-model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "tiny"}')
    (model / "model.safetensors").write_bytes(os.urandom(1 << 20))
    (model / "tokenizer" / "vocab.json").write_text('{"a": 1}')
    (model / "tokenizer" / "copy.json").write_text('{"a": 1}')  # same bytes: stored once
    sha = artifact_digest(model)
    creds = str(s3.write_secret_dir(tmp_path / "creds", s3.admin)) if where == "s3" else None
    store = f"s3://{s3.bucket}/dirs-{where}" if where == "s3" else str(tmp_path / "store")
    first = modelstore.publish(model, sha, store, creds)
    assert first["files"] == 4 and first["filesStored"] == 3 and first["reused"] is False
    assert modelstore.publish(model, sha, store, creds)["reused"] is True

    dest = tmp_path / "pod" / "hf-model"
    out = modelstore.fetch(store, sha, dest, creds)
    assert out["artifact"]["sha256"] == sha and artifact_digest(dest) == sha
    assert (dest / "tokenizer" / "vocab.json").read_text() == '{"a": 1}'
    assert json.loads((dest / MANIFEST_FILE).read_text())["digest"] == sha

    # One file of the directory changed in the store: the whole fetch is refused, nothing at dest.
    blob = f"sha256/{hashlib.sha256((model / 'config.json').read_bytes()).hexdigest()}"
    if where == "s3":
        s3.put(f"dirs-{where}/{blob}", b"{}")
    else:
        (Path(store) / blob).chmod(0o644)
        (Path(store) / blob).write_text("{}")
    other = tmp_path / "pod2" / "hf-model"
    with pytest.raises(modelstore.WorkerError) as caught:
        modelstore.fetch(store, sha, other, creds)
    assert caught.value.reason == "ArtifactDigestMismatch" and not other.exists()
    assert list(other.parent.iterdir()) == []
