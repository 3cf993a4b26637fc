"""`modelops-worker verify` on real artifacts, and byte-reproducible TorchScript export."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from modelops.api.trainingjob import ModelSpec
from modelops_worker import cli, export, models, verify


def verdict(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported digits model (2 epochs) with its model card, shared by the module's tests."""
    tmp = tmp_path_factory.mktemp("verify")
    cfg = {
        "job": {"name": "digits", "namespace": "default", "uid": "u-1"},
        "model": {"architecture": "mlp", "hiddenSize": 32, "layers": 1},
        "dataset": {"builtin": "digits"},
        "hyperparameters": {"epochs": 1, "batchSize": 64, "seed": 7},
        "checkpoint": {"intervalSeconds": 3600, "keep": 1},
        "output": {"modelName": "digits"},
    }
    env = {
        "MODELOPS_RUN_CONFIG": json.dumps(cfg),
        "MODELOPS_CHECKPOINT_DIR": str(tmp / "ckpt"),
        "MODELOPS_OUTPUT_DIR": str(tmp / "out"),
        "MODELOPS_DATA_DIR": str(tmp / "data"),
        "MODELOPS_TERMINATION_LOG": str(tmp / "termination-log"),
        "MODELOPS_METRICS_PORT": "0",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli.main(["train"]) == 0
    return tmp / "out" / export.ARTIFACT


def test_a_good_artifact_verifies_with_its_digest_size_and_model_card(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(tmp_path / "tl"))
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()
    assert (
        cli.main(["verify", "--artifact", str(trained), "--sha256", digest, "--format", "torchscript"]) == 0
    )
    out = verdict(capsys)
    assert out["artifact"] == {
        "path": str(trained),
        "sha256": digest,
        "sizeBytes": trained.stat().st_size,
        "format": "torchscript",
    }
    # Our export records the classifier's signature, so verification reports it.
    assert out["signature"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in out["signature"]["outputs"]] == ["logits", "probabilities", "predicted_class"]
    card = json.loads(trained.with_name(export.MODEL_CARD).read_text())
    assert card["signature"] == out["signature"]
    # The card names this digest, so its metrics and lineage are reported for the registry.
    assert 0 < out["card"]["metrics"]["accuracy"] <= 1
    assert len(out["card"]["datasetDigest"]) == 64 and out["card"]["trainingJob"] == "digits"
    assert json.loads((tmp_path / "tl").read_text()) == out
    assert len((tmp_path / "tl").read_bytes()) < 4096


def test_a_tampered_artifact_fails_with_digest_mismatch_and_no_card(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(tmp_path / "tl"))
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()
    copy = tmp_path / "model.pt"
    copy.write_bytes(trained.read_bytes() + b"\0")
    assert cli.main(["verify", "--artifact", str(copy), "--sha256", digest]) == 65
    out = verdict(capsys)
    assert out["reason"] == "ArtifactDigestMismatch" and digest in out["message"]
    # Without an expected digest the file still loads, but the card beside it names another digest,
    # so its metrics are not reported for this file.
    (tmp_path / export.MODEL_CARD).write_text(trained.with_name(export.MODEL_CARD).read_text())
    assert cli.main(["verify", "--artifact", str(copy)]) == 0
    assert "card" not in verdict(capsys)


def test_a_missing_artifact_and_a_wrong_format_say_which(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELOPS_TERMINATION_LOG", str(tmp_path / "tl"))
    assert cli.main(["verify", "--artifact", str(tmp_path / "nope.pt")]) == 65
    assert verdict(capsys)["reason"] == "ArtifactNotFound"
    assert cli.main(["verify", "--artifact", str(trained), "--format", "state_dict"]) == 65
    assert verdict(capsys)["reason"] == "ArtifactLoadFailed"
    # A TorchScript file registered as onnx does not load in ONNX Runtime.
    assert cli.main(["verify", "--artifact", str(trained), "--format", "onnx"]) == 65
    out = verdict(capsys)
    assert out["reason"] == "ArtifactLoadFailed" and "does not load as onnx" in out["message"]


def test_the_digest_is_streamed_and_equals_hashlib(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = bytes(range(256)) * (5 * 4096 + 3)  # a few MiB, not a multiple of the chunk
    big.write_bytes(data)
    assert verify.sha256_file(big) == (hashlib.sha256(data).hexdigest(), len(data))


def _model() -> Any:
    torch.manual_seed(3)
    spec = ModelSpec.model_validate({"architecture": "mlp", "hiddenSize": 16, "layers": 2, "dropout": 0.1})
    return models.build(spec, 8, 3, torch.zeros(8), torch.ones(8), None)


def test_torchscript_export_is_byte_reproducible_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desc = json.dumps({"numFeatures": 8, "numClasses": 3})
    # This interpreter's hash seed is random: scripting goes to a child with PYTHONHASHSEED=0.
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    first = export.scripted_bytes(_model(), desc)
    second = export.scripted_bytes(_model(), desc)
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    archive = zipfile.ZipFile(io.BytesIO(first))
    assert archive.testzip() is None, "the rewritten serialization_id keeps every CRC right"
    loaded = torch.jit.load(io.BytesIO(first))
    assert tuple(loaded(torch.zeros(2, 8)).shape) == (2, 3)


def test_a_signature_too_large_for_the_termination_message_is_left_out_saying_so() -> None:
    inputs = [
        {"name": f"input_tensor_number_{i}", "datatype": "FP32", "shape": [-1, 3, 224, 224]}
        for i in range(64)
    ]
    result = {
        "status": "Succeeded",
        "message": "sha256 matches",
        "signature": {"inputs": inputs, "outputs": []},
    }
    out = verify._fit_termination_message(result)
    assert "signature" not in out and "64 inputs" in out["message"] and "not recorded" in out["message"]
    assert len(json.dumps(out)) < 4096
    small = {"status": "Succeeded", "message": "ok", "signature": {"inputs": inputs[:2], "outputs": []}}
    assert verify._fit_termination_message(dict(small)) == small
