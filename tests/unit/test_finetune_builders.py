"""The operator's side of a fine-tune: the base model it resolves, the pods' wiring, the ModelVersion it
registers, and the progress it reads (pure functions, no server)."""

from __future__ import annotations

import json
from typing import Any

from modelops.api.finetune import BASE_MODEL_MOUNT
from modelops.api.finetuneconfig import FineTuneRunConfig
from modelops.api.runconfig import TrainResult
from modelops.api.trainingjob import TrainingJobSpec, output_format
from modelops.builders import finetune
from modelops.builders import trainingjob as tj
from modelops.controllers import trainingjob as tj_controller

DATA = {"claimName": "data", "path": "corpus/train.jsonl"}


def spec(**fine_tune: Any) -> TrainingJobSpec:
    ft = {"baseModel": {"claimName": "models", "path": "tiny/base"}, "data": DATA, **fine_tune}
    return TrainingJobSpec.model_validate({"fineTune": ft, "distributed": {"nodes": 2}})


def mv(name: str, ready: bool, uri: str | None = "pvc://store/models/base") -> dict[str, Any]:
    st: dict[str, Any] = {"phase": "Ready" if ready else "Verifying"}
    st["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if uri:
        st["artifact"] = {"uri": uri, "sha256": "a" * 64}
    return {"metadata": {"name": name}, "status": st}


def test_a_claim_base_is_mounted_read_only_and_named_in_the_run_config() -> None:
    s = spec()
    base = finetune.resolve_base(s, [])
    assert isinstance(base, finetune.ResolvedBase)
    pods = tj.pods("ft", "ns", "uid", s, base=base)
    assert len(pods) == 2
    for pod in pods:
        c = pod["spec"]["containers"][0]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts[BASE_MODEL_MOUNT]["readOnly"] and mounts["/data"]["readOnly"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims["base-model"] == "models" and claims["data"] == "data"
        env = {e["name"]: e.get("value") for e in c["env"]}
        cfg = FineTuneRunConfig.model_validate_json(env["MODELOPS_RUN_CONFIG"])
        assert cfg.base_model_dir == f"{BASE_MODEL_MOUNT}/tiny/base"
        assert cfg.base_model.uri == "pvc://models/tiny/base"
        assert json.loads(env["MODELOPS_RUN_CONFIG"])["recipe"] == "causal-lm"
        assert c["command"] == ["modelops-worker", "train"]
    assert tj.claim_field(s, "data", "data") == "spec.fineTune.data.claimName"
    assert tj.claim_field(s, "models", "base-model") == "spec.fineTune.baseModel.claimName"


def test_a_model_version_base_must_exist_be_ready_and_on_a_claim() -> None:
    s = spec(baseModel={"modelVersion": "tiny-1"})
    missing = finetune.resolve_base(s, [])
    assert (
        isinstance(missing, finetune.Unresolved) and missing.field == "spec.fineTune.baseModel.modelVersion"
    )
    verifying = finetune.resolve_base(s, [mv("tiny-1", ready=False)])
    assert isinstance(verifying, finetune.Unresolved) and "not Ready" in verifying.field
    s3 = finetune.resolve_base(s, [mv("tiny-1", ready=True, uri="s3://bucket/base")])
    assert isinstance(s3, finetune.Unresolved) and "not on a claim" in s3.field
    ok = finetune.resolve_base(s, [mv("other", True), mv("tiny-1", ready=True)])
    assert isinstance(ok, finetune.ResolvedBase)
    assert (ok.claim, ok.path) == ("store", "models/base")
    assert ok.ref.model_version == "tiny-1" and ok.ref.sha256 == "a" * 64


def test_no_pods_until_the_base_is_resolved() -> None:
    assert tj.pods("ft", "ns", "uid", spec(baseModel={"modelVersion": "tiny-1"})) == []


def test_the_model_version_of_a_fine_tune_is_huggingface_or_an_adapter_on_its_base() -> None:
    s = spec()
    assert output_format(s) == "huggingface"
    merged = TrainResult.model_validate(
        {
            "status": "Succeeded",
            "reason": "Succeeded",
            "artifact": {"path": "model", "sha256": "b" * 64, "sizeBytes": 1, "format": "huggingface"},
            "baseModel": {"uri": "pvc://models/tiny/base", "method": "full"},
        }
    )
    assert finetune.model_version_fields(s, merged) == {
        "format": "huggingface",
        "description": "Fine-tuned (lora) from pvc://models/tiny/base.",
    }
    adapter = merged.model_copy(
        update={
            "artifact": merged.artifact.model_copy(update={"format": "lora"}) if merged.artifact else None,
            "base_model": merged.base_model.model_copy(update={"model_version": "tiny-1"})
            if merged.base_model
            else None,
        }
    )
    fields = finetune.model_version_fields(s, adapter)
    assert fields["format"] == "lora" and fields["baseModelVersion"] == {"name": "tiny-1"}


def test_progress_shows_tokens_per_second_perplexity_and_the_workers_eta() -> None:
    s = spec()
    out = tj_controller.progress(
        {
            "modelops_training_step": 10,
            "modelops_training_total_steps": 40,
            "modelops_training_loss": 2.0,
            "modelops_training_samples_per_second": 4.0,
            "modelops_training_tokens_per_second": 1234.5,
            "modelops_training_perplexity": 7.389,
            "modelops_training_eta_seconds": 42.7,
        },
        s,
    )
    assert out["tokensPerSecond"] == 1234.5 and out["perplexity"] == 7.389
    assert out["etaSeconds"] == 42 and out["percent"] == 25
