"""The TrainingJob's bounded training curve (status.history): what a chart of a long run still shows."""

from __future__ import annotations

import datetime
import itertools

import pytest

from modelops.controllers import trainingjob, trainingjob_history
from modelops.controllers.trainingjob_history import MAX_POINTS, append, point, thin

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


def run(steps: int, *, restart_at: int | None = None) -> list[dict[str, object]]:
    history: list[dict[str, object]] = []
    attempt = 0
    for step in range(1, steps + 1):
        if restart_at is not None and step == restart_at:
            attempt = 1
        new = point(
            {"step": step, "epoch": 1 + step // 100, "loss": 1 / step}, None, attempt=attempt, time="t"
        )
        assert new is not None
        history = append(history, new)
    return history


def test_a_long_run_keeps_at_most_the_limit_and_spans_the_whole_run() -> None:
    history = run(5000)
    steps = [p["step"] for p in history]
    assert len(history) <= MAX_POINTS
    assert steps[0] == 1 and steps[-1] == 5000  # first and latest survive
    assert steps == sorted(steps)
    # The recent half keeps full resolution; older gaps grow towards the start.
    assert steps[-MAX_POINTS // 2 :] == list(range(5001 - MAX_POINTS // 2, 5001))
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert gaps[0] > gaps[-1] == 1


def test_the_first_point_of_a_restart_is_never_thinned_away() -> None:
    history = run(3000, restart_at=40)
    boundary = next(p for p in history if p.get("attempt") == 1)
    assert boundary["step"] == 40
    assert [p for p in history if p["step"] < 40 and p.get("attempt")] == []


def test_a_second_look_at_the_same_step_replaces_the_point() -> None:
    first = point({"step": 10, "loss": 0.5}, None, attempt=0, time="t1")
    second = point({"step": 10, "loss": 0.5}, {"modelops_training_val_accuracy": 0.9}, attempt=0, time="t2")
    assert first and second
    history = append(append([], first), second)
    assert history == [{"step": 10, "loss": 0.5, "metrics": {"val_accuracy": 0.9}, "time": "t2"}]


def test_no_step_no_point_and_nan_metrics_are_left_out() -> None:
    assert point({"loss": 1.0}, None, attempt=0, time="t") is None
    assert point({"step": 0, "loss": 0.0}, None, attempt=0, time="t") is None  # before the first step
    p = point({"step": 1}, {"modelops_training_val_loss": float("nan")}, attempt=2, time="t")
    assert p == {"step": 1, "time": "t", "attempt": 2}


def test_thin_refuses_a_limit_too_small_to_keep_anything_useful() -> None:
    with pytest.raises(ValueError, match="limit"):
        thin([{"step": 1}] * 10, 2)


def job(status: dict[str, object]) -> dict[str, object]:
    spec = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}
    return {"metadata": {"name": "j", "generation": 1}, "spec": spec, "status": status}


def running_pod() -> dict[str, object]:
    return {
        "metadata": {"name": "j-0", "labels": {"modelops.dev/rank": "0"}, "annotations": {}},
        "status": {"phase": "Running", "startTime": "2026-12-07T11:59:00Z"},
    }


def test_plan_adds_a_point_per_scrape_and_keeps_the_curve_between_scrapes() -> None:
    metrics = {
        "modelops_training_step": 5.0,
        "modelops_training_total_steps": 50.0,
        "modelops_training_loss": 0.7,
    }
    first = trainingjob.plan(job({"phase": "Running"}), [running_pod()], metrics, now=NOW)
    assert first.status_patch["history"] == [{"step": 5, "loss": 0.7, "time": "2026-12-07T12:00:00Z"}]
    st = {"phase": "Running", "history": first.status_patch["history"]}
    metrics = {**metrics, "modelops_training_step": 9.0, "modelops_training_loss": 0.4}
    second = trainingjob.plan(job(st), [running_pod()], metrics, now=NOW)
    assert [p["step"] for p in second.status_patch["history"]] == [5, 9]
    # No scrape (the metrics endpoint did not answer): the curve is left as it is.
    third = trainingjob.plan(job(st), [running_pod()], None, now=NOW)
    assert "history" not in third.status_patch
    assert trainingjob_history.update(st, {"phase": "Running"}, None, now=NOW) == {}
