"""Bad ModelVersion specs the API server refuses, each naming the field (beyond the shared list).

Through `modelops_local.schema`, the validation, defaulting and CEL evaluation the local API server applies,
so each refusal is what `kubectl apply` prints.
"""

from __future__ import annotations

from typing import Any

import pytest
from refusals import check_refused

from modelops.api import MODELVERSION
from modelops.api.crdgen import crd
from modelops_local.schema import validate_custom_resource

Obj = dict[str, Any]
SCHEMA: Obj = crd(MODELVERSION)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def mv(**spec: Any) -> Obj:
    base: Obj = {"model": "digits", "source": {"uri": "pvc://models/digits/model.pt"}}
    base.update(spec)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "digits-1", "namespace": "default"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validate_custom_resource(SCHEMA, obj).errors]


BAD: list[tuple[str, Obj, str, str]] = [
    ("negative version", mv(version=-3), "spec.version", ""),
    (
        "gate without a metric",
        mv(promotion={"gates": [{"metric": "", "value": 0.9}]}),
        "spec.promotion.gates[0].metric",
        "",
    ),
    (
        "gate without a threshold",
        mv(promotion={"gates": [{"metric": "accuracy"}]}),
        "spec.promotion.gates[0].value",
        "",
    ),
    (
        "seventeen aliases",
        mv(promotion={"aliases": [f"a{i}" for i in range(17)]}),
        "spec.promotion.aliases",
        "",
    ),
    ("empty compare metric", mv(promotion={"compareMetric": ""}), "spec.promotion.compareMetric", ""),
    ("unknown framework", mv(framework="tensorflow"), "spec.framework", "tensorflow"),
    ("pvc uri without a path", mv(source={"uri": "pvc://models/"}), "spec.source.uri", ""),
    ("s3 bucket with capitals", mv(source={"uri": "s3://My-Bucket/m.pt"}), "spec.source.uri", ""),
    (
        "training job name not a DNS label",
        mv(source={"trainingJob": {"name": "Digits_Run"}}),
        "spec.source.trainingJob.name",
        "",
    ),
    (
        "credentials for a training job",
        mv(source={"trainingJob": {"name": "d"}, "credentialsSecret": {"name": "s"}}),
        "spec.source",
        "s3://",
    ),
    ("sha256 with capitals and a prefix", mv(sha256="sha256:" + "AB" * 32), "spec.sha256", ""),
    ("description of a book", mv(description="x" * 5000), "spec.description", ""),
    ("a tag that is not a string", mv(tags={"team": 7}), "spec.tags.team", ""),
    ("an unknown LLM format", mv(format="ggml"), "spec.format", "ggml"),
    ("a lora adapter without its base", mv(format="lora"), "spec", "spec.baseModelVersion is required"),
    (
        "a base version on a full model",
        mv(format="gguf", baseModelVersion={"name": "gemma-1"}),
        "spec",
        "applies only to spec.format lora",
    ),
    (
        "a base version named like a file",
        mv(format="lora", baseModelVersion={"name": "Gemma_1.gguf"}),
        "spec.baseModelVersion.name",
        "",
    ),
    (
        "a tensor signature on an LLM",
        mv(format="huggingface", signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}),
        "spec",
        "OpenAI API",
    ),
    ("onnx loading a gguf file", mv(format="gguf", framework="onnx"), "spec", "spec.framework"),
    (
        "an adapter on itself",
        mv(format="lora", baseModelVersion={"name": "digits-1"}),
        "spec.baseModelVersion.name",
        "its own base",
    ),
]


@pytest.mark.parametrize(("what", "obj", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_specs_are_refused_naming_the_field(what: str, obj: Obj, field: str, phrase: str) -> None:
    check_refused(what, errors(obj), field, phrase)


def test_the_example_and_a_minimal_training_job_version_are_accepted() -> None:
    assert errors(mv()) == []
    assert errors(mv(source={"trainingJob": {"name": "digits"}}, version=4)) == []


def test_llm_formats_are_accepted() -> None:
    assert errors(mv(format="gguf", source={"uri": "pvc://models/gemma/gemma-3-270m-it-Q4_K_M.gguf"})) == []
    assert errors(mv(format="huggingface", source={"uri": "pvc://models/tiny-lm"})) == []
    assert errors(mv(format="huggingface", source={"uri": "s3://models/tiny-lm/"})) == []
    lora = mv(format="lora", baseModelVersion={"name": "tiny-lm-1"}, source={"trainingJob": {"name": "ft"}})
    assert errors(lora) == []
