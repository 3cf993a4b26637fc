"""LLM ModelVersions: their verification pods, a LoRA adapter standing on its base, lineage and status.llm.

Pure functions with plain dicts: what a verifier of a huggingface, gguf or lora version is asked to do
(and the memory it gets), the conclusions an adapter reports while its base is missing, unverified,
failed or of the wrong format, Ready only while the base is, the base recorded in lineage, and an
InferenceService serving an adapter protecting its base from deletion.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from modelops import status
from modelops.api.modelversion import ModelVersionSpec
from modelops.builders import modelversion as mvb
from modelops.controllers import modelversion as mv
from modelops.controllers import modelversion_llm as mv_llm
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HF_SHA, LORA_SHA = "1" * 64, "2" * 64


def spec(**over: Any) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {"model": "tiny-lm", "source": {"uri": "pvc://models/tiny-lm"}, **over}
    )


ADAPTER = spec(
    model="sql",
    format="lora",
    baseModelVersion={"name": "tiny-lm-1"},
    source={"uri": "pvc://ft/output/adapter"},
)


def base(phase: str = "Ready", fmt: str = "huggingface", uri: str = "pvc://models/tiny-lm") -> dict[str, Any]:
    return {
        "metadata": {"name": "tiny-lm-1"},
        "spec": {"model": "tiny-lm", "format": fmt, "source": {"uri": uri}},
        "status": {
            "phase": phase,
            "version": 1,
            "artifact": {"uri": uri, "sha256": HF_SHA, "format": fmt} if phase == "Ready" else {},
        },
    }


def args(pod: dict[str, Any]) -> list[str]:
    found: list[str] = pod["spec"]["containers"][0]["args"]
    return found


def test_an_llm_verifier_loads_the_model_with_memory_for_it() -> None:
    pod = mvb.verification_pod(
        "gemma-1",
        "ns",
        "u",
        location=mvb.Location("models", "gemma.gguf"),
        sha256=None,
        fmt="gguf",
        request="",
    )
    assert args(pod) == ["verify", "--artifact", f"{mvb.ARTIFACT_MOUNT}/gemma.gguf", "--format", "gguf"]
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits == mvb.LLM_RESOURCES["limits"] and limits["memory"] != mvb.RESOURCES["limits"]["memory"]
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["TMPDIR"] == "/tmp"
    assert validate_builtin(pod) == [] and check_restricted(pod) == []
    classic = mvb.verification_pod(
        "d-1", "ns", "u", location=mvb.Location("c", "model.pt"), sha256=None, fmt="torchscript", request=""
    )
    assert classic["spec"]["containers"][0]["resources"] == mvb.RESOURCES


def test_an_adapter_is_verified_on_its_base_mounted_read_only() -> None:
    found = mv_llm.base_artifact(ADAPTER, base())
    assert isinstance(found, mvb.BaseArtifact)
    pod = mvb.verification_pod(
        "sql-1",
        "ns",
        "u",
        location=mvb.Location("ft", "output/adapter"),
        sha256=LORA_SHA,
        fmt="lora",
        request="",
        base=found,
    )
    a = args(pod)
    assert a[a.index("--base-artifact") + 1] == f"{mvb.BASE_MOUNT}/tiny-lm"
    assert a[a.index("--base-format") + 1] == "huggingface" and a[a.index("--base-sha256") + 1] == HF_SHA
    assert a[a.index("--sha256") + 1] == LORA_SHA
    claims = {
        v["name"]: v["persistentVolumeClaim"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {
        "artifact": {"claimName": "ft", "readOnly": True},
        "base": {"claimName": "models", "readOnly": True},
    }
    assert validate_builtin(pod) == [] and check_restricted(pod) == []


def test_an_adapter_waits_for_its_base_and_stalls_on_one_that_cannot_carry_it() -> None:
    missing = mv_llm.base_artifact(ADAPTER, None)
    assert isinstance(missing, status.Conclusion) and missing.reason == "BaseModelVersionNotFound"
    assert missing.state is status.State.PROGRESSING and "spec.baseModelVersion.name" in missing.message
    verifying = mv_llm.base_artifact(ADAPTER, base(phase="Verifying"))
    assert isinstance(verifying, status.Conclusion) and verifying.reason == "BaseModelVersionNotReady"
    failed = mv_llm.base_artifact(ADAPTER, base(phase="Failed"))
    assert isinstance(failed, status.Conclusion) and failed.state is status.State.STALLED
    onnx = mv_llm.base_artifact(ADAPTER, base(fmt="onnx"))
    assert isinstance(onnx, status.Conclusion) and onnx.reason == "BaseModelVersionFormat"
    assert "huggingface or gguf" in onnx.message
    gguf = mv_llm.base_artifact(ADAPTER, base(fmt="gguf", uri="pvc://models/g.gguf"))
    assert isinstance(gguf, mvb.BaseArtifact) and gguf.format == "gguf"


def test_a_verified_adapter_is_ready_only_while_its_base_is() -> None:
    ready = status.ready(mv.REASON_VERIFIED, "verified")
    assert mv_llm.with_base(ADAPTER, base(), ready) is ready
    gone = mv_llm.with_base(ADAPTER, None, ready)
    assert gone.state is not status.State.READY and gone.reason == "BaseModelVersionNotFound"
    not_ready = mv_llm.with_base(ADAPTER, base(phase="Verifying"), ready)
    assert not_ready.reason == "BaseModelVersionNotReady"
    # A full model does not depend on anything.
    assert mv_llm.with_base(spec(format="huggingface"), None, ready) is ready


def verdict_pod(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"message": json.dumps(result)}}}],
        }
    }


def test_lineage_records_the_base_of_an_adapter_and_of_a_fine_tune() -> None:
    verdict = mv.pod_verdict(
        verdict_pod(
            {
                "status": "Succeeded",
                "reason": "Verified",
                "message": "loaded and generated 8 tokens",
                "artifact": {"sha256": LORA_SHA, "sizeBytes": 123, "format": "lora"},
                "llm": {"engine": "transformers", "architecture": "llama", "contextLength": 2048, "bogus": 1},
            }
        )
    )
    assert verdict is not None and verdict.ok
    out = mv.verified_status(
        verdict, mvb.Location("ft", "output/adapter"), ADAPTER, None, image="w", now=T0, base=base()
    )
    assert out["lineage"]["baseModel"] == {
        "modelVersion": "tiny-lm-1",
        "model": "tiny-lm",
        "version": 1,
        "sha256": HF_SHA,
        "method": "lora",
    }
    assert out["llm"] == {
        "engine": "transformers",
        "architecture": "llama",
        "contextLength": 2048,
        "baseReady": True,
    }
    # A merged fine-tune: its TrainingJob reported the base it started from.
    job = {
        "metadata": {"name": "ft"},
        "spec": {},
        "status": {
            "phase": "Succeeded",
            "baseModel": {"modelVersion": "tiny-lm-1", "sha256": HF_SHA, "method": "full"},
        },
    }
    merged = mv.verified_status(
        verdict, mvb.Location("ft", "output/model"), spec(format="huggingface"), job, image="w", now=T0
    )
    assert merged["lineage"]["baseModel"] == {"modelVersion": "tiny-lm-1", "sha256": HF_SHA, "method": "full"}


def test_an_inference_service_serving_an_adapter_protects_its_base() -> None:
    isvc = {
        "metadata": {"name": "sql", "namespace": "ns"},
        "spec": {"modelRef": {"model": "sql", "version": 1}},
        "status": {"stable": {"modelVersion": "sql-1", "baseModelVersion": "tiny-lm-1"}},
    }
    me = {**base(), "metadata": {"name": "tiny-lm-1", "namespace": "ns"}}
    assert mv.served_by(me, [isvc]) == [{"namespace": "ns", "name": "sql"}]


def test_the_llm_verifiers_reasons_say_what_to_do() -> None:
    for reason in ("ArtifactManifestInvalid", "AdapterIncompatible", "GenerationFailed", "EngineUnavailable"):
        verdict = mv.pod_verdict(verdict_pod({"status": "Failed", "reason": reason, "message": "x"}) | {})
        assert verdict is not None and verdict.reason == reason
        assert "reverify" in mv.failure_message(verdict) or "ModelVersion" in mv.failure_message(verdict)
