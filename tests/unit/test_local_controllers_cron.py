"""CronJob schedules and the CronJob controller's decisions, on a fake clock (no waiting for minutes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from modelops.cron import ScheduleError, missed_runs, parse
from modelops_local.controllers import common as c
from modelops_local.controllers import cronjobs
from modelops_local.controllers.actions import Create, Delete, Status

Obj = dict[str, Any]
UTC = dt.UTC


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("* * * * *", "2026-01-01T10:00:30", "2026-01-01T10:01:00"),
        ("*/15 * * * *", "2026-01-01T10:01:00", "2026-01-01T10:15:00"),
        ("5-10/5 3 * * *", "2026-01-01T03:05:00", "2026-01-01T03:10:00"),
        ("0 9 * * MON-FRI", "2026-01-02T09:00:00", "2026-01-05T09:00:00"),  # Fri -> Mon
        ("0 0 1 JAN,jul *", "2026-02-01T00:00:00", "2026-07-01T00:00:00"),
        ("@hourly", "2026-01-01T10:59:59", "2026-01-01T11:00:00"),
        ("@weekly", "2026-01-01T00:00:00", "2026-01-04T00:00:00"),  # next Sunday
        ("0 0 29 2 *", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 12 * * 0", "2026-01-01T00:00:00", "2026-01-04T12:00:00"),  # 0 is Sunday (7 is refused)
        ("0 12\t* *  SUN", "2026-01-01T00:00:00", "2026-01-04T12:00:00"),  # any whitespace, as robfig
        ("@every 90s", "2026-01-01T00:00:00", "2026-01-01T00:01:30"),
    ],
)
def test_next_activation(expr: str, after: str, expected: str) -> None:
    assert cronjobs.parse_schedule(expr, None).next_after(t(after)) == t(expected)


def test_day_fields_or_when_both_restricted_and_when_one_is_star() -> None:
    both = parse("0 0 13 * FRI")  # the 13th, or any Friday
    assert both.next_after(t("2026-01-01T00:00:00")) == t("2026-01-02T00:00:00")  # Fri 2 Jan
    assert both.next_after(t("2026-01-11T00:00:00")) == t("2026-01-13T00:00:00")  # Tue 13 Jan
    only_dow = parse("0 0 * * FRI")
    assert only_dow.next_after(t("2026-01-11T00:00:00")) == t("2026-01-16T00:00:00")


def test_time_zone_moves_the_activation() -> None:
    berlin = cronjobs.parse_schedule("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(t("2026-01-01T00:00:00")) == t("2026-01-01T08:00:00")
    new_york = cronjobs.parse_schedule("0 9 * * *", "America/New_York")
    assert new_york.next_after(t("2026-07-01T00:00:00")) == t("2026-07-01T13:00:00")


@pytest.mark.parametrize(
    "bad",
    [
        "* * * *",
        "61 * * * *",
        "* * * * MONDAY",
        "*/0 * * * *",
        "@every soon",
        "0 12 * * 7",  # robfig/cron's day-of-week is 0-6: Kubernetes refuses 7
        "0 12 * * 5-7",
        "TZ=UTC 0 9 * * *",  # refused since Kubernetes 1.27: use spec.timeZone
        "CRON_TZ=Europe/Berlin 0 9 * * *",
    ],
)
def test_bad_schedules_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(ScheduleError):
        cronjobs.parse_schedule(bad, None)
    with pytest.raises(ScheduleError, match="time zone"):
        cronjobs.parse_schedule("* * * * *", "Mars/Olympus")


def test_missed_runs_returns_the_latest_only() -> None:
    latest, count = missed_runs(parse("* * * * *"), t("2026-01-01T10:00:00"), t("2026-01-01T10:05:30"))
    assert (latest, count) == (t("2026-01-01T10:05:00"), 5)
    latest, count = missed_runs(parse("* * * * *"), t("2026-01-01T00:00:00"), t("2026-01-03T00:00:30"))
    assert latest == t("2026-01-03T00:00:00") and count >= 100


def cronjob(**spec: Any) -> Obj:
    return {
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "cj",
            "creationTimestamp": "2026-01-01T10:00:00Z",
        },
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": []}}},
            },
            **spec,
        },
    }


def job(name: str, state: str | None, finished: str = "2026-01-01T10:00:30Z") -> Obj:
    conds = [{"type": state, "status": "True", "lastTransitionTime": finished}] if state else []
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": name,
            "creationTimestamp": "2026-01-01T10:00:00Z",
            "ownerReferences": [{"kind": "CronJob", "uid": "cj", "controller": True, "name": "nightly"}],
        },
        "status": {"conditions": conds, **({"completionTime": finished} if state == "Complete" else {})},
    }


def test_every_minute_creates_one_job_per_activation_named_by_time() -> None:
    r = cronjobs.reconcile(cronjob(), [], t("2026-01-01T10:01:10"))
    (create,) = [a for a in r.actions if isinstance(a, Create)]
    scheduled = t("2026-01-01T10:01:00")
    assert create.body["metadata"]["name"] == f"nightly-{int(scheduled.timestamp()) // 60}"
    assert create.body["metadata"]["annotations"][cronjobs.SCHEDULED] == "2026-01-01T10:01:00Z"
    assert create.body["metadata"]["labels"] == {"a": "b"}
    (status,) = [a.status for a in r.actions if isinstance(a, Status)]
    assert status["lastScheduleTime"] == "2026-01-01T10:01:00Z"
    assert r.requeue_after is not None and 49 < r.requeue_after < 51
    # The same activation, seen again with its Job present, creates nothing more.
    again = cronjobs.reconcile(
        cronjob(), [job(create.body["metadata"]["name"], None)], t("2026-01-01T10:01:20")
    )
    assert not [a for a in again.actions if isinstance(a, Create)]


def test_forbid_skips_while_active_and_replace_deletes_it() -> None:
    running = job("old", None)
    at = t("2026-01-01T10:01:10")
    forbid = cronjobs.reconcile(cronjob(concurrencyPolicy="Forbid"), [running], at)
    assert not [a for a in forbid.actions if isinstance(a, Create)]
    (status,) = [a.status for a in forbid.actions if isinstance(a, Status)]
    assert [ref["name"] for ref in status["active"]] == ["old"]
    replace = cronjobs.reconcile(cronjob(concurrencyPolicy="Replace"), [running], at)
    assert [a.name for a in replace.actions if isinstance(a, Delete)] == ["old"]
    assert [a for a in replace.actions if isinstance(a, Create)]


def test_starting_deadline_and_suspend() -> None:
    late = cronjobs.reconcile(cronjob(startingDeadlineSeconds=5), [], t("2026-01-01T10:01:10"))
    assert not [a for a in late.actions if isinstance(a, Create)]
    suspended = cronjobs.reconcile(cronjob(suspend=True), [], t("2026-01-01T10:01:10"))
    assert not [a for a in suspended.actions if isinstance(a, Create)]


def test_history_limits_delete_oldest_finished_jobs_and_track_last_success() -> None:
    jobs = [job(f"ok{i}", "Complete", f"2026-01-01T10:0{i}:30Z") for i in range(5)]
    jobs += [job(f"bad{i}", "Failed", f"2026-01-01T10:0{i}:40Z") for i in range(3)]
    cj = cronjob(successfulJobsHistoryLimit=2)
    cj["status"] = {"lastScheduleTime": "2026-01-01T10:05:00Z"}
    r = cronjobs.reconcile(cj, jobs, t("2026-01-01T10:05:10"))
    assert sorted(a.name for a in r.actions if isinstance(a, Delete)) == ["bad0", "bad1", "ok0", "ok1", "ok2"]
    (status,) = [a.status for a in r.actions if isinstance(a, Status)]
    assert status["lastSuccessfulTime"] == "2026-01-01T10:04:30Z"
    assert c.parse_time(status["lastScheduleTime"]) == t("2026-01-01T10:05:00")
