"""What a custom training image may write as its result, and what the TrainingJob shows of it."""

from __future__ import annotations

import datetime
import json
from typing import Any

from modelops import status
from modelops.api.runconfig import MAX_EXTRA_METRICS, TrainResult
from modelops.controllers import trainingjob as tj

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SHA = "ab" * 32


def result(**extra: Any) -> dict[str, Any]:
    return {
        "status": "Succeeded",
        "reason": "Succeeded",
        "artifact": {"path": "model.pt", "sha256": SHA, "sizeBytes": 10, "format": "torchscript"},
        **extra,
    }


def test_extra_metrics_are_kept_and_bad_ones_left_out_not_the_whole_result() -> None:
    parsed = tj.parse_result(
        json.dumps(
            result(
                metrics={
                    "accuracy": 0.9,
                    "bleu": 0.31,
                    "map50": 1,
                    "bad-name": 1.0,
                    "text": "high",
                    "inf": 1e999,
                },
                somethingNew={"the contract does not know": True},
            )
        )
    )
    assert parsed is not None, "one unknown key must not drop the result"
    assert parsed.artifact is not None and parsed.artifact.sha256 == SHA
    assert parsed.metrics is not None
    assert parsed.metrics.model_dump(by_alias=True, exclude_none=True) == {
        "accuracy": 0.9,
        "bleu": 0.31,
        "map50": 1.0,
    }
    assert parsed.metrics.ignored == ["bad-name", "text", "inf"]


def test_extra_metrics_are_bounded() -> None:
    many = {f"m{i}": float(i) for i in range(MAX_EXTRA_METRICS + 5)}
    parsed = TrainResult.model_validate(result(metrics=many))
    assert parsed.metrics is not None and len(parsed.metrics.extra) == MAX_EXTRA_METRICS
    assert len(parsed.metrics.ignored) == 5


def test_reported_hyperparameters_keep_scalars_only() -> None:
    parsed = TrainResult.model_validate(
        result(hyperparameters={"lr": 0.01, "optimizer": "lion", "nested": {"a": 1}, "warmup": True})
    )
    assert parsed.hyperparameters == {"lr": 0.01, "optimizer": "lion", "warmup": True}


def pod(phase: str, message: str = "") -> dict[str, Any]:
    st: dict[str, Any] = {"phase": phase, "startTime": "2026-01-01T11:59:00Z"}
    if phase == "Succeeded":
        terminated = {"exitCode": 0, "reason": "Completed", "message": message}
        st["containerStatuses"] = [{"name": "trainer", "state": {"terminated": terminated}}]
    return {
        "metadata": {
            "name": "byo-0",
            "labels": {"modelops.dev/trainingjob": "byo", "modelops.dev/rank": "0"},
            "annotations": {"modelops.dev/attempt": "0"},
        },
        "status": st,
    }


def job(st: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "byo", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"image": "ghcr.io/modelops/worker:0.1.0", "command": ["python", "/code/train.py"]},
        "status": st,
    }


def settle(obj: dict[str, Any], p: tj.Plan) -> dict[str, Any]:
    st = {**(obj.get("status") or {}), **p.status_patch}
    return {**obj, "status": {k: v for k, v in st.items() if v is not None}}


def test_the_latest_checkpoint_shows_while_training_from_the_workers_gauges() -> None:
    running = job({"phase": "Running", "conditions": [], "restarts": 0})
    scraped = {
        "modelops_training_step": 40.0,
        "modelops_training_total_steps": 100.0,
        "modelops_training_checkpoint_step": 30.0,
        "modelops_training_checkpoint_timestamp_seconds": T0.timestamp() - 5,
    }
    after = settle(running, tj.plan(running, [pod("Running")], scraped, now=T0))
    assert after["status"]["checkpoint"] == {"step": 30, "time": "2026-01-01T11:59:55Z"}
    assert after["status"]["progress"]["step"] == 40
    # No checkpoint yet (the gauge is 0): nothing is claimed.
    fresh = settle(running, tj.plan(running, [pod("Running")], {"modelops_training_step": 3.0}, now=T0))
    assert "checkpoint" not in fresh["status"]


def test_a_finished_custom_run_shows_its_own_metrics_and_hyperparameters() -> None:
    running = job({"phase": "Running", "conditions": [], "restarts": 0})
    message = json.dumps(
        result(metrics={"accuracy": 0.8, "bleu": 0.3, "bad name": 2}, hyperparameters={"lr": 0.1})
    )
    p = tj.plan(running, [pod("Succeeded", message)], None, now=T0)
    done = settle(running, p)
    assert done["status"]["phase"] == "Succeeded"
    assert done["status"]["metrics"] == {"accuracy": 0.8, "bleu": 0.3}
    assert done["status"]["hyperparameters"] == {"lr": 0.1}
    assert ("Warning", "MetricsIgnored") in [(e.type, e.reason) for e in p.events]
    assert status.get_condition(done["status"]["conditions"], "Ready")["status"] == "True"
