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


# -- training data ----------------------------------------------------------------------------------------


def _digits_csv(rows: slice = slice(None)) -> bytes:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    lines = [",".join([f"p{i}" for i in range(64)] + ["label"])]
    for x, y in list(zip(bunch.data, bunch.target, strict=True))[rows]:
        lines.append(",".join([str(int(v)) for v in x] + [names[int(y)]]))
    return ("\n".join(lines) + "\n").encode()


def _dataset(uri: str | None = None, path: str | None = None, fmt: str = "csv") -> Any:
    from modelops.api.trainingjob import DatasetSpec

    file: dict[str, Any] = {"format": fmt}
    if uri:
        file["uri"] = uri
    else:
        file.update(claimName="data", path=path)
    return DatasetSpec.model_validate({"file": file})


def test_a_dataset_in_the_bucket_has_the_digest_the_same_file_on_a_claim_has(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops_worker import data

    raw = _digits_csv()
    s3.put("datasets/digits.csv", raw)
    (tmp_path / "claim").mkdir()
    (tmp_path / "claim" / "digits.csv").write_bytes(raw)
    monkeypatch.setenv("MODELOPS_STORAGE_CREDENTIALS_DIR", str(s3.write_secret_dir(tmp_path / "creds")))
    monkeypatch.setenv("MODELOPS_STORAGE_CACHE_DIR", str(tmp_path / "cache"))
    remote = data.load(_dataset(f"s3://{s3.bucket}/datasets/digits.csv"))
    local = data.load(_dataset(path="digits.csv"), data_dir=str(tmp_path / "claim"))
    assert remote.digest == local.digest and remote.x.shape == (1797, 64)
    assert (
        remote.class_names == local.class_names and remote.source == f"s3://{s3.bucket}/datasets/digits.csv"
    )


def test_shards_under_a_prefix_are_one_dataset_with_the_whole_files_digest(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelops_worker import data

    whole = _digits_csv()
    header, *rows = whole.decode().splitlines()
    # Three shards of unequal size; class names first seen in different shards.
    cuts = [0, 100, 1000, len(rows)]
    for i in range(3):
        body = "\n".join([header, *rows[cuts[i] : cuts[i + 1]]]) + "\n"
        s3.put(f"datasets/sharded/part-{i:03d}.csv", body.encode())
    s3.put("datasets/sharded/_SUCCESS", b"")  # not a csv shard: ignored
    (tmp_path / "claim").mkdir()
    (tmp_path / "claim" / "all.csv").write_bytes(whole)
    monkeypatch.setenv("MODELOPS_STORAGE_CREDENTIALS_DIR", str(s3.write_secret_dir(tmp_path / "creds")))
    monkeypatch.setenv("MODELOPS_STORAGE_CACHE_DIR", str(tmp_path / "cache"))
    sharded = data.load(_dataset(f"s3://{s3.bucket}/datasets/sharded/"))
    assert sharded.digest == data.load(_dataset(path="all.csv"), data_dir=str(tmp_path / "claim")).digest


def test_the_cache_is_reused_only_while_the_object_and_the_local_copy_match(
    s3: S3Server, tmp_path: Path
) -> None:
    from modelops_worker.storage import datasets

    s3.put("datasets/cache/train.csv", b"a,label\n1,0\n2,1\n")
    creds = s3.write_secret_dir(tmp_path / "creds")
    uri = f"s3://{s3.bucket}/datasets/cache/train.csv"
    cache = tmp_path / "cache"
    path, counts = datasets.fetch(uri, "csv", credentials_dir=creds, root=cache)
    assert counts == {"objects": 1, "downloaded": 1, "cached": 0}
    # A pod started again: nothing downloaded.
    assert datasets.fetch(uri, "csv", credentials_dir=creds, root=cache)[1]["downloaded"] == 0
    # The local copy was damaged: downloaded again.
    path.write_bytes(b"a,label\n9,9\n")
    again, counts = datasets.fetch(uri, "csv", credentials_dir=creds, root=cache)
    assert counts["downloaded"] == 1 and again.read_bytes() == b"a,label\n1,0\n2,1\n"
    # The object changed in the bucket: downloaded again.
    s3.put("datasets/cache/train.csv", b"a,label\n3,0\n4,1\n")
    again, counts = datasets.fetch(uri, "csv", credentials_dir=creds, root=cache)
    assert counts["downloaded"] == 1 and again.read_bytes() == b"a,label\n3,0\n4,1\n"


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_parquet_and_npz_shards(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    import io

    import numpy as np

    from modelops_worker import data

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = np.array(["cat", "dog", "owl"] * 30)
    for i, part in enumerate((slice(0, 10), slice(10, 60), slice(60, 90))):
        buf = io.BytesIO()
        if fmt == "npz":
            np.savez(buf, X=x[part], y=y[part])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({**{f"f{j}": x[part, j] for j in range(4)}, "label": y[part]})
            pq.write_table(table, buf)
        s3.put(f"datasets/{fmt}/part-{i}.{fmt}", buf.getvalue())
    monkeypatch.setenv("MODELOPS_STORAGE_CREDENTIALS_DIR", str(s3.write_secret_dir(tmp_path / "creds")))
    monkeypatch.setenv("MODELOPS_STORAGE_CACHE_DIR", str(tmp_path / "cache"))
    ds = data.load(_dataset(f"s3://{s3.bucket}/datasets/{fmt}/", fmt=fmt))
    assert ds.x.shape == (90, 4) and ds.class_names == ["cat", "dog", "owl"]
    assert np.array_equal(ds.x, x)


def test_training_on_a_bucket_dataset_records_its_digest_and_a_missing_one_fails_permanently(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("datasets/train/digits.csv", _digits_csv())
    cfg = {
        "job": {"name": "digits", "namespace": "default", "uid": "u-1"},
        "model": {"architecture": "mlp", "hiddenSize": 16, "layers": 1},
        "dataset": {"file": {"uri": f"s3://{s3.bucket}/datasets/train/digits.csv", "labelColumn": "label"}},
        "hyperparameters": {"epochs": 1, "batchSize": 128, "seed": 7},
        "checkpoint": {"intervalSeconds": 3600, "keep": 1},
        "output": {"modelName": "digits"},
    }
    env = {
        "MODELOPS_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "MODELOPS_TERMINATION_LOG": str(tmp_path / "tl"),
        "MODELOPS_METRICS_PORT": "0",
        "MODELOPS_STORAGE_CREDENTIALS_DIR": str(s3.write_secret_dir(tmp_path / "creds")),
        "MODELOPS_STORAGE_CACHE_DIR": str(tmp_path / "cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MODELOPS_RUN_CONFIG", json.dumps(cfg))
    assert cli.main(["train"]) == 0
    out = _result(tmp_path / "tl")
    assert out["status"] == "Succeeded" and len(out["datasetDigest"]) == 64
    cfg["dataset"] = {"file": {"uri": f"s3://{s3.bucket}/datasets/train/missing.csv"}}
    monkeypatch.setenv("MODELOPS_RUN_CONFIG", json.dumps(cfg))
    monkeypatch.setenv("MODELOPS_CHECKPOINT_DIR", str(tmp_path / "ckpt2"))
    assert cli.main(["train"]) == 65
    failed = _result(tmp_path / "tl")
    assert failed["reason"] == "DatasetNotFound" and "missing.csv" in failed["message"]


# -- backups to a bucket ----------------------------------------------------------------------------------


def _backup(src: Path, dest_uri: str, creds: Path, tl: Path, mp: pytest.MonkeyPatch, *extra: str) -> Any:
    mp.setenv("MODELOPS_TERMINATION_LOG", str(tl))
    args = ["backup", "--source", str(src), "--dest-uri", dest_uri, "--credentials-dir", str(creds), *extra]
    code = cli.main(args)
    return code, _result(tl)


def test_backups_to_a_bucket_keep_exactly_keep_last_and_restore_digest_identical(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    src = tmp_path / "ckpt"
    (src / "step-1").mkdir(parents=True)
    (src / "step-1" / "model.pt").write_bytes(b"weights-1" * 1000)
    (src / "latest.json").write_text('{"step": 1}')
    (src / ".tmp-ckpt-2").mkdir()  # half-written: never backed up
    (src / ".tmp-ckpt-2" / "x").write_bytes(b"partial")
    creds = s3.write_secret_dir(tmp_path / "creds")
    dest = f"s3://{s3.bucket}/backups/trainingjob/digits"
    from modelops_worker import backup as claim_backup

    names = []
    for i in range(4):
        (src / "latest.json").write_text(f'{{"step": {i}}}')
        stamp = dt.datetime(2026, 12, 7, 10, i, tzinfo=dt.UTC)
        monkeypatch.setattr(claim_backup.dt, "datetime", _Frozen.at(stamp))
        code, out = _backup(src, dest, creds, tmp_path / "tl", monkeypatch, "--keep-last", "2")
        assert code == 0, out
        names.append(out["backup"]["name"])
        assert out["kept"] == min(i + 1, 2)
    monkeypatch.undo()
    keys = s3.keys("backups/trainingjob/digits/")
    assert sorted({k.split("/")[3] for k in keys}) == names[-2:], "exactly keepLast backups are left"
    assert not any(".tmp-ckpt" in k for k in keys)
    # Restore the newest into an empty directory: digest-identical to the source.
    target = tmp_path / "restored"
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(tmp_path / "tl2"))
    want = hashlib.sha256((src / "step-1" / "model.pt").read_bytes()).hexdigest()
    args = ["restore", "--backup-uri", f"{dest}/{names[-1]}", "--target", str(target)]
    args += ["--credentials-dir", str(creds), "--expect", f"step-1/model.pt={want}"]
    assert cli.main(args) == 0, _result(tmp_path / "tl2")
    assert (target / "step-1" / "model.pt").read_bytes() == (src / "step-1" / "model.pt").read_bytes()
    assert (target / "latest.json").read_text() == '{"step": 3}'
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "no staging left behind"


def test_a_tampered_backup_in_the_bucket_restores_nothing(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "art"
    src.mkdir()
    (src / "model.pt").write_bytes(b"good weights")
    creds = s3.write_secret_dir(tmp_path / "creds")
    dest = f"s3://{s3.bucket}/backups/modelversion/tamper"
    code, out = _backup(src, dest, creds, tmp_path / "tl", monkeypatch)
    assert code == 0
    name = out["backup"]["name"]
    s3.put(f"backups/modelversion/tamper/{name}/model.pt", b"evil weights")
    target = tmp_path / "target"
    target.mkdir()
    (target / "model.pt").write_bytes(b"current")
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(tmp_path / "tl2"))
    args = [
        "restore",
        "--backup-uri",
        f"{dest}/{name}",
        "--target",
        str(target),
        "--credentials-dir",
        str(creds),
    ]
    assert cli.main(args) == 65
    assert _result(tmp_path / "tl2")["reason"] == "BackupCorrupt"
    assert (target / "model.pt").read_bytes() == b"current", "nothing was moved"


def test_an_unfinished_backup_is_never_counted_and_is_cleaned_by_the_next_run(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "art"
    src.mkdir()
    (src / "model.pt").write_bytes(b"w")
    s3.put("backups/unfinished/20200101T000000Z/model.pt", b"half")  # no manifest: a run killed mid-way
    creds = s3.write_secret_dir(tmp_path / "creds")
    code, out = _backup(src, f"s3://{s3.bucket}/backups/unfinished", creds, tmp_path / "tl", monkeypatch)
    assert code == 0 and out["kept"] == 1
    assert not any("20200101T000000Z" in k for k in s3.keys("backups/unfinished/"))


def test_a_backup_with_a_read_only_user_fails_naming_the_store_and_retries_nothing(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "art"
    src.mkdir()
    (src / "model.pt").write_bytes(b"w")
    creds = s3.write_secret_dir(tmp_path / "creds", s3.reader)
    code, out = _backup(src, f"s3://{s3.bucket}/backups/ro", creds, tmp_path / "tl", monkeypatch)
    assert code == 64 and out["reason"] == "StorageAccessDenied"
    assert f"s3://{s3.bucket}/backups/ro" in out["message"]


class _Frozen:
    """datetime with a fixed now() (backup names are timestamps)."""

    @staticmethod
    def at(moment: Any) -> Any:
        import datetime as dt

        class Frozen(dt.datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return moment

        return Frozen
