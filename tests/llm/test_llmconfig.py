"""The LLM serving contract (`modelops.api.llmconfig`): the config's checks and the directory digest,
which the operator, the model store and the worker all compute and must agree on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelops.api.llmconfig import (
    MANIFEST_FILE,
    LLMServeConfig,
    artifact_digest,
    build_manifest,
    directory_digest,
    write_manifest,
)

DIGEST = "a" * 64


def _cfg(**kw: object) -> LLMServeConfig:
    base: dict[str, object] = {
        "modelName": "m",
        "artifactPath": "/m.gguf",
        "digest": DIGEST,
        "format": "gguf",
    }
    return LLMServeConfig.model_validate({**base, **kw})


def test_engine_follows_the_format_and_a_mismatch_is_named() -> None:
    assert _cfg().resolved_engine == "llamacpp"
    assert _cfg(format="huggingface").resolved_engine == "transformers"
    with pytest.raises(ValidationError, match="engine transformers cannot serve format gguf"):
        _cfg(engine="transformers")


def test_adapter_path_needs_its_digest_and_limits_agree() -> None:
    with pytest.raises(ValidationError, match="adapterPath and adapterDigest go together"):
        _cfg(adapterPath="/a")
    with pytest.raises(ValidationError, match="defaultMaxTokens"):
        _cfg(defaultMaxTokens=100, maxTokensLimit=10)
    with pytest.raises(ValidationError, match="digest"):
        _cfg(digest="not-a-digest")
    assert _cfg(aliases=["m", "other"]).served_names == ["m", "other"]


def test_directory_digest_is_the_documented_formula(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "config.json").write_bytes(b"{}")
    (tmp_path / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "empty").mkdir()
    files = {
        "config.json": hashlib.sha256(b"{}").hexdigest(),
        "sub/w.bin": hashlib.sha256(b"\x00" * 10).hexdigest(),
    }
    lines = "".join(f"{p}\0{files[p]}\n" for p in sorted(files))
    expected = hashlib.sha256(lines.encode()).hexdigest()
    assert directory_digest(files) == expected
    manifest = write_manifest(tmp_path)
    assert manifest["digest"] == expected
    stored = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert [f["path"] for f in stored["files"]] == ["config.json", "sub/w.bin"]
    assert stored["files"][1]["size"] == 10
    # The manifest itself is not part of the digest, so writing it changes nothing.
    assert artifact_digest(tmp_path) == expected


def test_any_change_renaming_or_adding_changes_the_digest(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1")
    before = build_manifest(tmp_path)["digest"]
    (tmp_path / "a").rename(tmp_path / "b")
    renamed = build_manifest(tmp_path)["digest"]
    (tmp_path / "c").write_bytes(b"")
    added = build_manifest(tmp_path)["digest"]
    assert len({before, renamed, added}) == 3
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF")
    assert artifact_digest(f) == hashlib.sha256(b"GGUF").hexdigest()
