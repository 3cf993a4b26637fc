"""Bad `spec.llm` settings the API server refuses, each naming the field and the fix.

Through `modelops_local.schema`, the validation, defaulting and CEL evaluation the local API server applies,
so each refusal is what `kubectl apply` prints.
"""

from __future__ import annotations

from typing import Any

import pytest
from refusals import check_refused

from modelops.api import INFERENCESERVICE
from modelops.api.crdgen import crd
from modelops_local.schema import validate_custom_resource

Obj = dict[str, Any]
SCHEMA: Obj = crd(INFERENCESERVICE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
GPU = {"gpus": 1}


def isvc(**spec: Any) -> Obj:
    base: Obj = {"modelRef": {"model": "gemma", "version": 1}}
    base.update(spec)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": base,
    }


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validate_custom_resource(SCHEMA, obj).errors]


BAD: list[tuple[str, Obj, str, str]] = [
    ("an unknown engine", isvc(llm={"engine": "tgi"}), "spec.llm.engine", "tgi"),
    ("vllm without a GPU", isvc(llm={"engine": "vllm"}), "spec", "spec.resources.gpus"),
    ("llama.cpp on a GPU", isvc(llm={"engine": "llamacpp"}, resources=GPU), "spec", "run on CPUs"),
    (
        "a default above the cap",
        isvc(llm={"maxTokens": 64, "defaultMaxTokens": 128}),
        "spec.llm",
        "maxTokens",
    ),
    (
        "a prompt as long as the context",
        isvc(llm={"contextLength": 512, "maxPromptTokens": 512}),
        "spec.llm",
        "contextLength",
    ),
    ("a context of 4 tokens", isvc(llm={"contextLength": 4}), "spec.llm.contextLength", ""),
    (
        "vllm memory over the GPU",
        isvc(llm={"vllm": {"gpuMemoryUtilization": 1.5}}, resources=GPU),
        "spec.llm.vllm.gpuMemoryUtilization",
        "",
    ),
    (
        "vllm settings for llama.cpp",
        isvc(llm={"engine": "llamacpp", "vllm": {"dtype": "bfloat16"}}),
        "spec.llm",
        "vllm",
    ),
    (
        "a flag the operator sets",
        isvc(llm={"vllm": {"extraArgs": ["--tensor-parallel-size=8"]}}, resources=GPU),
        "spec.llm.vllm.extraArgs",
        "spec.llm",
    ),
    (
        "llm settings on a custom predictor",
        isvc(llm={}, predictor={"image": "acme/p:1"}),
        "spec",
        "spec.predictor",
    ),
    (
        "a served name with a space",
        isvc(llm={"servedModelNames": ["my model"]}),
        "spec.llm.servedModelNames[0]",
        "",
    ),
    ("an unknown autoscaling metric", isvc(autoscaling={"metric": "tokens"}), "spec.autoscaling.metric", ""),
    (
        "a TTFT gate of 0 ms",
        isvc(canary={"analysis": {"maxTtftP99Ms": 0}}),
        "spec.canary.analysis.maxTtftP99Ms",
        "",
    ),
    ("int8 on an LLM", isvc(llm={}, quantization="int8"), "spec", "spec.llm.vllm.dtype"),
]


@pytest.mark.parametrize(("what", "obj", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_llm_settings_are_refused_naming_the_field(what: str, obj: Obj, field: str, phrase: str) -> None:
    check_refused(what, errors(obj), field, phrase)


def test_llm_settings_users_write_are_accepted() -> None:
    assert errors(isvc(llm={})) == []
    assert (
        errors(
            isvc(
                llm={"contextLength": 2048, "maxTokens": 512, "parallel": 4, "servedModelNames": ["gemma-3"]}
            )
        )
        == []
    )
    vllm = {
        "engine": "vllm",
        "vllm": {"dtype": "bfloat16", "maxLoraRank": 64, "extraArgs": ["--enable-prefix-caching"]},
    }
    assert errors(isvc(llm=vllm, resources={"gpus": 2})) == []
    assert errors(isvc(autoscaling={"metric": "waiting", "target": 4}, maxReplicas=3)) == []
    assert (
        errors(isvc(canary={"modelRef": {"model": "gemma", "version": 2}, "analysis": {"maxTtftP99Ms": 800}}))
        == []
    )
