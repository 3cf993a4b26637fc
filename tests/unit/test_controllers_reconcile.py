"""What the operator decides for one object: the status it writes and the Events it posts."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from modelops import API_VERSION
from modelops.api import KINDS
from modelops.controllers import entrypoint, reconcile
from modelops.status import kstatus

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=1)

VALID_SPECS: dict[str, dict[str, Any]] = {
    "TrainingJob": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}},
    "ModelVersion": {"model": "fraud", "source": {"uri": "pvc://models/fraud/7/model.pt"}},
    "InferenceService": {"modelRef": {"model": "digits", "version": 1}},
}

LOGICS = dict((logic.kind, logic) for _, logic in entrypoint.kind_logics())


def body(
    kind: str, spec: dict[str, Any], *, generation: int = 1, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    b: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default", "uid": "u1", "generation": generation},
        "spec": spec,
    }
    if status is not None:
        b["status"] = status
    return b


def conditions_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_every_kind_of_the_api_has_logic() -> None:
    assert sorted(LOGICS) == sorted(info.kind for info in KINDS)
    assert sorted(p for p, _ in entrypoint.kind_logics()) == sorted(info.plural for info in KINDS)


@pytest.mark.parametrize("kind", sorted(VALID_SPECS))
def test_valid_object_is_acknowledged_as_pending_and_in_progress(kind: str) -> None:
    outcome = reconcile.reconcile(LOGICS[kind], body(kind, VALID_SPECS[kind], generation=3), now=T0)
    patch = outcome.status_patch
    assert patch["observedGeneration"] == 3
    assert patch["phase"] == "Pending"
    assert conditions_of(patch) == {
        "Ready": ("False", "Pending"),
        "Reconciling": ("True", "Pending"),
        "Stalled": ("False", "NotStalled"),
    }
    if kind not in ("TrainingJob", "ModelVersion", "InferenceService"):  # kinds with a controller
        assert "not implemented yet" in patch["conditions"][0]["message"]
    assert kstatus(patch, 3) == "InProgress"
    assert outcome.event is not None and (outcome.event.type, outcome.event.reason) == ("Normal", "Pending")
    assert outcome.result == "progressing"
    # The status is valid against the kind's own status model (and so against the CRD schema).
    next(info for info in KINDS if info.kind == kind).status_model.model_validate(patch)


@pytest.mark.parametrize("kind", sorted(VALID_SPECS))
def test_second_reconcile_writes_nothing_and_posts_nothing(kind: str) -> None:
    first = reconcile.reconcile(LOGICS[kind], body(kind, VALID_SPECS[kind]), now=T0)
    second = reconcile.reconcile(
        LOGICS[kind], body(kind, VALID_SPECS[kind], status=first.status_patch), now=T1
    )
    assert second.status_patch == {}
    assert second.event is None


def test_new_generation_with_same_verdict_updates_generation_without_an_event() -> None:
    logic = LOGICS["InferenceService"]
    first = reconcile.reconcile(logic, body("InferenceService", VALID_SPECS["InferenceService"]), now=T0)
    spec = {**VALID_SPECS["InferenceService"], "minReplicas": 2}
    second = reconcile.reconcile(
        logic, body("InferenceService", spec, generation=2, status=first.status_patch), now=T1
    )
    assert second.status_patch["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in second.status_patch["conditions"]} == {2}
    assert "phase" not in second.status_patch
    assert second.event is None


def test_unparseable_spec_stalls_with_the_field_and_the_fix_and_leaks_no_values() -> None:
    spec = {"epochz": 3, "env": [{"name": "TOKEN", "value": 12345, "from": "s3cr3t-value"}]}
    outcome = reconcile.reconcile(LOGICS["TrainingJob"], body("TrainingJob", spec, generation=2), now=T0)
    patch = outcome.status_patch
    assert conditions_of(patch) == {
        "Ready": ("False", "InvalidSpec"),
        "Reconciling": ("False", "Reconciled"),
        "Stalled": ("True", "InvalidSpec"),
    }
    assert patch["phase"] == "Failed" and patch["observedGeneration"] == 2
    assert kstatus(patch, 2) == "Failed"
    message = patch["conditions"][0]["message"]
    assert "spec.epochz: unknown field: remove it or fix its spelling" in message
    assert "spec.env[0].value" in message
    assert "spec.env[0].from" in message
    assert "kubectl explain trainingjob.spec" in message
    assert "s3cr3t" not in message and "12345" not in message
    assert outcome.event is not None and (outcome.event.type, outcome.event.reason) == (
        "Warning",
        "InvalidSpec",
    )
    assert outcome.result == "stalled"


def test_missing_required_field_is_named() -> None:
    outcome = reconcile.reconcile(LOGICS["InferenceService"], body("InferenceService", {}), now=T0)
    assert (
        "spec.modelRef: required field is missing: add it" in outcome.status_patch["conditions"][0]["message"]
    )


def test_object_without_spec_stalls_instead_of_raising() -> None:
    b = body("ModelVersion", {})
    del b["spec"]
    outcome = reconcile.reconcile(LOGICS["ModelVersion"], b, now=T0)
    assert outcome.conclusion.reason == "InvalidSpec"


def test_many_errors_are_summarised() -> None:
    spec = {f"unknown{i}": i for i in range(9)}
    message = reconcile.reconcile(LOGICS["TrainingJob"], body("TrainingJob", spec), now=T0).conclusion.message
    assert "and 4 more" in message


def test_fixing_the_spec_recovers_with_an_event() -> None:
    logic = LOGICS["TrainingJob"]
    broken = reconcile.reconcile(logic, body("TrainingJob", {"epochz": 1}), now=T0)
    fixed = reconcile.reconcile(
        logic, body("TrainingJob", {}, generation=2, status=broken.status_patch), now=T1
    )
    assert conditions_of(fixed.status_patch)["Stalled"] == ("False", "NotStalled")
    assert fixed.event is not None and fixed.event.reason == "Pending"
    assert kstatus(fixed.status_patch, 2) == "InProgress"


def test_foreign_status_fields_are_not_overwritten() -> None:
    logic = LOGICS["ModelVersion"]
    first = reconcile.reconcile(logic, body("ModelVersion", VALID_SPECS["ModelVersion"]), now=T0)
    status = {**first.status_patch, "sha256": "ab" * 32}
    again = reconcile.reconcile(
        logic, body("ModelVersion", VALID_SPECS["ModelVersion"], status=status), now=T1
    )
    assert again.status_patch == {}
