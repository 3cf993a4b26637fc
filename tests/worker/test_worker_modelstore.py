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
