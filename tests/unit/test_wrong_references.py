"""Specs the schema must accept but the operator alone can judge: each gets a reason, never a silent wait.

A reference to a version, alias, model or TrainingJob that does not exist (or failed), an artifact
serving cannot read, a dataset file that is not there, a pod no node can take: through the controllers'
pure functions, each case must end in a condition reason naming what is wrong. (Cases that hang today,
such as a pod waiting on a missing Secret, are listed in the admission audit's report for their owners.)
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from test_trainingjob_status import T0, apply, job, pod

from modelops import status
from modelops.api.inferenceservice import ModelRef
from modelops.api.modelversion import ModelVersionSpec
from modelops.controllers import inferenceservice_pods as isc_pods
from modelops.controllers import inferenceservice_resolve as isc
from modelops.controllers import modelversion as mvc
from modelops.controllers import trainingjob as tjc


def _mv(name: str, version: int, phase: str, aliases: tuple[str, ...] = (), uri: str = "pvc://m/a.pt") -> Any:
    return {
        "metadata": {"name": name},
        "spec": {"model": "digits", "version": version},
        "status": {
            "phase": phase,
            "version": version,
            "aliases": list(aliases),
            "artifact": {"sha256": "a" * 64, "uri": uri, "format": "torchscript"},
        },
    }


VERSIONS = [
    _mv("digits-1", 1, "Ready", ("champion",)),
    _mv("digits-2", 2, "Failed"),
    _mv("digits-3", 3, "Verifying"),
    _mv("digits-4", 4, "Ready", uri="s3://bucket/m.pt"),
]


@pytest.mark.parametrize(
    ("what", "ref", "reason", "named"),
    [
        (
            "a version that does not exist",
            ModelRef(model="digits", version=9),
            "ModelVersionNotFound",
            "version 9",
        ),
        ("an alias nobody holds", ModelRef(model="digits", alias="prod"), "ModelVersionNotFound", "'prod'"),
        ("a model that does not exist", ModelRef(model="wine", version=1), "ModelVersionNotFound", "'wine'"),
        (
            "a version still verifying",
            ModelRef(model="digits", version=3),
            "ModelVersionNotReady",
            "digits-3",
        ),
        (
            "a version with an s3 artifact",
            ModelRef(model="digits", version=4),
            "ArtifactNotServable",
            "s3://",
        ),
    ],
)
def test_a_model_ref_that_cannot_be_served_says_why(
    what: str, ref: ModelRef, reason: str, named: str
) -> None:
    for field in ("spec.modelRef", "spec.canary.modelRef"):
        problem = isc.resolve(ref, VERSIONS, field)
        assert isinstance(problem, isc.Problem), f"{what}: resolved to {problem}"
        assert problem.reason == reason, what
        assert problem.message.startswith(f"{field}:") and named in problem.message, problem.message


def test_the_served_version_resolves() -> None:
    served = isc.resolve(ModelRef(model="digits", alias="champion"), VERSIONS)
    assert isinstance(served, isc.Served) and served.model_version == "digits-1"


def _source(**source: Any) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate({"model": "digits", "source": source})


@pytest.mark.parametrize(
    ("what", "spec", "job", "reason", "state"),
    [
        (
            "a TrainingJob that does not exist",
            _source(trainingJob={"name": "nope"}),
            None,
            "TrainingJobNotFound",
            status.State.PROGRESSING,
        ),
        (
            "a TrainingJob that failed",
            _source(trainingJob={"name": "t"}),
            {"status": {"phase": "Failed"}},
            "TrainingJobFailed",
            status.State.STALLED,
        ),
    ],
)
def test_a_source_that_cannot_be_verified_says_why(
    what: str, spec: ModelVersionSpec, job: Any, reason: str, state: status.State
) -> None:
    found = mvc.locate(spec, job)
    assert isinstance(found, status.Conclusion), f"{what}: located at {found}"
    assert (found.reason, found.state) == (reason, state), what


def test_an_artifact_that_is_not_in_its_claim_fails_verification_with_the_workers_reason() -> None:
    message = '{"status":"Failed","reason":"ArtifactNotFound","message":"pvc://models/m.pt: no such file"}'
    terminated = {"exitCode": 1, "message": message}
    verdict = mvc.pod_verdict(
        {
            "status": {
                "phase": "Failed",
                "containerStatuses": [{"name": "verify", "state": {"terminated": terminated}}],
            }
        }
    )
    assert verdict is not None and not verdict.ok and verdict.reason == "ArtifactNotFound"


def test_a_gate_on_a_metric_nobody_reports_fails_naming_it() -> None:
    spec = ModelVersionSpec.model_validate(
        {
            "model": "d",
            "source": {"uri": "pvc://c/m"},
            "promotion": {"gates": [{"metric": "acc", "value": 0.9}]},
        }
    )
    result = mvc.check_gate(spec.promotion.gates[0], {"accuracy": 0.95})
    assert result["passed"] is False and result["metric"] == "acc" and "value" not in result


def _after_ten_minutes(p: dict[str, Any]) -> tjc.Plan:
    created = apply(job(), tjc.plan(job(), [], None, now=T0))
    return tjc.plan(created, [p], None, now=T0 + datetime.timedelta(minutes=10))


def test_a_training_pod_whose_claim_is_missing_is_stalled_naming_it() -> None:
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": '0/1 nodes are available: persistentvolumeclaim "data" not found.',
    }
    conclusion = _after_ten_minutes(pod(0, "Pending", conditions=[unschedulable])).conclusion
    # The scheduler's message names the claim: the job is Stalled with ClaimNotFound, not left waiting.
    assert conclusion.reason == "ClaimNotFound" and "data" in conclusion.message


def test_a_dataset_file_that_does_not_exist_stalls_the_job() -> None:
    result = (
        '{"status":"Failed","reason":"DatasetNotFound","message":"spec.dataset.file.path: data/x.csv does '
        'not exist in claim data","exitCode":65}'
    )
    plan = _after_ten_minutes(pod(0, "Failed", exit_code=65, message=result))
    assert plan.conclusion.reason == "DatasetNotFound" and plan.conclusion.state is status.State.STALLED
    assert "spec.dataset.file.path" in plan.conclusion.message


def test_a_serving_pod_whose_claim_is_missing_is_reported() -> None:
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": 'persistentvolumeclaim "models" not found',
    }
    viewed = isc_pods.view(
        {"metadata": {"name": "s-1"}, "status": {"phase": "Pending", "conditions": [unschedulable]}}
    )
    assert viewed.crash is not None and viewed.crash[0] == "Unschedulable"


def test_a_version_that_failed_verification_stalls_the_service_naming_why() -> None:
    failed = {
        "metadata": {"name": "digits-5"},
        "spec": {"model": "digits", "version": 5},
        "status": {
            "phase": "Failed",
            "version": 5,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ArtifactDigestMismatch",
                    "message": "sha256 differs",
                }
            ],
        },
    }
    problem = isc.resolve(ModelRef(model="digits", version=5), [failed], "spec.modelRef")
    assert isinstance(problem, isc.Problem) and problem.reason == "ModelVersionFailed"
    assert "ArtifactDigestMismatch" in problem.message and problem.message.startswith("spec.modelRef:")
    assert problem.reason in isc.STALLING_PROBLEMS
