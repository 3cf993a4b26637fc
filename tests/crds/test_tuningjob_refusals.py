"""Bad TuningJob specs the API server refuses, each naming the field and the fix.

Through `modelops_local.schema`, the validation, defaulting and CEL evaluation the local API server applies,
so each refusal is what `kubectl apply` prints.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from refusals import check_refused

from modelops.api import TUNINGJOB
from modelops.api.crdgen import crd
from modelops_local.schema import validate_custom_resource

Obj = dict[str, Any]
SCHEMA: Obj = crd(TUNINGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

LR: Obj = {
    "name": "lr",
    "path": "spec.hyperparameters.learningRate",
    "type": "float",
    "low": 1e-4,
    "high": 0.1,
}


def tune(space: list[Obj] | None = None, name: str = "search", **spec: Any) -> Obj:
    base: Obj = {
        "searchSpace": space if space is not None else [LR],
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "trialTemplate": {"spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}},
    }
    base.update(spec)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": base,
    }


def param(**changes: Any) -> list[Obj]:
    p = {**LR, **changes}
    return [{k: v for k, v in p.items() if v is not None}]


def errors(obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in validate_custom_resource(SCHEMA, obj, old).errors]


BAD: list[tuple[str, Obj, str, str]] = [
    ("low above high", tune(param(low=0.5, high=0.1)), "spec.searchSpace[0]", "less than"),
    ("log scale from zero", tune(param(low=0.0, log=True)), "spec.searchSpace[0]", "low > 0"),
    ("log with a step", tune(param(log=True, step=0.01)), "spec.searchSpace[0]", "cannot be combined"),
    (
        "categorical without choices",
        tune(param(type="categorical", low=None, high=None, choices=[])),
        "spec.searchSpace[0]",
        "at least one value",
    ),
    ("range without bounds", tune(param(low=None)), "spec.searchSpace[0]", "required"),
    (
        "choices on a range",
        tune(param(choices=["a"])),
        "spec.searchSpace[0]",
        "only to type categorical",
    ),
    ("path outside spec", tune(param(path="metadata.name")), "spec.searchSpace[0].path", ""),
    ("path by string template", tune(param(path="${trialParameters.lr}")), "spec.searchSpace[0].path", ""),
    (
        "more parallel than max",
        tune(parallelTrials=5, maxTrials=3),
        "spec",
        "spec.parallelTrials must not exceed spec.maxTrials",
    ),
    (
        "grid over a continuous float",
        tune(algorithm={"name": "grid"}),
        "spec",
        "grid needs a step",
    ),
    ("unknown algorithm", tune(algorithm={"name": "bayesian"}), "spec.algorithm.name", "bayesian"),
    (
        "pruning on a final-only metric",
        tune(objective={"metric": "f1", "direction": "maximize"}, pruner={"name": "median"}),
        "spec",
        "spec.objective.metric must be accuracy or loss",
    ),
    ("no direction", tune(objective={"metric": "accuracy"}), "spec.objective.direction", ""),
    ("zero max trials", tune(maxTrials=0), "spec.maxTrials", ""),
    (
        "template that is no TrainingJob",
        tune(trialTemplate={"spec": {"model": {"architecture": "mlp"}}}),
        "spec.trialTemplate.spec",
        "spec.dataset is required",
    ),
    (
        "hyperband with max below min",
        tune(pruner={"name": "hyperband", "minResource": 4, "maxResource": 3}),
        "spec.pruner",
        "maxResource must be greater",
    ),
    ("name too long for trial names", tune(name="a" * 41), "<root>", "at most 40 characters"),
]


@pytest.mark.parametrize(("what", "obj", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_tuningjob_is_refused_naming_the_field(what: str, obj: Obj, field: str, phrase: str) -> None:
    found = errors(obj)
    if field == "<root>":
        assert any(phrase in e for e in found), f"{what}: {found}"
        return
    check_refused(what, found, field, phrase)


def test_a_minimal_tuningjob_is_accepted_with_defaults() -> None:
    result = validate_custom_resource(SCHEMA, tune())
    assert [str(e) for e in result.errors] == []
    spec = result.obj["spec"]
    assert spec["algorithm"]["name"] == "tpe"
    assert spec["pruner"]["name"] == "none"
    assert (spec["parallelTrials"], spec["maxTrials"], spec["cleanupPolicy"]) == (1, 10, "keepAll")
    # The template is defaulted like any TrainingJob.
    assert spec["trialTemplate"]["spec"]["hyperparameters"]["epochs"] == 10


def test_the_search_definition_is_immutable_but_limits_may_change() -> None:
    old = validate_custom_resource(SCHEMA, tune()).obj
    wider = copy.deepcopy(old)
    wider["spec"]["searchSpace"][0]["high"] = 0.5
    assert any("spec.searchSpace is immutable" in e for e in errors(wider, old))
    more = copy.deepcopy(old)
    more["spec"]["maxTrials"] = 50
    more["spec"]["parallelTrials"] = 4
    assert errors(more, old) == []
