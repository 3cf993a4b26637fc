"""A TrainingJob's training curve, kept bounded in its status so anyone with `get` can draw it.

The worker publishes only its *latest* step, loss and validation metrics (Prometheus gauges); the
operator scrapes them every few seconds. Without a record of those looks, the curve of a run is
gone the moment the next value arrives, unless Prometheus happens to be installed. So each look
adds one point to `status.history`, and the list is kept under `MAX_POINTS` by halving the
resolution of its older part whenever it overflows: the recent half keeps every point, the older
points keep every other one (repeatedly, so the oldest part ends up the sparsest). A status stays
small (200 points are ~20 KB) however long the run, and a chart of it still shows the whole run.

Restarts and resumes are never thinned away: the first point of each attempt (`attempt` differs from
the point before it) is kept, so a chart can mark where the run restarted and where it resumed from.
Pure functions only; `controllers.trainingjob.plan` calls `update`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelops import status

MAX_POINTS = 200

# Worker series (docs/worker.md) kept per point besides the training loss, by their short names.
METRIC_SERIES = {
    "modelops_training_val_loss": "val_loss",
    "modelops_training_val_accuracy": "val_accuracy",
}


def point(
    progress: Mapping[str, Any] | None,
    metrics: Mapping[str, float] | None,
    *,
    attempt: int,
    time: str,
) -> dict[str, Any] | None:
    """One point from the progress just computed and the scraped series; None before the first step."""
    progress = progress or {}
    step = progress.get("step")
    if not step:  # no optimizer step yet: the worker's gauges still hold their zeros
        return None
    out: dict[str, Any] = {"step": int(step), "time": time}
    if progress.get("epoch") is not None:
        out["epoch"] = int(progress["epoch"])
    if progress.get("loss") is not None:
        out["loss"] = round(float(progress["loss"]), 6)
    values = {
        short: round(float(metrics[series]), 6)
        for series, short in METRIC_SERIES.items()
        if metrics and series in metrics and metrics[series] == metrics[series]  # NaN: not yet measured
    }
    if values.get("val_loss") == 0:
        # The worker's gauges start at 0 before the first validation: a loss of exactly 0 is "not yet".
        values = {}
    if values:
        out["metrics"] = values
    if attempt:
        out["attempt"] = attempt
    return out


def _attempt(p: Mapping[str, Any] | None) -> int:
    return int((p or {}).get("attempt") or 0)


def append(
    history: Sequence[Mapping[str, Any]] | None, new: Mapping[str, Any], *, limit: int = MAX_POINTS
) -> list[dict[str, Any]]:
    """`history` with `new` added, at most `limit` points.

    A look at the same step of the same attempt replaces the last point (its values may have been
    refined, e.g. validation metrics arrive at the end of an epoch) instead of adding a duplicate.
    """
    points = [dict(p) for p in history or ()]
    last = points[-1] if points else None
    if last is not None and last.get("step") == new.get("step") and _attempt(last) == _attempt(new):
        points[-1] = dict(new)
    else:
        points.append(dict(new))
    return thin(points, limit)


def thin(points: list[dict[str, Any]], limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    """Halve the resolution of the older half until at most `limit` points remain.

    The first point, the last `limit // 2` points and the first point of every attempt always stay.
    """
    if limit < 4:
        raise ValueError("limit must be at least 4")
    while len(points) > limit:
        recent = limit // 2
        older, newer = points[:-recent], points[-recent:]
        kept = [
            p for i, p in enumerate(older) if i % 2 == 0 or (i > 0 and _attempt(p) != _attempt(older[i - 1]))
        ]
        if len(kept) == len(older):  # only attempt boundaries left: drop the oldest of them
            kept = kept[len(kept) + len(newer) - limit :]
        points = kept + newer
    return points


def update(
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
    metrics: Mapping[str, float] | None,
    *,
    now: Any,
) -> dict[str, Any]:
    """The `history` status field after this sync, as a dict to merge into `desired` ({}: unchanged).

    A point is added on each scrape and once more when the job succeeds (the final loss comes from
    the worker's result, not from the last scrape).
    """
    finished = desired.get("phase") == "Succeeded" and current.get("phase") != "Succeeded"
    if not metrics and not finished:
        return {}
    new = point(
        desired.get("progress"),
        metrics,
        attempt=int(desired.get("restarts") or 0),
        time=status.format_time(now),
    )
    if new is None:
        return {}
    final = desired.get("metrics") or {}
    if finished and not metrics and final:
        # The result's validation metrics are the ones the last epoch measured.
        values = {
            short: final.get(key) for key, short in (("loss", "val_loss"), ("accuracy", "val_accuracy"))
        }
        new["metrics"] = {k: round(float(v), 6) for k, v in values.items() if v is not None}
    history = append(current.get("history"), new)
    return {} if history == list(current.get("history") or ()) else {"history": history}
