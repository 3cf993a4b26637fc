"""The glue between kopf and the pure logic: status goes into the patch, errors are retried, never fatal."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pydantic
import pytest

from modelops import status
from modelops.controllers import reconcile
from modelops.controllers.handlers import reconcile_object
from modelops.controllers.metrics import OperatorMetrics


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
