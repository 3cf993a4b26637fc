"""TrainingJob spec.fineTune: what the API server accepts, and what it refuses naming the field and the fix.

Through `modelops_local.schema`, the validation, defaulting and CEL evaluation the local API server applies.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelops.api import TRAININGJOB
from modelops.api.crdgen import crd
from modelops_local.schema import validate_custom_resource

Obj = dict[str, Any]
SCHEMA: Obj = crd(TRAININGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

FT: Obj = {
    "baseModel": {"claimName": "models", "path": "tiny/base"},
    "data": {"claimName": "data", "path": "train.jsonl"},
}


def tj(fine_tune: Obj | None = None, **spec: Any) -> Obj:
    body: Obj = {"fineTune": {**FT, **(fine_tune or {})}, **spec}
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "ft", "namespace": "default"},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validate_custom_resource(SCHEMA, obj).errors]


@pytest.mark.parametrize(
    "fine_tune",
    [
        {},
        {
            "method": "full",
            "maxSequenceLength": 2048,
            "data": {**FT["data"], "format": "chat", "overLength": "refuse"},
        },
        {
            "method": "lora",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "targetModules": ["q_proj", "v_proj"]},
        },
        {"baseModel": {"modelVersion": "tiny-base-1"}, "method": "lora", "mergeAdapter": False},
    ],
)
def test_fine_tunes_users_write_are_accepted(fine_tune: Obj) -> None:
    assert errors(tj(fine_tune, hyperparameters={"epochs": 3, "batchSize": 4, "learningRate": 2e-4})) == []


def test_qlora_is_accepted_with_gpus_and_a_registered_base() -> None:
    obj = tj(
        {"method": "qlora", "baseModel": {"modelVersion": "base-1"}}, resources={"gpus": 1}, precision="bf16"
    )
    assert errors(obj) == []


BAD: list[tuple[str, Obj, str]] = [
    ("fineTune with model", tj(model={"architecture": "mlp"}), "set exactly one of spec.model"),
    ("fineTune with image", tj(image="ghcr.io/me/train:1"), "set exactly one of spec.model"),
    ("fineTune with dataset", tj(dataset={"builtin": "iris"}), "spec.dataset applies to spec.model"),
    (
        "two bases",
        tj({"baseModel": {"modelVersion": "b-1", "claimName": "m", "path": "p"}}),
        "set exactly one of modelVersion",
    ),
    ("claim without path", tj({"baseModel": {"claimName": "m"}}), "claimName and path go together"),
    (
        "path escapes the claim",
        tj({"data": {"claimName": "d", "path": "../etc/passwd"}}),
        "spec.fineTune.data.path must not contain '..'",
    ),
    (
        "qlora on CPU",
        tj({"method": "qlora", "baseModel": {"modelVersion": "b-1"}}),
        "qlora (a 4-bit base with bitsandbytes) needs GPUs",
    ),
    (
        "lora settings with full",
        tj({"method": "full", "lora": {"r": 4}}),
        "spec.fineTune.lora applies only to method lora or qlora",
    ),
    (
        "adapter alone on a claim base",
        tj({"method": "lora", "mergeAdapter": False}),
        "set spec.fineTune.baseModel.modelVersion",
    ),
    ("torchscript output", tj(output={"format": "torchscript"}), "a fine-tune exports huggingface"),
    (
        "huggingface output of a recipe",
        {
            **tj(),
            "spec": {
                "model": {"architecture": "mlp"},
                "dataset": {"builtin": "iris"},
                "output": {"format": "huggingface"},
            },
        },
        "huggingface is the format of spec.fineTune",
    ),
    ("too short a context", tj({"maxSequenceLength": 4}), "maxSequenceLength"),
    ("unknown data format", tj({"data": {**FT["data"], "format": "csv"}}), "format"),
    ("bad target module", tj({"method": "lora", "lora": {"targetModules": ["q proj"]}}), "targetModules"),
]


@pytest.mark.parametrize(("what", "obj", "message"), BAD, ids=[b[0] for b in BAD])
def test_impossible_fine_tunes_are_refused_naming_the_field(what: str, obj: Obj, message: str) -> None:
    found = errors(obj)
    assert any(message in e for e in found), found
