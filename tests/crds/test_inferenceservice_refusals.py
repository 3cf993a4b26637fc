"""Bad InferenceService specs the API server refuses, each naming the field (beyond the shared list).

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


def isvc(**spec: Any) -> Obj:
    base: Obj = {"modelRef": {"model": "digits", "version": 1}}
    base.update(spec)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validate_custom_resource(SCHEMA, obj).errors]


V2 = {"model": "digits", "version": 2}

BAD: list[tuple[str, Obj, str, str]] = [
    ("neither version nor alias", isvc(modelRef={"model": "digits"}), "spec.modelRef", "exactly one"),
    ("version zero", isvc(modelRef={"model": "digits", "version": 0}), "spec.modelRef.version", ""),
    ("model name with capitals", isvc(modelRef={"model": "Digits", "version": 1}), "spec.modelRef.model", ""),
    (
        "analysis every second",
        isvc(canary={"modelRef": V2, "analysis": {"intervalSeconds": 1}}),
        "spec.canary.analysis.intervalSeconds",
        "",
    ),
    (
        "failure limit zero",
        isvc(canary={"modelRef": V2, "analysis": {"failureLimit": 0}}),
        "spec.canary.analysis.failureLimit",
        "",
    ),
    ("a step of zero percent", isvc(canary={"modelRef": V2, "steps": [0, 50]}), "spec.canary", "1 to 100"),
    ("a repeated step", isvc(canary={"modelRef": V2, "steps": [10, 10, 50]}), "spec.canary", "increase"),
    ("no steps at all", isvc(canary={"modelRef": V2, "steps": []}), "spec.canary.steps", ""),
    (
        "canary alias and version",
        isvc(canary={"modelRef": {"model": "digits", "version": 2, "alias": "x"}}),
        "spec.canary.modelRef",
        "exactly one",
    ),
    ("gpu type without gpus", isvc(resources={"gpuType": "NVIDIA-A100"}), "spec.resources", "gpus"),
    ("autoscaling target zero", isvc(autoscaling={"target": 0}), "spec.autoscaling.target", ""),
    (
        "scale-down window over an hour",
        isvc(autoscaling={"scaleDownStabilizationSeconds": 7200}),
        "spec.autoscaling.scaleDownStabilizationSeconds",
        "",
    ),
    ("auth secret name not a DNS label", isvc(auth={"secretName": "Tokens_1"}), "spec.auth.secretName", ""),
    ("unknown routing mode", isvc(trafficRouting={"mode": "istio"}), "spec.trafficRouting.mode", "istio"),
    ("negative queue", isvc(batching={"maxQueueSize": 0}), "spec.batching.maxQueueSize", ""),
]


@pytest.mark.parametrize(("what", "obj", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_specs_are_refused_naming_the_field(what: str, obj: Obj, field: str, phrase: str) -> None:
    check_refused(what, errors(obj), field, phrase)


def test_a_canary_without_its_own_model_ref_is_accepted() -> None:
    """It canaries every new target of spec.modelRef (an alias that moves) instead of a rolling update."""
    assert errors(isvc(modelRef={"model": "digits", "alias": "champion"}, canary={"steps": [10, 50]})) == []
