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
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from modelops import status
from modelops.api.runconfig import MAX_EXTRA_METRICS, PERMANENT_EXIT_CODES, TrainResult
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import trainingjob as builders
from modelops.controllers import children
from modelops.controllers.reconcile import Event
from modelops.controllers.trainingjob_history import update as update_history

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
    # A fine-tune's (llm_train): tokens per second and perplexity, and its own ETA (see `progress`).
    "modelops_training_tokens_per_second": "tokensPerSecond",
    "modelops_training_perplexity": "perplexity",
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
    gated: bool = False


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
    gated = False
    for c in st.get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            gated = True
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
        gated=gated
        or (bool((pod.get("spec") or {}).get("schedulingGates")) and st.get("phase") == "Pending"),
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
            if field in ("totalSteps", "totalEpochs") and not value:
                continue  # a gauge not set yet (the worker has not planned its run): no total, not 0
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
        eta = metrics.get("modelops_training_eta_seconds")
        if eta is not None and math.isfinite(eta) and eta >= 0:
            out["etaSeconds"] = int(eta)  # the worker's own estimate (a fine-tune's), when it gives one
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


@dataclasses.dataclass
class _Work:
    """What `plan` works out step by step: the observed job, the desired status, the actions so far."""

    name: str
    spec: TrainingJobSpec
    current: dict[str, Any]
    now: datetime.datetime
    views: list[PodView]
    desired: dict[str, Any]
    pods: Sequence[Mapping[str, Any]] = ()
    delete: list[str] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    create: bool = False
    register: bool = False
    result: TrainResult | None = None

    @property
    def live(self) -> list[PodView]:
        return [v for v in self.views if not v.terminating]

    @property
    def restarts(self) -> int:
        return int(self.current.get("restarts") or 0)

    @property
    def phase_now(self) -> Any:
        return self.current.get("phase")

    @property
    def nodes(self) -> int:
        return self.spec.distributed.nodes


# Status fields carried over from one look to the next unless a step changes them.
_KEPT = ("startTime", "completionTime", "progress", "metrics", "checkpoint", "failure", "modelVersion",
         "hyperparameters", "datasetDigest", "baseModel")  # fmt: skip
Outcome = tuple[str, status.Conclusion]


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
    current: dict[str, Any] = dict(job.get("status") or {})
    work = _Work(
        name=str(meta.get("name")),
        spec=TrainingJobSpec.model_validate(job.get("spec") or {}),
        current=current,
        now=now,
        views=sorted((view(p) for p in pods), key=lambda v: v.rank),
        desired={"restarts": int(current.get("restarts") or 0)}
        | {k: current[k] for k in _KEPT if current.get(k) is not None},
        pods=pods,
    )
    if metrics:
        _observe_metrics(work, metrics)
    if work.phase_now in TERMINAL:
        work.delete.extend(_cleanup(work.spec, work.live, current, now))
        phase, conclusion = str(work.phase_now), _terminal_conclusion(current)
    elif builders.is_suspended(work.spec):
        phase, conclusion = _suspend(work)
    else:
        phase, conclusion = _active(work, mounts, absent, rejected)
    work.desired.update(update_history(current, {**work.desired, "phase": phase}, metrics, now=now))
    return _conclude(work, phase, conclusion, meta.get("generation"))


def _observe_metrics(work: _Work, metrics: Mapping[str, float]) -> None:
    """Progress and the newest checkpoint from rank 0's gauges, and checkpoints set aside as corrupt."""
    desired = work.desired
    desired["progress"] = {**(work.current.get("progress") or {}), **progress(metrics, work.spec)}
    # The newest checkpoint as training goes, not only after success.
    ckpt_step = metrics.get("modelops_training_checkpoint_step")
    known_ckpt = desired.get("checkpoint") or {}
    if ckpt_step and int(ckpt_step) != known_ckpt.get("step"):
        stamp = metrics.get("modelops_training_checkpoint_timestamp_seconds")
        when = datetime.datetime.fromtimestamp(stamp, datetime.UTC) if stamp else work.now
        desired["checkpoint"] = {**known_ckpt, "step": int(ckpt_step), "time": status.format_time(when)}
    # A checkpoint that failed verification is never loaded; say so where users look.
    skipped = int(metrics.get("modelops_training_checkpoint_fallbacks_total") or 0)
    known = int((work.current.get("checkpoint") or {}).get("skippedCorrupt") or 0)
    if skipped > known:
        desired["checkpoint"] = {**(desired.get("checkpoint") or {}), "skippedCorrupt": skipped}
        work.events.append(
            Event(
                "Warning",
                "CheckpointSkipped",
                f"{skipped - known} checkpoint(s) failed verification and were set aside (.bad-ckpt-*); "
                "the run resumed from the newest one that verified. See the rank-0 pod's log.",
            )
        )


def _suspend(work: _Work) -> Outcome:
    live = work.live
    work.delete.extend(v.name for v in live)
    # Reconciling while its pods are still going away; at rest (kstatus Current, not Ready) after.
    conclude = status.progressing if live else status.suspended
    return SUSPENDED, conclude(
        SUSPENDED,
        "runPolicy.suspend is true: the job has no pods; set it to false to resume from the latest "
        "checkpoint.",
        phase=SUSPENDED,
    )


def _active(
    work: _Work,
    mounts: Sequence[Mapping[str, Any]],
    absent: Sequence[children.Missing],
    rejected: children.ChildRejected | None,
) -> Outcome:
    """A job that is neither finished nor suspended: success, failure, restart, or waiting for pods."""
    stale = [v for v in work.live if v.attempt != work.restarts or v.rank >= work.nodes or v.rank < 0]
    work.delete.extend(v.name for v in stale)
    current_pods = [v for v in work.live if v not in stale]
    rank0 = next((v for v in current_pods if v.rank == 0), None)
    permanent = next(
        (v for v in current_pods if v.phase == "Failed" and v.exit_code in PERMANENT_EXIT_CODES), None
    )
    retryable = next((v for v in current_pods if v.phase == "Failed" and v not in (permanent,)), None)
    if rank0 is not None and rank0.phase == "Succeeded":
        return _succeed(work, rank0, current_pods)
    if permanent is not None:
        return _fail_permanently(work, permanent, current_pods)
    if _past_deadline(work):
        return _deadline_exceeded(work, current_pods)
    if retryable is not None or (
        work.phase_now in (CREATED, RUNNING) and len(current_pods) < work.nodes and not work.delete
    ):
        return _restart(work, retryable, current_pods)
    return _wait_for_pods(work, current_pods, mounts, absent, rejected)


def _succeed(work: _Work, rank0: PodView, current_pods: list[PodView]) -> Outcome:
    """Rank 0 finished: the result's metrics, checkpoint and final progress, and the ModelVersion."""
    desired, result = work.desired, parse_result(rank0.message)
    work.result, work.register = result, work.spec.output.create_model_version
    desired["completionTime"] = status.format_time(work.now)
    desired.pop("failure", None)
    if result is not None:
        _record_result(work, result)
    work.delete.extend(_cleanup(work.spec, current_pods, desired, work.now))
    return SUCCEEDED, _succeeded(result)


def _record_result(work: _Work, result: TrainResult) -> None:
    desired = work.desired
    if result.metrics is not None:
        desired["metrics"] = result.metrics.model_dump(by_alias=True, exclude_none=True)
        if result.metrics.ignored:
            work.events.append(
                Event(
                    "Warning",
                    "MetricsIgnored",
                    f"Result metrics left out: {', '.join(result.metrics.ignored)}. A metric needs a name "
                    "like a Prometheus series ([a-zA-Z_][a-zA-Z0-9_]*, up to 63 characters) and a finite "
                    f"number, and at most {MAX_EXTRA_METRICS} extra ones.",
                )
            )
    if result.hyperparameters:
        desired["hyperparameters"] = result.hyperparameters
    # A fine-tune's lineage, which its ModelVersion records (status.lineage).
    if result.dataset_digest and result.base_model is not None:
        desired["datasetDigest"] = result.dataset_digest
        desired["baseModel"] = result.base_model.model_dump(by_alias=True, exclude_none=True)
    if result.checkpoint is not None:
        skipped_so_far = (desired.get("checkpoint") or {}).get("skippedCorrupt")
        desired["checkpoint"] = {
            **result.checkpoint.model_dump(by_alias=True, exclude_none=True),
            "time": status.format_time(work.now),
        }
        if skipped_so_far:
            desired["checkpoint"]["skippedCorrupt"] = skipped_so_far
    prog = dict(desired.get("progress") or {})
    if result.steps is not None:
        prog["step"] = prog["totalSteps"] = result.steps
    if result.epochs is not None:
        prog["epoch"] = result.epochs
        # A finished run did all its epochs; the last scrape may have come before the total was set.
        prog["totalEpochs"] = max(int(prog.get("totalEpochs") or 0), result.epochs)
    prog["percent"] = 100
    prog.pop("etaSeconds", None)
    # The last scrape may have come epochs before the end: the final loss is the result's.
    if result.train_loss is not None:
        prog["loss"] = round(result.train_loss, 6)
    else:
        prog.pop("loss", None)
    desired["progress"] = prog


def _fail_permanently(work: _Work, pod: PodView, current_pods: list[PodView]) -> Outcome:
    failure = _failure(pod, parse_result(pod.message))
    conclusion = status.stalled(
        failure["reason"],
        f"Pod {pod.name} failed permanently (exit {pod.exit_code}): {_sentence(failure['message'])} "
        "Fix the spec or the data and create the job again.",
        phase=FAILED,
    )
    work.desired["failure"], work.desired["completionTime"] = failure, status.format_time(work.now)
    work.delete.extend(_cleanup(work.spec, current_pods, work.desired, work.now))
    return FAILED, conclusion


def _past_deadline(work: _Work) -> bool:
    """`activeDeadlineSeconds` counts from the first pods, running or not: a job that never gets
    scheduled must time out too (as a batch/v1 Job's does)."""
    deadline = work.spec.run_policy.active_deadline_seconds
    created = status.get_condition(work.current.get("conditions"), CREATED) or {}
    started = _parse_time(work.current.get("startTime")) or (
        _parse_time(created.get("lastTransitionTime")) if created.get("status") == "True" else None
    )
    return deadline is not None and started is not None and (work.now - started).total_seconds() >= deadline


def _deadline_exceeded(work: _Work, current_pods: list[PodView]) -> Outcome:
    deadline = work.spec.run_policy.active_deadline_seconds
    conclusion = status.stalled(
        "DeadlineExceeded",
        f"The job ran longer than runPolicy.activeDeadlineSeconds ({deadline}s); raise it or make the run "
        "shorter.",
        phase=FAILED,
    )
    work.desired["failure"] = {"reason": "DeadlineExceeded", "message": conclusion.message}
    work.desired["completionTime"] = status.format_time(work.now)
    work.delete.extend(v.name for v in current_pods)
    return FAILED, conclusion


def _restart(work: _Work, retryable: PodView | None, current_pods: list[PodView]) -> Outcome:
    """A retryable failure or a vanished pod: every pod again, or Failed past the backoff limit."""
    if retryable is not None:
        failure = _failure(retryable, parse_result(retryable.message))
    else:
        missing = builders.pod_name(work.name, min(set(range(work.nodes)) - {v.rank for v in current_pods}))
        failure = {
            "reason": "PodDeleted",
            "message": f"pod {missing} disappeared (deleted or its node was lost)",
            "pod": missing,
        }
    work.desired["failure"] = failure
    work.delete.extend(v.name for v in current_pods)
    limit = work.spec.run_policy.backoff_limit
    if work.restarts >= limit:
        work.desired["completionTime"] = status.format_time(work.now)
        return FAILED, status.stalled(
            "BackoffLimitExceeded",
            f"The job failed {work.restarts + 1} time(s), more than runPolicy.backoffLimit ({limit}); "
            f"last: {failure['reason']}: {failure['message']}",
            phase=FAILED,
        )
    work.desired["restarts"] = work.restarts + 1
    return RESTARTING, status.progressing(
        RESTARTING,
        f"Restarting all pods (restart {work.restarts + 1} of at most {limit}) after {failure['reason']} "
        f"of {failure.get('pod')}: {failure['message']}",
        phase=RESTARTING,
    )


def _wait_for_pods(
    work: _Work,
    current_pods: list[PodView],
    mounts: Sequence[Mapping[str, Any]],
    absent: Sequence[children.Missing],
    rejected: children.ChildRejected | None,
) -> Outcome:
    """Pods to create, starting or running; or why they cannot (a human's fix, Kueue, the scheduler)."""
    nodes, phase_now = work.nodes, work.phase_now
    terminating = any(v.terminating for v in work.views)
    work.create = len(current_pods) < nodes and not terminating
    waiting = CREATED if current_pods else (RESTARTING if phase_now == RESTARTING else PENDING)
    blocked = (children.rejected_conclusion(rejected, phase=waiting) if rejected is not None else None) or (
        children.missing_conclusion(absent, phase=waiting) if work.create else None
    )
    if blocked is not None:
        # Nothing more is created until a human fixes it; the next look tries again.
        work.create = False
        return blocked.phase, blocked
    # A rank may finish a moment before rank 0: the job runs until rank 0 says how it ended.
    if (
        len(current_pods) == nodes
        and all(v.phase in ("Running", "Succeeded") for v in current_pods)
        and any(v.phase == "Running" for v in current_pods)
    ):
        work.desired.setdefault(
            "startTime", min(v.started or status.format_time(work.now) for v in current_pods)
        )
        pct = (work.desired.get("progress") or {}).get("percent")
        message = f"{nodes} pod(s) training" + (f", {pct}% done." if pct is not None else ".")
        return RUNNING, status.progressing(RUNNING, message, phase=RUNNING)
    phase = RESTARTING if phase_now == RESTARTING else CREATED
    mine = {v.name for v in current_pods}
    problem = children.first_problem(
        [p for p in work.pods if (p.get("metadata") or {}).get("name") in mine], mounts
    )
    unschedulable = next((v for v in current_pods if v.unschedulable), None)
    if problem is not None:
        return phase, problem.conclusion(phase=phase)
    if work.spec.queue_name and any(v.gated for v in current_pods):
        return phase, status.progressing(
            "Queued",
            f"Waiting for Kueue to admit the job's {nodes} pod(s) as one group from LocalQueue "
            f"{work.spec.queue_name} (`kubectl get workloads` shows why it waits).",
            phase=phase,
        )
    if unschedulable is not None:
        return phase, status.progressing(
            "Unschedulable",
            f"Pod {unschedulable.name} cannot be scheduled: {unschedulable.unschedulable}",
            phase=phase,
        )
    if phase_now == RESTARTING and (terminating or work.create):
        return RESTARTING, status.progressing(
            RESTARTING, str(_condition_message(work.current, RESTARTING)), phase=RESTARTING
        )
    return CREATED, status.progressing(
        CREATED, f"{nodes} pod(s) created, waiting for them to run.", phase=CREATED
    )


def _conclude(work: _Work, phase: str, conclusion: status.Conclusion, generation: Any) -> Plan:
    """The status patch (phase, conditions, observedGeneration) and an event for a transition."""
    current, desired = work.current, work.desired
    desired["phase"] = phase
    summary = status.summarize(
        conclusion, generation=generation, conditions=current.get("conditions"), now=work.now
    )
    desired["conditions"] = _lifecycle(
        phase, conclusion, summary["conditions"], generation=generation, now=work.now
    )
    if generation is not None:
        desired["observedGeneration"] = generation
    events = list(work.events)
    if (work.phase_now, _ready_reason(current)) != (phase, conclusion.reason):
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
        create_pods=work.create,
        attempt=int(desired["restarts"]),
        delete_pods=tuple(dict.fromkeys(work.delete)),
        register_model_version=work.register,
        result=work.result,
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
