"""The CRDs as a user meets them: generated from the models, explainable, and strict about bad input.

Objects go through the same structural-schema validation, defaulting and CEL evaluation the API server
applies (`modelops_local.schema`, which evaluates the rules with cel-python), so a refusal here is a refusal
`kubectl apply` would print, naming the field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from modelops.api import INFERENCESERVICE, KINDS, MODELVERSION, TRAININGJOB, KindInfo
from modelops.api.crdgen import HEADER, crd, drift, file_name
from modelops_local.schema import check_structural, validate_custom_resource

REPO = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]


def schema_of(info: KindInfo) -> Obj:
    schema: Obj = crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: Obj, path: str) -> Iterator[tuple[str, Obj]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_committed_yaml_matches_the_models(info: KindInfo) -> None:
    assert drift() == [], "CRD YAML drifted from the models: run `make crds`"
    text = (REPO / "crds" / file_name(info)).read_text()
    assert text.startswith(HEADER), "generated files must say so at the top"
    assert (REPO / "charts" / "modelops" / "crds" / file_name(info)).read_text() == text


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_crd_is_a_valid_structural_customresourcedefinition(info: KindInfo) -> None:
    manifest = yaml.safe_load((REPO / "crds" / file_name(info)).read_text())
    kubernetes_validate.validate(manifest, "1.33", strict=True)
    assert check_structural(schema_of(info)) == []


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_every_field_is_described_for_kubectl_explain(info: KindInfo) -> None:
    undocumented = [
        path
        for path, node in walk(schema_of(info), info.kind)
        if path.count(".") >= 2
        and not path.endswith("[]")
        and "{}" not in path
        and not node.get("description")
    ]
    assert undocumented == []


def test_names_printer_columns_and_categories() -> None:
    short_names = {name for info in KINDS for name in info.short_names}
    assert "isvc" not in short_names, "isvc belongs to KServe; both may be installed together"
    for info in KINDS:
        version = crd(info)["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd(info)["spec"]["names"]["categories"] == ["modelops"]
        assert version["additionalPrinterColumns"][-1]["name"] == "Age"
    columns = {c["name"] for c in crd(TRAININGJOB)["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {"Phase", "Progress", "Accuracy", "Loss", "Restarts"} <= columns


def test_status_conditions_follow_the_conventions() -> None:
    for info in KINDS:
        status = schema_of(info)["properties"]["status"]["properties"]
        assert {"observedGeneration", "conditions", "phase"} <= set(status)
        conditions = status["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        fields = set(conditions["items"]["properties"])
        assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= fields


# --- objects -----------------------------------------------------------------------------------------


INFO_BY_KIND = {info.kind: info for info in KINDS}


def load_examples() -> list[Obj]:
    docs: list[Obj] = []
    for path in sorted(REPO.glob("examples/**/*.yaml")):
        # Our kinds only: an example may bring a plain Kubernetes object it needs (a claim).
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] in INFO_BY_KIND)
    return docs


def validate(info: KindInfo, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in validate_custom_resource(schema_of(info), obj, old).errors]


@pytest.mark.parametrize("doc", load_examples(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_examples_are_accepted_and_parse_with_the_models(doc: Obj) -> None:
    info = INFO_BY_KIND[doc["kind"]]
    result = validate_custom_resource(schema_of(info), doc)
    assert [str(e) for e in result.errors] == []
    assert result.unknown_fields == []
    info.model.model_validate(result.obj)  # the operator reads exactly what the API server stores


def tj(**spec: Any) -> Obj:
    base: Obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}},
    }
    base["spec"].update(spec)
    return base


def mv(**spec: Any) -> Obj:
    base: Obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"model": "digits", "source": {"trainingJob": {"name": "digits"}}},
    }
    base["spec"].update(spec)
    return base


def isvc(**spec: Any) -> Obj:
    base: Obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {"modelRef": {"model": "digits", "version": 1}},
    }
    base["spec"].update(spec)
    return base


def test_defaults_fill_in_what_a_minimal_object_leaves_out() -> None:
    out = validate_custom_resource(schema_of(TRAININGJOB), tj()).obj["spec"]
    assert out["hyperparameters"]["epochs"] == 10
    assert out["hyperparameters"]["optimizer"] == "adamw"
    assert out["distributed"] == {"nodes": 1, "procsPerNode": "auto", "backend": "auto"}
    assert out["checkpoint"]["storage"]["retainOnDelete"] is True
    assert out["runPolicy"]["cleanPodPolicy"] == "None"
    out = validate_custom_resource(schema_of(INFERENCESERVICE), isvc()).obj["spec"]
    assert out["batching"]["maxBatchSize"] == 32
    assert out["trafficRouting"]["mode"] == "replicas"


def without(path: str) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, leaf = path.split(".")
        node = obj
        for key in parents:
            node = node[key]
        del node[leaf]

    return mutate


# (what is wrong, object, the field the error must name, a phrase of the message)
BAD: list[tuple[str, KindInfo, Obj, str, str]] = [
    # TrainingJob
    (
        "epochs as a string",
        TRAININGJOB,
        tj(hyperparameters={"epochs": "ten"}),
        "spec.hyperparameters.epochs",
        "",
    ),
    ("zero epochs", TRAININGJOB, tj(hyperparameters={"epochs": 0}), "spec.hyperparameters.epochs", ""),
    (
        "negative learning rate",
        TRAININGJOB,
        tj(hyperparameters={"learningRate": -0.1}),
        "spec.hyperparameters.learningRate",
        "",
    ),
    (
        "unknown optimizer",
        TRAININGJOB,
        tj(hyperparameters={"optimizer": "lion"}),
        "spec.hyperparameters.optimizer",
        "lion",
    ),
    (
        "unknown architecture",
        TRAININGJOB,
        tj(model={"architecture": "resnet"}),
        "spec.model.architecture",
        "",
    ),
    ("unknown dataset", TRAININGJOB, tj(dataset={"builtin": "mnist"}), "spec.dataset.builtin", "mnist"),
    (
        "two datasets",
        TRAININGJOB,
        tj(dataset={"builtin": "digits", "file": {"claimName": "data", "path": "a.csv"}}),
        "spec.dataset",
        "exactly one",
    ),
    ("no dataset", TRAININGJOB, tj(dataset=None), "spec", "spec.dataset is required"),
    (
        "recipe and image",
        TRAININGJOB,
        tj(image="example.com/train:1"),
        "spec",
        "exactly one of spec.model",
    ),
    ("command without image", TRAININGJOB, tj(command=["python"]), "spec", "spec.command"),
    ("fp16 on CPU", TRAININGJOB, tj(precision="fp16"), "spec", "fp16 needs GPUs"),
    ("nccl on CPU", TRAININGJOB, tj(distributed={"backend": "nccl"}), "spec", "nccl needs GPUs"),
    ("gpuType without gpus", TRAININGJOB, tj(resources={"gpuType": "A100"}), "spec.resources", "gpuType"),
    ("bad memory quantity", TRAININGJOB, tj(resources={"memory": "lots"}), "spec.resources.memory", ""),
    (
        "procsPerNode word",
        TRAININGJOB,
        tj(distributed={"procsPerNode": "many"}),
        "spec.distributed.procsPerNode",
        "",
    ),
    ("too many gpus", TRAININGJOB, tj(resources={"gpus": 99}), "spec.resources.gpus", ""),
    (
        "heads do not divide",
        TRAININGJOB,
        tj(model={"architecture": "transformer", "hiddenSize": 30}),
        "spec.model",
        "multiple",
    ),
    (
        "claim with class",
        TRAININGJOB,
        tj(checkpoint={"storage": {"existingClaim": "ckpt", "storageClassName": "fast"}}),
        "spec.checkpoint.storage",
        "storageClassName",
    ),
    (
        "bad cleanPodPolicy",
        TRAININGJOB,
        tj(runPolicy={"cleanPodPolicy": "Sometimes"}),
        "spec.runPolicy.cleanPodPolicy",
        "",
    ),
    (
        "absolute dataset path",
        TRAININGJOB,
        tj(dataset={"file": {"claimName": "d", "path": "/etc/passwd"}}),
        "spec.dataset.file.path",
        "",
    ),
    # ModelVersion
    ("no model", MODELVERSION, mv(model=None), "spec.model", "Required"),
    ("model not a DNS label", MODELVERSION, mv(model="Digits_Model"), "spec.model", ""),
    ("version zero", MODELVERSION, mv(version=0), "spec.version", ""),
    (
        "two sources",
        MODELVERSION,
        mv(source={"trainingJob": {"name": "a"}, "uri": "pvc://c/m.pt"}),
        "spec.source",
        "exactly one",
    ),
    ("no source", MODELVERSION, mv(source={}), "spec.source", "exactly one"),
    ("http uri", MODELVERSION, mv(source={"uri": "http://example.com/m.pt"}), "spec.source.uri", ""),
    (
        "secret for pvc",
        MODELVERSION,
        mv(source={"uri": "pvc://c/m.pt", "credentialsSecret": {"name": "s"}}),
        "spec.source",
        "s3://",
    ),
    ("unknown format", MODELVERSION, mv(format="pickle"), "spec.format", "pickle"),
    ("short sha256", MODELVERSION, mv(sha256="abc123"), "spec.sha256", ""),
    (
        "bad gate op",
        MODELVERSION,
        mv(promotion={"gates": [{"metric": "accuracy", "op": "=>", "value": 0.9}]}),
        "spec.promotion.gates[0].op",
        "",
    ),
    (
        "duplicate alias",
        MODELVERSION,
        mv(promotion={"aliases": ["champion", "champion"]}),
        "spec.promotion.aliases[1]",
        "",
    ),
    (
        "alias with capitals",
        MODELVERSION,
        mv(promotion={"aliases": ["Champion"]}),
        "spec.promotion.aliases[0]",
        "",
    ),
    # InferenceService
    ("no modelRef", INFERENCESERVICE, isvc(modelRef=None), "spec.modelRef", "Required"),
    (
        "version and alias",
        INFERENCESERVICE,
        isvc(modelRef={"model": "d", "version": 1, "alias": "champion"}),
        "spec.modelRef",
        "exactly one",
    ),
    ("min above max", INFERENCESERVICE, isvc(minReplicas=5, maxReplicas=2), "spec", "minReplicas"),
    ("zero replicas", INFERENCESERVICE, isvc(minReplicas=0), "spec.minReplicas", ""),
    (
        "unknown autoscaling metric",
        INFERENCESERVICE,
        isvc(autoscaling={"metric": "gpu"}),
        "spec.autoscaling.metric",
        "gpu",
    ),
    (
        "huge batch",
        INFERENCESERVICE,
        isvc(batching={"maxBatchSize": 100000}),
        "spec.batching.maxBatchSize",
        "",
    ),
    (
        "canary same as stable",
        INFERENCESERVICE,
        isvc(canary={"modelRef": {"model": "digits", "version": 1}}),
        "spec",
        "must differ",
    ),
    (
        "canary steps not increasing",
        INFERENCESERVICE,
        isvc(canary={"modelRef": {"model": "digits", "version": 2}, "steps": [50, 10]}),
        "spec.canary",
        "increase",
    ),
    (
        "canary percent and steps",
        INFERENCESERVICE,
        isvc(canary={"modelRef": {"model": "digits", "version": 2}, "steps": [10], "trafficPercent": 5}),
        "spec.canary",
        "not both",
    ),
    (
        "canary percent above 100",
        INFERENCESERVICE,
        isvc(canary={"modelRef": {"model": "digits", "version": 2}, "trafficPercent": 150}),
        "spec.canary.trafficPercent",
        "",
    ),
    (
        "gateway without parents",
        INFERENCESERVICE,
        isvc(trafficRouting={"mode": "gatewayAPI"}),
        "spec.trafficRouting",
        "parentRefs",
    ),
    (
        "success rate above 1",
        INFERENCESERVICE,
        isvc(canary={"modelRef": {"model": "digits", "version": 2}, "analysis": {"minSuccessRate": 1.5}}),
        "spec.canary.analysis.minSuccessRate",
        "",
    ),
    ("unknown quantization", INFERENCESERVICE, isvc(quantization="int4"), "spec.quantization", "int4"),
]


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


@pytest.mark.parametrize(("what", "info", "obj", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_naming_the_field(
    what: str, info: KindInfo, obj: Obj, field: str, phrase: str
) -> None:
    errors = validate(info, _drop_none(obj))
    assert errors, f"{what}: accepted, but the API server must refuse it"
    named = [e for e in errors if e.startswith((f"{field}:", f"{field}["))]
    assert named, f"{what}: no error names {field}: {errors}"
    if phrase:
        assert any(phrase in e for e in errors), f"{what}: no error says {phrase!r}: {errors}"


def test_at_least_ten_refusals_per_kind() -> None:
    for info in (k for k in KINDS if k.kind != "TuningJob"):  # its own: test_tuningjob_refusals.py
        assert sum(1 for b in BAD if b[1] is info) >= 10


def test_unknown_fields_are_reported_for_strict_field_validation() -> None:
    result = validate_custom_resource(schema_of(TRAININGJOB), tj(hyperparams={"epochs": 3}))
    assert "spec.hyperparams" in " ".join(result.unknown_fields)
    assert "hyperparams" not in result.obj["spec"], "unknown fields are pruned, as the API server does"


# --- immutability (transition rules) -----------------------------------------------------------------


def _stored(info: KindInfo, obj: Obj) -> Obj:
    result = validate_custom_resource(schema_of(info), obj)
    assert result.errors == []
    return result.obj


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("spec.model", lambda s: s["model"].update(layers=5)),
        ("spec.dataset", lambda s: s.update(dataset={"builtin": "wine"})),
        ("spec.hyperparameters", lambda s: s["hyperparameters"].update(epochs=99)),
        ("spec.distributed", lambda s: s["distributed"].update(nodes=4)),
        ("spec.precision", lambda s: s.update(precision="bf16")),
        ("spec.checkpoint.storage", lambda s: s["checkpoint"]["storage"].update(size="5Gi")),
    ],
)
def test_trainingjob_fields_that_define_the_run_are_immutable(
    field: str, change: Callable[[Obj], None]
) -> None:
    old = _stored(TRAININGJOB, tj())
    new = copy.deepcopy(old)
    change(new["spec"])
    errors = validate(TRAININGJOB, new, old)
    assert any(field in e and "immutable" in e for e in errors), errors


def test_trainingjob_run_policy_stays_mutable_so_jobs_can_be_suspended() -> None:
    old = _stored(TRAININGJOB, tj())
    new = copy.deepcopy(old)
    new["spec"]["runPolicy"]["suspend"] = True
    new["spec"]["runPolicy"]["ttlSecondsAfterFinished"] = 60
    assert validate(TRAININGJOB, new, old) == []


def test_modelversion_identity_is_frozen_only_after_verification() -> None:
    old = _stored(MODELVERSION, mv(version=3))
    changed = copy.deepcopy(old)
    changed["spec"]["source"] = {"uri": "pvc://models/other.pt"}
    changed["spec"]["format"] = "onnx"
    changed["spec"]["version"] = 4
    assert validate(MODELVERSION, changed, old) == [], "before verification the user may still fix the source"

    old["status"] = {"artifact": {"sha256": "a" * 64, "verifiedAt": "2026-11-25T10:00:00Z"}}
    errors = validate(MODELVERSION, changed, old)
    for field in ("spec.source", "spec.format", "spec.version"):
        assert any(e.startswith(field) and "immutable" in e for e in errors), (field, errors)

    tags_only = copy.deepcopy(old)
    tags_only["spec"]["tags"] = {"reviewed": "yes"}
    tags_only["spec"]["promotion"]["aliases"] = ["champion"]
    assert validate(MODELVERSION, tags_only, old) == [], "tags and promotion stay editable"


def test_modelversion_model_name_never_changes() -> None:
    old = _stored(MODELVERSION, mv())
    new = copy.deepcopy(old)
    new["spec"]["model"] = "other"
    assert any(e.startswith("spec.model") and "immutable" in e for e in validate(MODELVERSION, new, old))
