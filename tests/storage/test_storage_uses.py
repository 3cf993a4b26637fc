"""The worker commands that use object storage, end to end inside the worker, against the real S3 server.

`verify --artifact-uri` (a ModelVersion with an s3:// source), the training dataset fetch (a file and a
prefix of shards, cached across restarts) and backups to a bucket (manifest, retention, verified
restore), each through `modelops_worker.cli.main`, the pods' own entry point, so exit codes and
termination messages are the real ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from s3server import Credentials, S3Server

from modelops_worker import cli


def _result(path: Path) -> dict[str, Any]:
    text = path.read_text()
    assert len(text.encode()) < 4096
    out: dict[str, Any] = json.loads(text)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real exported digits model with its model card (1 epoch)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = {
        "job": {"name": "digits", "namespace": "default", "uid": "u-1"},
        "model": {"architecture": "mlp", "hiddenSize": 16, "layers": 1},
        "dataset": {"builtin": "digits"},
        "hyperparameters": {"epochs": 1, "batchSize": 128, "seed": 7},
        "checkpoint": {"intervalSeconds": 3600, "keep": 1},
        "output": {"modelName": "digits"},
    }
    env = {
        "MODELOPS_RUN_CONFIG": json.dumps(cfg),
        "MODELOPS_CHECKPOINT_DIR": str(tmp / "ckpt"),
        "MODELOPS_OUTPUT_DIR": str(tmp / "out"),
        "MODELOPS_TERMINATION_LOG": str(tmp / "termination-log"),
        "MODELOPS_METRICS_PORT": "0",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli.main(["train"]) == 0
    return tmp / "out" / "model.pt"


def _verify(tmp: Path, uri: str, creds: Path, sha256: str | None, mp: pytest.MonkeyPatch) -> tuple[int, Any]:
    mp.setenv("MODELOPS_TERMINATION_LOG", str(tmp / "tl"))
    args = ["verify", "--artifact", str(tmp / "artifact" / "model.pt"), "--artifact-uri", uri]
    args += ["--format", "torchscript", "--credentials-dir", str(creds)]
    if sha256:
        args += ["--sha256", sha256]
    code = cli.main(args)
    return code, _result(tmp / "tl")


def test_an_artifact_in_the_bucket_verifies_like_one_on_a_claim(
    s3: S3Server, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("verify/digits/model.pt", trained.read_bytes())
    s3.put("verify/digits/model-card.json", trained.with_name("model-card.json").read_bytes())
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()
    creds = s3.write_secret_dir(tmp_path / "creds")
    code, out = _verify(tmp_path, f"s3://{s3.bucket}/verify/digits/model.pt", creds, digest, monkeypatch)
    assert code == 0, out
    assert out["artifact"]["sha256"] == digest and out["artifact"]["format"] == "torchscript"
    assert out["card"]["metrics"], "the model card beside the object was fetched and trusted"
    assert out["signature"]["inputs"]


def test_a_changed_object_fails_with_digest_mismatch(
    s3: S3Server, trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("verify/changed/model.pt", trained.read_bytes() + b"tampered")
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()
    creds = s3.write_secret_dir(tmp_path / "creds")
    code, out = _verify(tmp_path, f"s3://{s3.bucket}/verify/changed/model.pt", creds, digest, monkeypatch)
    assert code == 65 and out["reason"] == "ArtifactDigestMismatch"
    assert not (tmp_path / "artifact" / "model.pt").exists(), "a mismatching object is never kept"


@pytest.mark.parametrize(
    ("case", "reason", "code"),
    [
        ("wrong-secret", "StorageAccessDenied", 64),
        ("no-bucket", "BucketNotFound", 64),
        ("no-object", "ArtifactNotFound", 65),
    ],
)
def test_storage_failures_name_the_uri_and_what_to_fix(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, reason: str, code: int
) -> None:
    uri = {
        "wrong-secret": f"s3://{s3.bucket}/verify/digits/model.pt",
        "no-bucket": "s3://modelops-gone/verify/model.pt",
        "no-object": f"s3://{s3.bucket}/verify/none/model.pt",
    }[case]
    who = Credentials(s3.admin.access_key_id, "wrong-" * 7) if case == "wrong-secret" else s3.admin
    creds = s3.write_secret_dir(tmp_path / "creds", who)
    got, out = _verify(tmp_path, uri, creds, None, monkeypatch)
    assert (got, out["reason"]) == (code, reason), out
    assert uri in out["message"]
    assert who.secret_access_key not in json.dumps(out)
