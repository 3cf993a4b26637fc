"""Job controller: run pods to completion, with retries, deadlines, suspension and cleanup.

Follows pkg/controller/job upstream: `parallelism` pods at a time until `completions` succeed (or, with
no `completions`, until one succeeds and the rest finish), `completionMode: Indexed` with one pod per
index (hostname `<job>-<index>`, `JOB_COMPLETION_INDEX`), failed pods re-created after an exponential
backoff (10 s doubling, capped at 6 min; the base is a flag so tests can shorten it) until more than
`backoffLimit` failed (condition Failed, reason BackoffLimitExceeded), `activeDeadlineSeconds`
(DeadlineExceeded), `podFailurePolicy` rules (FailJob/Ignore/Count on exit codes and pod conditions),
`suspend` (Suspended condition, active pods deleted) and `ttlSecondsAfterFinished` (the TTL-after-
finished controller's job). Terminal pods are kept, so counts come from them; the previous status is
a floor, so deleting finished pods by hand does not make a Job forget them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import JOBS, PODS, Create, Delete, Event, Result, Status
from .replicasets import CREATE_BACKOFF, claim, deletion_rank, pod_from_template

Obj = dict[str, Any]

INDEX = "batch.kubernetes.io/job-completion-index"
MAX_BACKOFF = 360.0
JOB_CONTROLLER = "kubernetes.io/job-controller"


def is_finished(job: Obj) -> str | None:
    """ "Complete" or "Failed" when the Job has finished, else None."""
    for ctype in ("Complete", "Failed"):
        cond = c.get_condition(job.get("status") or {}, ctype)
        if cond and cond.get("status") == "True":
            return ctype
    return None


def finish_time(job: Obj) -> dt.datetime | None:
    status = job.get("status") or {}
    for ctype in ("Complete", "Failed"):
        cond = c.get_condition(status, ctype)
        if cond and cond.get("status") == "True":
            return c.parse_time(status.get("completionTime")) or c.parse_time(cond.get("lastTransitionTime"))
    return None


def pod_index(pod: Obj) -> int | None:
    value = c.annotations_of(pod).get(INDEX, c.labels_of(pod).get(INDEX))
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def pod_finished_at(pod: Obj) -> dt.datetime:
    latest: dt.datetime | None = None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        t = c.parse_time(term.get("finishedAt"))
        if t and (latest is None or t > latest):
            latest = t
    if latest is not None:
        return latest
    cond = c.pod_condition(pod, "Ready")
    return c.parse_time((cond or {}).get("lastTransitionTime")) or c.creation_time(pod)


def _exit_codes(pod: Obj, container: str | None) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        term = (cs.get("state") or {}).get("terminated")
        if term is None or (container and cs.get("name") != container):
            continue
        out.append((str(cs.get("name")), int(term.get("exitCode") or 0)))
    return out


def failure_policy_action(job: Obj, pod: Obj) -> tuple[str, str] | None:
    """The podFailurePolicy rule a failed pod matches: (action, message), or None for the default."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    for i, rule in enumerate(rules):
        on_codes = rule.get("onExitCodes")
        if on_codes:
            values = set(on_codes.get("values") or [])
            op = on_codes.get("operator", "In")
            for name, code in _exit_codes(pod, on_codes.get("containerName")):
                hit = code in values if op == "In" else (code != 0 and code not in values)
                if hit:
                    return str(rule.get("action")), (
                        f"Container {name} for pod {c.namespace_of(pod)}/{c.name_of(pod)} failed with exit code "
                        f"{code} matching {rule.get('action')} rule at index {i}"
                    )
        for pattern in rule.get("onPodConditions") or []:
            cond = c.pod_condition(pod, str(pattern.get("type")))
            if cond and cond.get("status") == pattern.get("status", "True"):
                return str(rule.get("action")), (
                    f"Pod {c.namespace_of(pod)}/{c.name_of(pod)} has condition {pattern.get('type')} matching "
                    f"{rule.get('action')} rule at index {i}"
                )
    return None


def format_indexes(indexes: set[int]) -> str:
    """completedIndexes format: "0-2,5"."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def parse_indexes(text: str | None) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def job_pod(job: Obj, index: int | None) -> Obj:
    spec = job.get("spec") or {}
    template = json.loads(json.dumps(spec.get("template") or {}))
    tmeta = template.setdefault("metadata", {}) or {}
    template["metadata"] = tmeta
    labels = tmeta.setdefault("labels", {})
    name, uid = c.name_of(job), c.uid_of(job)
    labels.setdefault("batch.kubernetes.io/controller-uid", uid)
    labels.setdefault("batch.kubernetes.io/job-name", name)
    labels.setdefault("controller-uid", uid)
    labels.setdefault("job-name", name)
    prefix = f"{name}-"
    if index is not None:
        labels[INDEX] = str(index)
        tmeta.setdefault("annotations", {})[INDEX] = str(index)
        pspec = template.setdefault("spec", {})
        pspec["hostname"] = f"{name}-{index}"
        for container in [*(pspec.get("initContainers") or []), *(pspec.get("containers") or [])]:
            env = [e for e in container.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
            env.insert(0, {"name": "JOB_COMPLETION_INDEX", "value": str(index)})
            container["env"] = env
        prefix = f"{name}-{index}-"
    owner = c.owner_reference(job, "batch/v1", "Job")
    return pod_from_template(template, c.namespace_of(job), prefix, owner)


def backoff_delay(failures: int, base: float) -> float:
    if failures <= 0:
        return 0.0
    return float(min(base * 2.0 ** (failures - 1), MAX_BACKOFF))


def reconcile(
    job: Obj,
    pods: Sequence[Obj],
    at: dt.datetime,
    backoff_base: float = 10.0,
    failure: tuple[str, float] | None = None,
) -> Result:
    """One sync of a Job; `failure` is (message, seconds ago) of its last rejected pod create."""
    result = Result()
    spec = job.get("spec") or {}
    if c.is_deleting(job) or spec.get("managedBy", JOB_CONTROLLER) != JOB_CONTROLLER:
        # Another controller (say, a batch queue) owns this Job, as upstream's managedBy allows.
        return result
    ns, name = c.namespace_of(job), c.name_of(job)
    old = job.get("status") or {}

    if spec.get("selector"):
        owned, claim_actions = claim(job, spec["selector"], pods, "batch/v1", "Job", PODS)
        result.actions.extend(claim_actions)
    else:
        owned = [p for p in pods if c.owned_by(p, job)]
    active = [p for p in owned if c.pod_is_active(p)]
    finished = is_finished(job)

    if finished:
        for pod in active:
            result.actions.append(Delete(PODS, ns, c.name_of(pod), c.uid_of(pod)))
        ttl = spec.get("ttlSecondsAfterFinished")
        done_at = finish_time(job)
        if ttl is not None and done_at is not None:
            left = float(ttl) - (at - done_at).total_seconds()
            if left <= 0:
                result.actions.append(Delete(JOBS, ns, name, c.uid_of(job), propagation="Background"))
            else:
                result.requeue(left)
        return result

    indexed = spec.get("completionMode") == "Indexed"
    parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
    completions = spec.get("completions")
    if completions is None and spec.get("parallelism") is None:
        completions = 1
    backoff_limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
    restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "Never")

    succeeded_pods = [p for p in owned if c.pod_phase(p) == "Succeeded"]
    # A pod that fails because it is being deleted (suspend, lower parallelism, a user's delete) is
    # not a failure of the workload: it does not count toward backoffLimit.
    failed_pods = [p for p in owned if c.pod_phase(p) == "Failed" and not c.is_deleting(p)]
    fail_job: str | None = None
    counted_failures: list[Obj] = []
    for pod in failed_pods:
        decision = failure_policy_action(job, pod)
        if decision is None or decision[0] in ("Count", "FailIndex"):
            counted_failures.append(pod)
        elif decision[0] == "FailJob" and fail_job is None:
            fail_job = decision[1]
            counted_failures.append(pod)
    succeeded = max(len(succeeded_pods), int(old.get("succeeded") or 0))
    failed = max(len(counted_failures), int(old.get("failed") or 0))
    completed_indexes: set[int] = set()
    if indexed:
        completed_indexes = parse_indexes(old.get("completedIndexes"))
        completed_indexes.update(i for i in map(pod_index, succeeded_pods) if i is not None)
        completed_indexes = {i for i in completed_indexes if completions is None or i < int(completions)}
        succeeded = max(len(completed_indexes), int(old.get("succeeded") or 0))

    conditions: list[Obj] = list(old.get("conditions") or [])
    status: Obj = {"conditions": conditions}
    for key in ("startTime", "completionTime"):
        if old.get(key):
            status[key] = old[key]
    suspended = bool(spec.get("suspend"))

    def emit(active_count: int) -> Result:
        status.update(
            active=active_count,
            ready=sum(1 for p in active if c.pod_is_ready(p) and c.uid_of(p) not in deleted),
            succeeded=succeeded,
            failed=failed,
        )
        if indexed:
            status["completedIndexes"] = format_indexes(completed_indexes)
        if not status["conditions"]:
            del status["conditions"]
        for key in ("active", "succeeded", "failed"):
            if not status[key] and key not in old:
                del status[key]
        result.actions.append(Status(JOBS, ns, name, status))
        return result

    deleted: set[str] = set()

    def delete_all_active() -> None:
        for pod in active:
            deleted.add(c.uid_of(pod))
            result.actions.append(Delete(PODS, ns, c.name_of(pod), c.uid_of(pod)))

    if suspended:
        delete_all_active()
        cond = c.get_condition(old, "Suspended")
        if not cond or cond.get("status") != "True":
            status["conditions"] = c.set_condition(
                conditions, "Suspended", "True", "JobSuspended", "Job suspended", at
            )
            result.actions.append(Event(job, "Suspended", "Job suspended"))
        status.pop("startTime", None)
        return emit(0)
    cond = c.get_condition(old, "Suspended")
    if cond and cond.get("status") == "True":
        status["conditions"] = conditions = c.set_condition(
            conditions, "Suspended", "False", "JobResumed", "Job resumed", at
        )
        result.actions.append(Event(job, "Resumed", "Job resumed"))
    start = c.parse_time(status.get("startTime"))
    if start is None:
        start = at
        status["startTime"] = c.fmt_time(at)

    def fail(reason: str, message: str) -> Result:
        delete_all_active()
        status["conditions"] = c.set_condition(status["conditions"], "Failed", "True", reason, message, at)
        result.actions.append(Event(job, reason, message, "Warning"))
        if spec.get("ttlSecondsAfterFinished") is not None:
            result.requeue(float(spec["ttlSecondsAfterFinished"]))
        return emit(0)

    if fail_job is not None:
        return fail("PodFailurePolicy", fail_job)
    restarts = sum(c.pod_restart_count(p) for p in active) if restart_policy == "OnFailure" else 0
    if failed + restarts > backoff_limit:
        return fail("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None:
        left = float(deadline) - (at - start).total_seconds()
        if left <= 0:
            return fail("DeadlineExceeded", "Job was active longer than specified deadline")
        result.requeue(left)

    complete = succeeded >= int(completions) if completions is not None else (succeeded > 0 and not active)
    if complete:
        delete_all_active()
        status["completionTime"] = c.fmt_time(at)
        status["conditions"] = c.set_condition(
            status["conditions"],
            "Complete",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            at,
        )
        result.actions.append(Event(job, "Completed", "Job completed"))
        if spec.get("ttlSecondsAfterFinished") is not None:
            result.requeue(float(spec["ttlSecondsAfterFinished"]))
        return emit(0)

    # Exponential backoff after failures, counted from the most recent failure.
    wait = 0.0
    if counted_failures:
        last = max(pod_finished_at(p) for p in counted_failures)
        wait = backoff_delay(failed, backoff_base) - (at - last).total_seconds()
    if failure is not None and failure[1] < CREATE_BACKOFF:
        # The API server refused our last pod: upstream records FailedCreate and retries with backoff.
        wait = max(wait, CREATE_BACKOFF - failure[1])
        result.actions.append(Event(job, "FailedCreate", f"Error creating: {failure[0]}", "Warning"))

    keep = list(active)
    if indexed:
        total = int(completions or 0)
        by_index: dict[int, list[Obj]] = {}
        for pod in active:
            idx = pod_index(pod)
            if idx is None or idx >= total or idx in completed_indexes:
                deleted.add(c.uid_of(pod))
                result.actions.append(Delete(PODS, ns, c.name_of(pod), c.uid_of(pod)))
                continue
            by_index.setdefault(idx, []).append(pod)
        keep = []
        for pods_at in by_index.values():
            ranked = sorted(pods_at, key=deletion_rank, reverse=True)
            keep.append(ranked[0])
            for extra in ranked[1:]:
                deleted.add(c.uid_of(extra))
                result.actions.append(Delete(PODS, ns, c.name_of(extra), c.uid_of(extra)))
        missing = [i for i in range(total) if i not in completed_indexes and i not in by_index]
        room = max(parallelism - len(keep), 0)
        if missing and room:
            if wait > 0:
                result.requeue(wait)
            else:
                for idx in missing[:room]:
                    result.actions.append(Create(PODS, ns, job_pod(job, idx)))
                    keep.append({})
        return emit(len(keep))

    if completions is None:
        want = len(active) if succeeded > 0 else parallelism
    else:
        want = min(int(completions) - succeeded, parallelism)
    want = max(want, 0)
    if len(active) > want:
        for pod in sorted(active, key=deletion_rank)[: len(active) - want]:
            deleted.add(c.uid_of(pod))
            result.actions.append(Delete(PODS, ns, c.name_of(pod), c.uid_of(pod)))
        return emit(want)
    if len(active) < want:
        if wait > 0:
            result.requeue(wait)
        else:
            for _ in range(want - len(active)):
                result.actions.append(Create(PODS, ns, job_pod(job, None)))
            result.actions.append(Event(job, "SuccessfulCreate", f"Created {want - len(active)} pod(s)"))
            return emit(want)
    return emit(len(keep))
