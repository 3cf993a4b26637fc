"""The glue between kopf and the pure logic: status goes into the patch, errors are retried, never fatal."""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf
import kubernetes
import prometheus_client
import pydantic
import pytest

from modelops import status
from modelops.api.modelversion import ModelVersionSpec
from modelops.api.runconfig import TrainResult
from modelops.api.trainingjob import TrainingJobSpec
from modelops.controllers import reconcile
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics
from modelops.controllers.registration import reconcile_object
from modelops.controllers.trainingjob import Plan
from modelops.controllers.trainingjob_handlers import model_version_for


class Spec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    size: int = 1


def broken_decide(spec: Spec) -> status.Conclusion:
    raise KeyError("a bug in the controller")  # fault injection: a controller bug


OK = reconcile.KindLogic("Widget", Spec, lambda spec: status.progressing("Pending", "accepted"))
BROKEN = reconcile.KindLogic("Widget", Spec, broken_decide)


def make_body(spec: dict[str, Any], st: dict[str, Any] | None = None) -> kopf.Body:
    raw: dict[str, Any] = {
        "metadata": {"name": "w", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": spec,
    }
    if st is not None:
        raw["status"] = st
    return kopf.Body(raw)  # type: ignore[arg-type]


class Poster:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, objs: kopf.Body, *, type: str, reason: str, message: str = "") -> None:
        self.events.append((type, reason))


def sample(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_status_goes_into_the_patch_and_one_event_is_posted() -> None:
    metrics, poster, patch = OperatorMetrics(), Poster(), kopf.Patch()
    logger = logging.getLogger("test")
    reconcile_object(OK, metrics, body=make_body({}), patch=patch, logger=logger, retry=0, post=poster)
    assert patch["status"]["phase"] == "Pending"
    assert patch["status"]["observedGeneration"] == 1
    assert poster.events == [("Normal", "Pending")]
    assert sample(metrics, "modelops_reconcile_total", kind="Widget", result="progressing") == 1.0

    # The object as it will be after kopf applied that patch: nothing more to write or post.
    settled = make_body({}, dict(patch["status"]))
    patch2, poster2 = kopf.Patch(), Poster()
    reconcile_object(OK, metrics, body=settled, patch=patch2, logger=logger, retry=0, post=poster2)
    assert dict(patch2) == {} and poster2.events == []


def test_unexpected_error_is_counted_logged_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, poster, patch = OperatorMetrics(), Poster(), kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as raised:
        reconcile_object(
            BROKEN,
            metrics,
            body=make_body({}),
            patch=patch,
            logger=logging.getLogger("t"),
            retry=3,
            post=poster,
        )
    assert raised.value.delay == 8.0
    assert "KeyError" in str(raised.value)
    assert sample(metrics, "modelops_reconcile_errors_total", kind="Widget", reason="KeyError") == 1.0
    assert sample(metrics, "modelops_reconcile_total", kind="Widget", result="error") == 1.0
    assert sample(metrics, "modelops_reconcile_duration_seconds_count", kind="Widget") == 1.0
    assert "Reconcile failed unexpectedly (KeyError)" in caplog.text
    assert dict(patch) == {} and poster.events == []


def test_invalid_spec_is_not_an_error_but_a_stalled_object() -> None:
    metrics, poster, patch = OperatorMetrics(), Poster(), kopf.Patch()
    reconcile_object(
        OK,
        metrics,
        body=make_body({"size": "big"}),
        patch=patch,
        logger=logging.getLogger("t"),
        retry=0,
        post=poster,
    )
    assert patch["status"]["phase"] == "Failed"
    assert poster.events == [("Warning", "InvalidSpec")]
    assert sample(metrics, "modelops_reconcile_total", kind="Widget", result="stalled") == 1.0
    assert sample(metrics, "modelops_reconcile_errors_total", kind="Widget", reason="InvalidSpec") is None


# --- TrainingJob glue: the ModelVersion a finished job registers, and the scrape of rank 0's metrics.

TJ_BODY: dict[str, Any] = {
    "metadata": {"name": "digits", "namespace": "ns", "uid": "u"},
    "spec": {
        "model": {"architecture": "mlp"},
        "dataset": {"builtin": "digits"},
        "output": {"modelName": "digits"},
    },
}


def finished_plan(sha: str = "ab" * 32) -> Plan:
    result = TrainResult.model_validate(
        {
            "status": "Succeeded",
            "reason": "Succeeded",
            "artifact": {"path": "model.pt", "sha256": sha, "sizeBytes": 10, "format": "torchscript"},
        }
    )
    return Plan(status.ready("Succeeded", "done", phase="Succeeded"), {}, [], result=result)


def model_version(name: str, model: str, version: int, job: str | None = None) -> dict[str, Any]:
    source = {"trainingJob": {"name": job}} if job else {"uri": "pvc://m/model.pt"}
    return {"metadata": {"name": name}, "spec": {"model": model, "version": version, "source": source}}


def test_model_version_takes_the_next_free_version_of_the_model() -> None:

    spec = TrainingJobSpec.model_validate(TJ_BODY["spec"])
    existing = [
        model_version("digits-1", "digits", 1, "older-job"),
        model_version("digits-v2", "digits", 2),
        model_version("other-7", "other", 7),
        model_version("digits-3", "other", 1),  # a name taken by another model
    ]
    name, manifest = model_version_for(TJ_BODY, spec, existing, finished_plan())
    assert name == "digits-4" and manifest is not None
    assert manifest["spec"] == {
        "model": "digits",
        "version": 4,
        "source": {"trainingJob": {"name": "digits"}},
        "format": "torchscript",
        "sha256": "ab" * 32,
    }
    ModelVersionSpec.model_validate(manifest["spec"])


def test_model_version_of_this_job_is_reused_after_an_operator_restart() -> None:

    spec = TrainingJobSpec.model_validate(TJ_BODY["spec"])
    existing = [model_version("digits-1", "digits", 1, "digits")]
    assert model_version_for(TJ_BODY, spec, existing, finished_plan()) == ("digits-1", None)


def test_scrape_reads_the_workers_series_over_http_and_none_when_nobody_answers() -> None:

    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Gauge("modelops_training_step", "steps", registry=registry).set(40)
    prometheus_client.Gauge("modelops_training_total_steps", "total", registry=registry).set(80)
    info = prometheus_client.Gauge("modelops_training_info", "who", ["rank"], registry=registry)
    info.labels(rank="0").set(1)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        values = Cluster(None).scrape("127.0.0.1", port)
    finally:
        server.shutdown()
        thread.join()
    assert values == {"modelops_training_step": 40.0, "modelops_training_total_steps": 80.0}
    assert Cluster(None).scrape("127.0.0.1", port) is None


# --- An API refusal of a child is a condition, not a retried traceback (fault injection) -------------


class RefusingCluster:
    """The API calls of a TrainingJob sync; pod creation is refused as a ResourceQuota refuses it."""

    def __init__(self, missing: tuple[str, ...] = ()) -> None:
        self.missing = missing
        self.created: list[str] = []

    def list_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return []

    def missing_claims(self, namespace: str, claims: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [c for c in claims if c[0] in self.missing]

    def failed_mounts(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def snapshot_exists(self, namespace: str, name: str) -> bool:
        return name not in self.missing

    def create(self, obj: dict[str, Any], *, patch_existing: bool = False) -> None:
        if obj["kind"] == "Pod":
            error = kubernetes.client.ApiException(status=403, reason="Forbidden")
            error.body = json.dumps(
                {"kind": "Status", "reason": "Forbidden", "message": f'pods "{obj["metadata"]["name"]}" is '
                 "forbidden: exceeded quota: compute, requested: cpu=1, used: cpu=2, limited: cpu=2"}
            )  # fmt: skip
            raise error
        self.created.append(obj["kind"])


def tj_body() -> kopf.Body:
    raw = {
        "metadata": {"name": "digits", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": TJ_BODY["spec"],
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


def test_a_refused_pod_becomes_stalled_child_rejected_with_one_event_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from modelops.controllers import trainingjob_handlers
    from modelops.controllers.entrypoint import kind_logics

    logic = dict((lg.kind, lg) for _, lg in kind_logics())["TrainingJob"]
    metrics, poster, patch = OperatorMetrics(), Poster(), kopf.Patch()
    cluster = RefusingCluster()
    trainingjob_handlers.sync(
        cluster,  # type: ignore[arg-type]
        logic,
        metrics,
        body=tj_body(),
        patch=patch,
        logger=logging.getLogger("t"),
        retry=0,
        post=poster,
    )
    stalled = status.get_condition(patch["status"]["conditions"], "Stalled")
    assert stalled is not None and stalled["status"] == "True" and stalled["reason"] == "ChildRejected"
    assert "exceeded quota: compute" in stalled["message"]
    assert patch["status"]["phase"] == "Pending"
    assert poster.events == [("Warning", "ChildRejected")]
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    assert (
        sample(metrics, "modelops_reconcile_errors_total", kind="TrainingJob", reason="ChildRejected") is None
    )


def test_a_missing_claim_creates_nothing() -> None:
    from modelops.controllers import trainingjob_handlers
    from modelops.controllers.entrypoint import kind_logics

    logic = dict((lg.kind, lg) for _, lg in kind_logics())["TrainingJob"]
    spec = {**TJ_BODY["spec"], "checkpoint": {"storage": {"existingClaim": "ckpts"}}}
    raw = {"metadata": {"name": "digits", "namespace": "ns", "uid": "u", "generation": 1}, "spec": spec}
    cluster, patch, poster = RefusingCluster(missing=("ckpts",)), kopf.Patch(), Poster()
    trainingjob_handlers.sync(
        cluster,  # type: ignore[arg-type]
        logic,
        OperatorMetrics(),
        body=kopf.Body(raw),  # type: ignore[arg-type]
        patch=patch,
        logger=logging.getLogger("t"),
        retry=0,
        post=poster,
    )
    stalled = status.get_condition(patch["status"]["conditions"], "Stalled")
    assert stalled is not None and stalled["reason"] == "ClaimNotFound"
    assert "spec.checkpoint.storage.existingClaim" in stalled["message"]
    assert cluster.created == [], "no Service, no claim, no pod while a claim is missing"


def test_a_missing_restore_snapshot_creates_nothing_and_says_which() -> None:
    from modelops.controllers import trainingjob_handlers
    from modelops.controllers.entrypoint import kind_logics

    logic = dict((lg.kind, lg) for _, lg in kind_logics())["TrainingJob"]
    spec = {**TJ_BODY["spec"], "checkpoint": {"restoreFrom": {"volumeSnapshot": {"name": "nightly"}}}}
    raw = {"metadata": {"name": "digits", "namespace": "ns", "uid": "u", "generation": 1}, "spec": spec}
    cluster, patch = RefusingCluster(missing=("nightly",)), kopf.Patch()
    trainingjob_handlers.sync(
        cluster,  # type: ignore[arg-type]
        logic,
        OperatorMetrics(),
        body=kopf.Body(raw),  # type: ignore[arg-type]
        patch=patch,
        logger=logging.getLogger("t"),
        retry=0,
        post=Poster(),
    )
    stalled = status.get_condition(patch["status"]["conditions"], "Stalled")
    assert stalled is not None and stalled["reason"] == "SnapshotNotFound"
    assert '"nightly"' in stalled["message"] and "restoreFrom.volumeSnapshot.name" in stalled["message"]
    assert cluster.created == []
