"""`modelops-worker backup` and `restore` on real files, through the real command line.

What a user relies on: a backup is either complete and verified or never used; retention keeps
exactly what the policy says, oldest out first, and never the newest good one; a restore refuses a
tampered or partial backup and a digest it was not promised, and leaves the target untouched then.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelops_worker import backup as b
from modelops_worker import cli
from modelops_worker.errors import WorkerError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    src = tmp_path / "claim"
    (src / "ckpt-0000000010").mkdir(parents=True)
    (src / "ckpt-0000000010" / "state.pt").write_bytes(os.urandom(50_000))
    (src / "ckpt-0000000010" / "manifest.json").write_text('{"step": 10}')
    (src / "output").mkdir()
    (src / "output" / "model.pt").write_bytes(os.urandom(20_000))
    # Being written right now: never part of a backup.
    (src / ".tmp-ckpt-0000000020-7").mkdir()
    (src / ".tmp-ckpt-0000000020-7" / "state.pt").write_bytes(b"half")
    return src


def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, dict[str, Any]]:
    term = tmp_path / f"termination-{len(list(tmp_path.glob('termination-*')))}"
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(term))
    code = cli.main(list(args))
    return code, json.loads(term.read_text())


def test_backup_copies_every_complete_file_with_a_manifest_written_last(
    tmp_path: Path, checkpoints: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "backups" / "tj" / "x"
    code, out = run_cli(
        tmp_path, monkeypatch, "backup", "--source", str(checkpoints), "--dest", str(dest), "--prefix", "tj/x"
    )
    assert code == 0, out
    assert out["reason"] == "BackupSucceeded" and out["kept"] == 1
    [made] = [p for p in dest.iterdir()]
    assert out["backup"]["path"] == f"tj/x/{made.name}"
    copied = digests(made)
    manifest = json.loads((made / "manifest.json").read_text())
    assert (
        out["backup"]["manifestSha256"] == hashlib.sha256((made / "manifest.json").read_bytes()).hexdigest()
    )
    # Exactly the source's complete files, byte for byte; the half-written checkpoint is not there.
    source = {k: v for k, v in digests(checkpoints).items() if not k.startswith(".")}
    assert {k: v["sha256"] for k, v in manifest["files"].items()} == source
    assert {k: v for k, v in copied.items() if k != "manifest.json"} == source
    assert len(json.dumps(out)) < 4096


def test_a_backup_without_a_complete_manifest_is_never_counted_or_restored(
    tmp_path: Path, checkpoints: Path
) -> None:
    dest = tmp_path / "backups"
    b.backup(checkpoints, dest, prefix="", keep_last=5, max_age=None, now=T0)
    # A run killed before its manifest: a partial directory, and one that lost its manifest.
    (dest / ".partial-20260101T010000Z").mkdir()
    (dest / ".partial-20260101T010000Z" / "state.pt").write_bytes(b"x")
    broken = dest / "20260101T020000Z"
    broken.mkdir()
    (broken / "state.pt").write_bytes(b"x")
    (broken / "manifest.json").write_text('{"files": {"state.pt"')  # truncated
    assert [x.name for x in b.complete_backups(dest)] == ["20260101T000000Z"]
    with pytest.raises(b.BackupCorrupt, match="unreadable"):
        b.restore(broken, tmp_path / "target")
    assert not (tmp_path / "target").exists() or not any((tmp_path / "target").iterdir())
    out = b.backup(checkpoints, dest, prefix="", keep_last=5, max_age=None, now=T0 + dt.timedelta(hours=3))
    assert out["kept"] == 2
    assert not (dest / ".partial-20260101T010000Z").exists()  # left-overs of killed runs are removed


def test_restore_refuses_a_tampered_file_and_uses_nothing(
    tmp_path: Path, checkpoints: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "backups"
    b.backup(checkpoints, dest, prefix="", keep_last=3, max_age=None, now=T0)
    made = dest / "20260101T000000Z"
    state = made / "ckpt-0000000010" / "state.pt"
    data = bytearray(state.read_bytes())
    data[100] ^= 0xFF  # same size, one bit pattern changed
    state.write_bytes(bytes(data))
    target = tmp_path / "restored"
    code, out = run_cli(tmp_path, monkeypatch, "restore", "--backup", str(made), "--target", str(target))
    assert code == 65
    assert out["reason"] == "BackupCorrupt"
    assert "ckpt-0000000010/state.pt" in out["message"] and "altered" in out["message"]
    assert not target.exists() or list(target.iterdir()) == []


def test_restore_after_the_original_is_deleted_gives_identical_digests(
    tmp_path: Path, checkpoints: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {k: v for k, v in digests(checkpoints).items() if not k.startswith(".")}
    dest = tmp_path / "backups"
    out = b.backup(checkpoints, dest, prefix="", keep_last=3, max_age=None, now=T0)
    import shutil

    shutil.rmtree(checkpoints)
    model_sha = before["output/model.pt"]
    code, res = run_cli(
        tmp_path,
        monkeypatch,
        "restore",
        "--backup",
        str(dest / out["backup"]["name"]),
        "--target",
        str(checkpoints),
        "--expect",
        f"output/model.pt=sha256:{model_sha}",
    )
    assert code == 0, res
    assert res["reason"] == "RestoreSucceeded" and res["sha256"] == model_sha
    assert digests(checkpoints) == before
    # A second restore into data that exists now (a restarted pod) leaves it alone.
    code, res = run_cli(
        tmp_path, monkeypatch, "restore", "--backup", str(dest / out["backup"]["name"]),
        "--target", str(checkpoints), "--if-empty",
    )  # fmt: skip
    assert code == 0 and res["reason"] == "RestoreSkipped"


def test_restore_refuses_a_digest_it_was_not_promised(tmp_path: Path, checkpoints: Path) -> None:
    dest = tmp_path / "backups"
    out = b.backup(checkpoints, dest, prefix="", keep_last=3, max_age=None, now=T0)
    with pytest.raises(WorkerError) as info:
        b.restore(dest / out["backup"]["name"], tmp_path / "t", expect=[f"output/model.pt={'0' * 64}"])
    assert info.value.reason == "DigestMismatch" and info.value.exit_code == 65
    assert not (tmp_path / "t").exists()


def test_check_in_place_verifies_a_snapshot_restored_claim(tmp_path: Path, checkpoints: Path) -> None:
    sha = hashlib.sha256((checkpoints / "output" / "model.pt").read_bytes()).hexdigest()
    assert b.check(checkpoints, expect=[f"output/model.pt={sha}"])["sha256"] == sha
    (checkpoints / "output" / "model.pt").write_bytes(b"not the model")
    with pytest.raises(WorkerError, match="do not use this data"):
        b.check(checkpoints, expect=[f"output/model.pt={sha}"])


def _take(src: Path, dest: Path, at: dt.datetime, keep: int, age: str | None) -> dict[str, Any]:
    return b.backup(
        src, dest, prefix="p", keep_last=keep, max_age=b.parse_duration(age) if age else None, now=at
    )


def test_retention_by_count_keeps_exactly_the_newest(tmp_path: Path, checkpoints: Path) -> None:
    dest = tmp_path / "backups"
    names = []
    for i in range(6):
        out = _take(checkpoints, dest, T0 + dt.timedelta(hours=i), keep=3, age=None)
        names.append(out["backup"]["name"])
        assert out["kept"] == min(i + 1, 3)
    assert sorted(p.name for p in dest.iterdir()) == names[-3:]
    assert [r["name"] for r in out["backups"]] == names[-3:]
    assert out["pruned"] == [names[2]]


def test_retention_by_age_prunes_old_ones_but_never_the_newest(tmp_path: Path, checkpoints: Path) -> None:
    dest = tmp_path / "backups"
    for i in range(4):  # 00:00, 01:00, 02:00, 03:00
        _take(checkpoints, dest, T0 + dt.timedelta(hours=i), keep=10, age="90m")
    # At 03:00 with maxAge 90m: 03:00 and 02:00 are young enough, 01:00 and 00:00 are gone.
    assert sorted(p.name for p in dest.iterdir()) == ["20260101T020000Z", "20260101T030000Z"]
    # Much later, everything is too old, but the newest backup stays: an old backup beats none.
    kept = b.complete_backups(dest)
    late = T0 + dt.timedelta(days=30)
    assert [x.name for x in b.to_prune(kept, keep_last=10, max_age=dt.timedelta(hours=1), now=late)] == [
        "20260101T020000Z"
    ]
    # Count and age together: whichever removes more wins, oldest first.
    out = _take(checkpoints, dest, T0 + dt.timedelta(hours=3, minutes=30), keep=2, age="1h")
    assert [r["name"] for r in out["backups"]] == ["20260101T030000Z", "20260101T033000Z"]
    assert out["pruned"] == ["20260101T020000Z"]


def test_bad_input_names_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run_cli(
        tmp_path, monkeypatch, "backup", "--source", str(tmp_path / "none"), "--dest", str(tmp_path / "d")
    )
    assert code == 65 and out["reason"] == "BackupSourceNotFound" and "--source" in out["message"]
    code, out = run_cli(
        tmp_path, monkeypatch, "backup", "--source", str(tmp_path), "--dest", str(tmp_path / "d"),
        "--max-age", "a week",
    )  # fmt: skip
    assert code == 64 and "--max-age" in out["message"]


def test_the_console_script_runs_backup_as_a_pod_would(tmp_path: Path, checkpoints: Path) -> None:
    term = tmp_path / "term"
    done = subprocess.run(
        [sys.executable, "-m", "modelops_worker.cli", "backup", "--source", str(checkpoints), "--dest",
         str(tmp_path / "out"), "--keep-last", "2"],
        env={**os.environ, "MODELOPS_TERMINATION_LOG": str(term)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(term.read_text())["reason"] == "BackupSucceeded"
    # The backup pod needs no torch: the module must not import it.
    assert "import torch" not in Path(b.__file__).read_text()
