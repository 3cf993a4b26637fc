"""CronJob controller: create a Job at each scheduled time.

Follows cronjob_controllerv2 upstream: the most recent missed activation since `lastScheduleTime` (or
creation) runs once, unless it is older than `startingDeadlineSeconds`; `concurrencyPolicy` Allow, Forbid
(skip while a Job is active) or Replace (delete the active Jobs first); Jobs are named
`<cronjob>-<scheduled minutes since the epoch>` so a restart cannot run an activation twice; finished
Jobs beyond `successfulJobsHistoryLimit` (3) / `failedJobsHistoryLimit` (1) are deleted; `suspend` stops
new runs; status keeps `active`, `lastScheduleTime` and `lastSuccessfulTime`.

Schedules are read as Kubernetes reads them (robfig/cron's standard parser, `modelops.cron` in its
strict form): day-of-week is 0-6, so `7` is refused, and a `TZ=`/`CRON_TZ=` prefix is refused with the
API server's message (Kubernetes refuses it at create since 1.27 in favour of `spec.timeZone`; the local
API server does not validate CronJobs, so the controller is where the local plane says so). A refused
schedule gets a Warning `UnparseableSchedule` event and no Jobs, as upstream.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from modelops.cron import Schedule, ScheduleError, missed_runs, parse

from . import common as c
from .actions import CRONJOBS, JOBS, Create, Delete, Event, Result, Status
from .jobs import finish_time, is_finished

Obj = dict[str, Any]

SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


TZ_REFUSED = "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"


def parse_schedule(schedule: str, time_zone: str | None) -> Schedule:
    """`spec.schedule` and `spec.timeZone` as Kubernetes admits and runs them (see the module docstring).

    Fields are split on any whitespace, as robfig/cron's `ParseStandard` does; everything else is the
    strict grammar the operator's own schedules use.
    """
    if "TZ" in schedule:  # the API server's test, verbatim: strings.Contains(schedule, "TZ")
        raise ScheduleError(TZ_REFUSED)
    return parse(" ".join(schedule.split()), time_zone, strict=True)


def job_name(cronjob: str, scheduled: dt.datetime) -> str:
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def job_for(cj: Obj, scheduled: dt.datetime) -> Obj:
    template = json.loads(json.dumps((cj.get("spec") or {}).get("jobTemplate") or {}))
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED] = c.fmt_time(scheduled)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(c.name_of(cj), scheduled),
            "namespace": c.namespace_of(cj),
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [c.owner_reference(cj, "batch/v1", "CronJob")],
        },
        "spec": template.get("spec") or {},
    }


def _ref(job: Obj) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": c.name_of(job),
        "namespace": c.namespace_of(job),
        "uid": c.uid_of(job),
        "resourceVersion": c.meta(job).get("resourceVersion", ""),
    }


def reconcile(cj: Obj, jobs: Sequence[Obj], at: dt.datetime) -> Result:
    result = Result()
    if c.is_deleting(cj):
        return result
    spec = cj.get("spec") or {}
    ns, name = c.namespace_of(cj), c.name_of(cj)
    owned = [j for j in jobs if c.owned_by(j, cj)]
    running = [j for j in owned if not is_finished(j) and not c.is_deleting(j)]
    old = cj.get("status") or {}
    status: Obj = {k: v for k, v in old.items() if k in ("lastScheduleTime", "lastSuccessfulTime")}
    succeeded = [finish_time(j) for j in owned if is_finished(j) == "Complete"]
    last_success = max((t for t in succeeded if t is not None), default=None)
    prev_success = c.parse_time(old.get("lastSuccessfulTime"))
    if last_success is not None and (prev_success is None or last_success > prev_success):
        status["lastSuccessfulTime"] = c.fmt_time(last_success)

    # History: oldest finished Jobs beyond the limits go (the newest are kept).
    for state, key, default in (
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ):
        limit = spec.get(key, default)
        if limit is None:
            continue
        done = sorted(
            (j for j in owned if is_finished(j) == state and not c.is_deleting(j)),
            key=lambda j: finish_time(j) or c.creation_time(j),
        )
        for job in done[: max(len(done) - int(limit), 0)]:
            result.actions.append(Delete(JOBS, ns, c.name_of(job), c.uid_of(job), propagation="Background"))

    def emit(active: Sequence[Obj]) -> Result:
        refs = [_ref(j) for j in active if c.uid_of(j)]
        if refs:
            status["active"] = sorted(refs, key=lambda r: r["name"])
        result.actions.append(Status(CRONJOBS, ns, name, status))
        return result

    try:
        schedule = parse_schedule(str(spec.get("schedule", "")), spec.get("timeZone"))
    except ScheduleError as e:
        result.actions.append(
            Event(cj, "UnparseableSchedule", f"unparseable schedule {spec.get('schedule')!r}: {e}", "Warning")
        )
        return emit(running)
    if spec.get("suspend"):
        return emit(running)

    earliest = c.parse_time(old.get("lastScheduleTime")) or c.creation_time(cj)
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, at - dt.timedelta(seconds=int(deadline)))
    scheduled, missed = missed_runs(schedule, earliest, at)
    result.requeue((schedule.next_after(at) - at).total_seconds() + 0.1)
    if scheduled is None:
        return emit(running)
    if missed > 100:
        result.actions.append(
            Event(
                cj,
                "TooManyMissedTimes",
                "too many missed start times: set or decrease .spec.startingDeadlineSeconds",
                "Warning",
            )
        )
    if deadline is not None and (at - scheduled).total_seconds() > int(deadline):
        result.actions.append(
            Event(
                cj,
                "MissSchedule",
                f"Missed scheduled time to start a job: {c.fmt_time(scheduled)}",
                "Warning",
            )
        )
        return emit(running)
    wanted = job_name(name, scheduled)
    if any(c.name_of(j) == wanted for j in owned):
        status["lastScheduleTime"] = c.fmt_time(scheduled)
        return emit(running)
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy == "Forbid" and running:
        # Upstream leaves lastScheduleTime alone, so the run still happens if the active Job ends in time.
        result.requeue(5.0)
        result.actions.append(
            Event(
                cj,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
        )
        return emit(running)
    if policy == "Replace":
        for job in running:
            result.actions.append(Delete(JOBS, ns, c.name_of(job), c.uid_of(job), propagation="Background"))
            result.actions.append(Event(cj, "SuccessfulDelete", f"Deleted job {c.name_of(job)}"))
        running = []
    body = job_for(cj, scheduled)
    result.actions.append(Create(JOBS, ns, body))
    result.actions.append(Event(cj, "SuccessfulCreate", f"Created job {wanted}"))
    status["lastScheduleTime"] = c.fmt_time(scheduled)
    return emit(running)
