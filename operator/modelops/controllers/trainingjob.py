"""Decisions for TrainingJob: from the job, its pods and the rank-0 metrics to a status and actions.

Pure functions only. The kopf glue (`trainingjob_handlers`) lists the pods, scrapes the metrics, calls `plan`
and carries out what it returns: create or delete pods, write the status, post the events, register
the ModelVersion. Everything the operator decides about a training run is tested here with dicts.

Failures follow the worker contract (`modelops.api.runconfig`): exit 64/65 are permanent and fail
the job at once with the worker's reason; any other failure (crash, OOM kill, eviction, a deleted
pod) restarts every rank together, counted against `runPolicy.backoffLimit`, and the next attempt
resumes from the newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from modelops import status
from modelops.api.runconfig import PERMANENT_EXIT_CODES, TrainResult
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import trainingjob as builders
from modelops.controllers import children
from modelops.controllers.reconcile import Event

KIND = "TrainingJob"

PENDING = "Pending"
CREATED, RUNNING, RESTARTING, SUCCEEDED, FAILED, SUSPENDED = (
    "Created",
    "Running",
    "Restarting",
    "Succeeded",
    "Failed",
    "Suspended",
)
LIFECYCLE_CONDITIONS = (CREATED, RUNNING, RESTARTING, SUCCEEDED, FAILED, SUSPENDED)
TERMINAL = (SUCCEEDED, FAILED)

# Prometheus series of the worker (docs/worker.md) -> Progress fields.
_SERIES = {
    "modelops_training_step": "step",
    "modelops_training_total_steps": "totalSteps",
    "modelops_training_epoch": "epoch",
    "modelops_training_total_epochs": "totalEpochs",
    "modelops_training_loss": "loss",
    "modelops_training_samples_per_second": "samplesPerSecond",
}
_INT_FIELDS = ("step", "totalSteps", "epoch", "totalEpochs")


def decide(spec: TrainingJobSpec) -> status.Conclusion:
    """The verdict on a spec alone (used before any pod exists): accepted, pods about to be created."""
    return status.progressing("Pending", "TrainingJob accepted; creating its pods.", phase="Pending")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do for one job now. `status_patch` is a merge patch of the status (empty: write nothing)."""

    conclusion: status.Conclusion
    status_patch: dict[str, Any]
    events: list[Event]
    create_pods: bool = False
    attempt: int = 0
    delete_pods: tuple[str, ...] = ()
    register_model_version: bool = False
    result: TrainResult | None = None


@dataclasses.dataclass(frozen=True)
class PodView:
    """What matters about one training pod."""

    name: str
    rank: int
    attempt: int
    phase: str
    terminating: bool
    exit_code: int | None
    reason: str | None
    message: str | None
    unschedulable: str | None
    started: str | None


def view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    exit_code = reason = message = None
    for cs in st.get("containerStatuses") or ():
        if cs.get("name") != builders.CONTAINER:
            continue
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            reason = terminated.get("reason")
            message = terminated.get("message")
    for cs in st.get("initContainerStatuses") or ():
        # A failed init container (the checkpoint restore) is the pod's failure: its exit code says
        # whether a retry can help (65: the backup failed verification) and its message says why.
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if exit_code is None and terminated.get("exitCode") not in (None, 0):
            exit_code = terminated.get("exitCode")
            reason = terminated.get("reason")
            message = terminated.get("message")
    if st.get("phase") == "Failed" and exit_code is None:
        # Evicted or lost without a container result (reason Evicted, NodeLost...).
        reason, message = st.get("reason") or "PodFailed", st.get("message") or ""
    unschedulable = None
    for c in st.get("conditions") or ():
        if (
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ):
            unschedulable = str(c.get("message") or "no node fits the pod")
    return PodView(
        name=str(meta.get("name")),
        rank=int(labels.get(builders.LABEL_RANK, -1)),
        attempt=int(annotations.get(builders.ANNOTATION_ATTEMPT, 0)),
        phase=str(st.get("phase") or "Pending"),
        terminating=bool(meta.get("deletionTimestamp")),
        exit_code=exit_code,
        reason=reason,
        message=message,
        unschedulable=unschedulable,
        started=st.get("startTime"),
    )


def parse_result(message: str | None) -> TrainResult | None:
    """The worker's result from a termination message; None when the pod crashed before writing one."""
    if not message:
        return None
    try:
        return TrainResult.model_validate_json(message)
    except pydantic.ValidationError:
        return None


def progress(metrics: Mapping[str, float], spec: TrainingJobSpec) -> dict[str, Any]:
    """Progress fields from the worker's metrics (series name -> value)."""
    out: dict[str, Any] = {}
    for series, field in _SERIES.items():
        if series in metrics:
            value = metrics[series]
            out[field] = int(value) if field in _INT_FIELDS else round(float(value), 6)
    step, total = out.get("step"), out.get("totalSteps")
    if step is not None and total:
        out["percent"] = max(0, min(100, int(100 * step / total)))
        rate = metrics.get("modelops_training_samples_per_second")
        # samples/s is per process and one optimizer step takes batchSize x accumulation samples of it.
        hp = spec.hyperparameters
        per_step = hp.batch_size * hp.gradient_accumulation_steps
        if rate:
            out["etaSeconds"] = int((total - step) * per_step / rate)
    last = metrics.get("modelops_training_last_progress_timestamp_seconds")
    if last:
        out["lastProgressTime"] = status.format_time(datetime.datetime.fromtimestamp(last, datetime.UTC))
    return out


def _failure(pod: PodView, result: TrainResult | None) -> dict[str, Any]:
    reason = (result.reason if result else None) or pod.reason or "Error"
    message = (result.message if result else None) or pod.message or f"exited with code {pod.exit_code}"
    failure: dict[str, Any] = {"reason": reason, "message": message[:2048], "pod": pod.name}
    if pod.exit_code is not None:
        failure["exitCode"] = pod.exit_code
    return failure


def _lifecycle(
    phase: str,
    conclusion: status.Conclusion,
    conditions: Any,
    *,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """One condition per phase, True while the job is in it; Created stays True once the pods exist.

    A condition appears the first time it becomes True (so `kubectl wait --for=condition=Succeeded`
    has nothing to misread before), and turns False with a fixed reason when the phase moves on, so
    it does not churn.
    """
    result = [dict(c) for c in conditions or ()]
    for type_ in LIFECYCLE_CONDITIONS:
        previous = status.get_condition(result, type_)
        if phase == type_:
            result = status.set_condition(
                result,
                type_,
                "True",
                conclusion.reason,
                conclusion.message,
                observed_generation=generation,
                now=now,
            )
        elif type_ == CREATED and phase in (RUNNING, RESTARTING, SUCCEEDED, FAILED):
            keep = previous if previous is not None and previous.get("status") == "True" else None
            result = status.set_condition(
                result,
                CREATED,
                "True",
                str((keep or {}).get("reason") or "PodsCreated"),
                str((keep or {}).get("message") or "The job's pods were created."),
                observed_generation=generation,
                now=now,
            )
        elif previous is not None:
            result = status.set_condition(
                result,
                type_,
                "False",
                f"Not{type_}",
                f"The job is {phase}.",
                observed_generation=generation,
                now=now,
            )
    return result


def plan(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, float] | None,
    *,
    now: datetime.datetime,
    mounts: Sequence[Mapping[str, Any]] = (),
    absent: Sequence[children.Missing] = (),
    rejected: children.ChildRejected | None = None,
) -> Plan:
    """Status and actions for a job with a valid spec, from what is observed now.

    `mounts` are the kubelet's FailedMount events of the namespace, `absent` the claims the pods
    would mount that do not exist (checked before creating them), `rejected` the API server's refusal
    of a child the previous try of this plan created: each stalls the job with its reason until fixed.
    """
    meta = job.get("metadata") or {}
    name = str(meta.get("name"))
    spec = TrainingJobSpec.model_validate(job.get("spec") or {})
    current: dict[str, Any] = dict(job.get("status") or {})
    generation = meta.get("generation")
    restarts = int(current.get("restarts") or 0)
    views = sorted((view(p) for p in pods), key=lambda v: v.rank)
    live = [v for v in views if not v.terminating]
    nodes = spec.distributed.nodes
    phase_now = current.get("phase")
    desired: dict[str, Any] = {"restarts": restarts}
    for key in (
        "startTime",
        "completionTime",
        "progress",
        "metrics",
        "checkpoint",
        "failure",
        "modelVersion",
    ):
        if current.get(key) is not None:
            desired[key] = current[key]
    create = False
    delete: list[str] = []
    register = False
    result: TrainResult | None = None

    def delete_all() -> None:
        delete.extend(v.name for v in live)

    skipped_events: list[Event] = []
    if metrics:
        desired["progress"] = {**(current.get("progress") or {}), **progress(metrics, spec)}
        # A checkpoint that failed verification is never loaded; say so where users look.
        skipped = int(metrics.get("modelops_training_checkpoint_fallbacks_total") or 0)
        known = int((current.get("checkpoint") or {}).get("skippedCorrupt") or 0)
        if skipped > known:
            desired["checkpoint"] = {**(desired.get("checkpoint") or {}), "skippedCorrupt": skipped}
            skipped_events.append(
                Event(
                    "Warning",
                    "CheckpointSkipped",
                    f"{skipped - known} checkpoint(s) failed verification and were set aside (.bad-ckpt-*); "
                    "the run resumed from the newest one that verified. See the rank-0 pod's log.",
                )
            )

    if phase_now in TERMINAL:
        conclusion = _terminal_conclusion(current)
        delete.extend(_cleanup(spec, live, current, now))
        phase = str(phase_now)
    elif builders.is_suspended(spec):
        delete_all()
        phase = SUSPENDED
        # Reconciling while its pods are still going away; at rest (kstatus Current, not Ready) after.
        conclude = status.progressing if live else status.suspended
        conclusion = conclude(
            SUSPENDED,
            "runPolicy.suspend is true: the job has no pods; set it to false to resume from the "
            "latest checkpoint.",
            phase=SUSPENDED,
        )
    else:
        stale = [v for v in live if v.attempt != restarts or v.rank >= nodes or v.rank < 0]
        delete.extend(v.name for v in stale)
        current_pods = [v for v in live if v not in stale]
        rank0 = next((v for v in current_pods if v.rank == 0), None)
        permanent = next(
            (v for v in current_pods if v.phase == "Failed" and v.exit_code in PERMANENT_EXIT_CODES), None
        )
        retryable = next((v for v in current_pods if v.phase == "Failed" and v not in (permanent,)), None)
        deadline = spec.run_policy.active_deadline_seconds
        # The deadline counts from the first pods, running or not: a job that never gets scheduled
        # must time out too (as a batch/v1 Job's does).
        created = status.get_condition(current.get("conditions"), CREATED) or {}
        started = _parse_time(current.get("startTime")) or (
            _parse_time(created.get("lastTransitionTime")) if created.get("status") == "True" else None
        )
        if rank0 is not None and rank0.phase == "Succeeded":
            result = parse_result(rank0.message)
            phase, conclusion, register = SUCCEEDED, _succeeded(result), spec.output.create_model_version
            desired["completionTime"] = status.format_time(now)
            desired.pop("failure", None)
            if result is not None:
                if result.metrics is not None:
                    desired["metrics"] = result.metrics.model_dump(by_alias=True, exclude_none=True)
                if result.checkpoint is not None:
                    skipped_so_far = (desired.get("checkpoint") or {}).get("skippedCorrupt")
                    desired["checkpoint"] = {
                        **result.checkpoint.model_dump(by_alias=True, exclude_none=True),
                        "time": status.format_time(now),
                    }
                    if skipped_so_far:
                        desired["checkpoint"]["skippedCorrupt"] = skipped_so_far
                prog = dict(desired.get("progress") or {})
                if result.steps is not None:
                    prog["step"] = prog["totalSteps"] = result.steps
                if result.epochs is not None:
                    prog["epoch"] = result.epochs
                prog["percent"] = 100
                prog.pop("etaSeconds", None)
                # The last scrape may have come epochs before the end: the final loss is the result's.
                if result.train_loss is not None:
                    prog["loss"] = round(result.train_loss, 6)
                else:
                    prog.pop("loss", None)
                desired["progress"] = prog
            delete.extend(_cleanup(spec, current_pods, desired, now))
        elif permanent is not None:
            failure = _failure(permanent, parse_result(permanent.message))
            phase, conclusion = (
                FAILED,
                status.stalled(
                    failure["reason"],
                    f"Pod {permanent.name} failed permanently (exit {permanent.exit_code}): "
                    f"{_sentence(failure['message'])} Fix the spec or the data and create the job again.",
                    phase=FAILED,
                ),
            )
            desired["failure"], desired["completionTime"] = failure, status.format_time(now)
            delete.extend(_cleanup(spec, current_pods, desired, now))
        elif deadline is not None and started is not None and (now - started).total_seconds() >= deadline:
            phase, conclusion = (
                FAILED,
                status.stalled(
                    "DeadlineExceeded",
                    f"The job ran longer than runPolicy.activeDeadlineSeconds ({deadline}s); "
                    "raise it or make the run shorter.",
                    phase=FAILED,
                ),
            )
            desired["failure"] = {"reason": "DeadlineExceeded", "message": conclusion.message}
            desired["completionTime"] = status.format_time(now)
            delete.extend(v.name for v in current_pods)
        elif retryable is not None or (
            phase_now in (CREATED, RUNNING) and len(current_pods) < nodes and not delete
        ):
            if retryable is not None:
                failure = _failure(retryable, parse_result(retryable.message))
            else:
                missing = sorted(set(range(nodes)) - {v.rank for v in current_pods})
                failure = {
                    "reason": "PodDeleted",
                    "message": f"pod {builders.pod_name(name, missing[0])} "
                    "disappeared (deleted or its node was lost)",
                    "pod": builders.pod_name(name, missing[0]),
                }
            desired["failure"] = failure
            if restarts >= spec.run_policy.backoff_limit:
                phase, conclusion = (
                    FAILED,
                    status.stalled(
                        "BackoffLimitExceeded",
                        f"The job failed {restarts + 1} time(s), more than "
                        f"runPolicy.backoffLimit ({spec.run_policy.backoff_limit}); last: {failure['reason']}: "
                        f"{failure['message']}",
                        phase=FAILED,
                    ),
                )
                desired["completionTime"] = status.format_time(now)
                delete.extend(v.name for v in current_pods)
            else:
                desired["restarts"] = restarts + 1
                phase, conclusion = (
                    RESTARTING,
                    status.progressing(
                        RESTARTING,
                        f"Restarting all pods (restart {restarts + 1} of at most "
                        f"{spec.run_policy.backoff_limit}) after {failure['reason']} of {failure.get('pod')}: "
                        f"{failure['message']}",
                        phase=RESTARTING,
                    ),
                )
                delete.extend(v.name for v in current_pods)
        else:
            terminating = any(v.terminating for v in views)
            if len(current_pods) < nodes and not terminating:
                create = True
            unschedulable = next((v for v in current_pods if v.unschedulable), None)
            mine = {v.name for v in current_pods}
            problem = children.first_problem(
                [p for p in pods if (p.get("metadata") or {}).get("name") in mine], mounts
            )
            waiting = CREATED if current_pods else (RESTARTING if phase_now == RESTARTING else PENDING)
            blocked = (
                children.rejected_conclusion(rejected, phase=waiting) if rejected is not None else None
            ) or (children.missing_conclusion(absent, phase=waiting) if create else None)
            # A rank may finish a moment before rank 0: the job runs until rank 0 says how it ended.
            if blocked is not None:
                # Nothing more is created until a human fixes it; the next look tries again.
                create = False
                phase, conclusion = blocked.phase, blocked
            elif (
                len(current_pods) == nodes
                and all(v.phase in ("Running", "Succeeded") for v in current_pods)
                and any(v.phase == "Running" for v in current_pods)
            ):
                phase = RUNNING
                desired.setdefault(
                    "startTime", min(v.started or status.format_time(now) for v in current_pods)
                )
                pct = (desired.get("progress") or {}).get("percent")
                conclusion = status.progressing(
                    RUNNING,
                    f"{nodes} pod(s) training" + (f", {pct}% done." if pct is not None else "."),
                    phase=RUNNING,
                )
            elif problem is not None:
                phase = CREATED if phase_now != RESTARTING else RESTARTING
                conclusion = problem.conclusion(phase=phase)
            elif unschedulable is not None:
                phase = CREATED if phase_now != RESTARTING else RESTARTING
                conclusion = status.progressing(
                    "Unschedulable",
                    f"Pod {unschedulable.name} cannot be scheduled: {unschedulable.unschedulable}",
                    phase=phase,
                )
            elif phase_now == RESTARTING and (terminating or create):
                phase = RESTARTING
                conclusion = status.progressing(
                    RESTARTING, str(_condition_message(current, RESTARTING)), phase=RESTARTING
                )
            else:
                phase = CREATED
                conclusion = status.progressing(
                    CREATED, f"{nodes} pod(s) created, waiting for them to run.", phase=CREATED
                )

    desired["phase"] = phase
    summary = status.summarize(
        conclusion, generation=generation, conditions=current.get("conditions"), now=now
    )
    desired["conditions"] = _lifecycle(
        phase, conclusion, summary["conditions"], generation=generation, now=now
    )
    if generation is not None:
        desired["observedGeneration"] = generation
    events = list(skipped_events)
    if (phase_now, _ready_reason(current)) != (phase, conclusion.reason):
        kind = (
            "Warning"
            if conclusion.state is status.State.STALLED
            or phase == RESTARTING
            or conclusion.reason == "Unschedulable"
            else "Normal"
        )
        events.append(Event(kind, conclusion.reason, conclusion.message))
    patch = status.status_changes(current, desired)
    for key in ("failure",):
        if key in current and key not in desired:
            patch[key] = None
    return Plan(
        conclusion,
        patch,
        events,
        create_pods=create,
        attempt=int(desired["restarts"]),
        delete_pods=tuple(dict.fromkeys(delete)),
        register_model_version=register,
        result=result,
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _ready_reason(current: Mapping[str, Any]) -> str | None:
    c = status.get_condition(current.get("conditions"), status.READY)
    return None if c is None else str(c.get("reason"))


def _condition_message(current: Mapping[str, Any], type_: str) -> str:
    c = status.get_condition(current.get("conditions"), type_) or {}
    return str(c.get("message") or "Restarting all pods.")


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _succeeded(result: TrainResult | None) -> status.Conclusion:
    message = result.message if result and result.message else "Training finished."
    return status.ready(SUCCEEDED, message, phase=SUCCEEDED)


def _terminal_conclusion(current: Mapping[str, Any]) -> status.Conclusion:
    ready = status.get_condition(current.get("conditions"), status.READY) or {}
    reason = str(ready.get("reason") or current.get("phase"))
    message = str(ready.get("message") or current.get("phase"))
    if current.get("phase") == SUCCEEDED:
        return status.ready(reason, message, phase=SUCCEEDED)
    return status.stalled(reason, message, phase=FAILED)


def _cleanup(
    spec: TrainingJobSpec, pods: Sequence[PodView], st: Mapping[str, Any], now: datetime.datetime
) -> list[str]:
    """Pods to delete once the job has finished: cleanPodPolicy at once, everything after the TTL."""
    policy = spec.run_policy
    ttl = policy.ttl_seconds_after_finished
    finished = _parse_time(st.get("completionTime"))
    if ttl is not None and finished is not None and (now - finished).total_seconds() >= ttl:
        return [v.name for v in pods]
    if policy.clean_pod_policy == "All":
        return [v.name for v in pods]
    if policy.clean_pod_policy == "Running":
        return [v.name for v in pods if v.phase in ("Running", "Pending")]
    return []
