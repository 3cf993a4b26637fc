"""Decisions for TuningJob: from the search, its trial TrainingJobs and their latest epoch to actions.

Pure functions only. The kopf glue (`tuningjob_handlers`) lists the trials, scrapes the running ones'
per-epoch values, calls `plan` and carries out what it returns: create trials, stop (suspend) pruned
ones, delete finished ones by policy, register the best, write the status.

The study is rebuilt on every plan from what the cluster holds, into an in-memory Optuna study:
the trials recorded in the TuningJob's status, and the trial TrainingJobs themselves (each carries
its number, parameters and the sampler's bookkeeping in an annotation). Finished trials are added as
COMPLETE/PRUNED/FAIL FrozenTrials, running ones as RUNNING so samplers see what is being tried, and
then Optuna's ask proposes the next trial and its pruner judges the running ones. Nothing lives
only in the operator's memory, so a restart resumes the search exactly where the cluster says it
is: trial numbers come from the records, names are `<tuningjob>-trial-<n>` and creation is
create-if-absent, so no trial runs twice and none is lost. bench/tuning_bench.py measures what
the rebuild costs as a search grows.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from modelops import status
from modelops.api.tuningjob import (
    INTERMEDIATE_SERIES,
    LEADERBOARD_SIZE,
    MAX_INTERMEDIATE_VALUES,
    Parameter,
    TuningJobSpec,
)
from modelops.builders import tuningjob as builders
from modelops.controllers.reconcile import Event

KIND = "TuningJob"
RUNNING, SUCCEEDED, FAILED, PENDING = "Running", "Succeeded", "Failed", "Pending"
TERMINAL = (SUCCEEDED, FAILED)
LIFECYCLE_CONDITIONS = (SUCCEEDED, FAILED)

# Record states (status.trials[].state) and how the study sees them.
T_RUNNING, T_COMPLETE, T_PRUNED, T_FAILED, T_STOPPED = "Running", "Complete", "Pruned", "Failed", "Stopped"
_OPTUNA_STATE = {
    T_RUNNING: TrialState.RUNNING,
    T_COMPLETE: TrialState.COMPLETE,
    T_PRUNED: TrialState.PRUNED,
    T_FAILED: TrialState.FAIL,
    T_STOPPED: TrialState.FAIL,
}
FINISHED = (T_COMPLETE, T_PRUNED, T_FAILED, T_STOPPED)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def decide(spec: TuningJobSpec) -> status.Conclusion:
    """The verdict on a spec alone: a parameter that cannot be placed stalls the search before any trial."""
    try:
        builders.check_paths(spec)
    except builders.ParameterError as error:
        return status.stalled(
            "InvalidParameterPath",
            f"{error}. Fix spec.searchSpace or spec.trialTemplate and apply the TuningJob again.",
        )
    return status.progressing(PENDING, "TuningJob accepted; creating its first trials.", phase=PENDING)


# -- what the cluster holds ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrialView:
    """What matters about one trial TrainingJob."""

    number: int
    name: str
    parameters: dict[str, Any]
    system_attrs: dict[str, Any]
    phase: str | None
    metrics: dict[str, float]
    pruned_at: int | None
    stopped: str | None
    failure: str | None
    created: str | None
    completed: str | None


def view(job: Mapping[str, Any]) -> TrialView | None:
    """The trial as its TrainingJob shows it; None for a TrainingJob that is no trial of ours."""
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    try:
        record = json.loads(annotations[builders.ANNOTATION_TRIAL])
        number = int(record["number"])
    except (KeyError, ValueError, TypeError):
        return None
    st = job.get("status") or {}
    pruned = annotations.get(builders.ANNOTATION_PRUNED)
    failure = st.get("failure") or {}
    return TrialView(
        number=number,
        name=str(meta.get("name")),
        parameters=dict(record.get("parameters") or {}),
        system_attrs=dict(record.get("systemAttrs") or {}),
        phase=st.get("phase"),
        metrics={k: float(v) for k, v in (st.get("metrics") or {}).items() if isinstance(v, int | float)},
        pruned_at=int(pruned) if pruned is not None and str(pruned).isdigit() else None,
        stopped=annotations.get(builders.ANNOTATION_STOPPED),
        failure=(f"{failure.get('reason')}: {failure.get('message')}" if failure.get("reason") else None),
        created=meta.get("creationTimestamp"),
        completed=st.get("completionTime"),
    )


def epoch_value(series: Mapping[str, float] | None, metric: str) -> tuple[int, float] | None:
    """(completed epochs, latest validation value) from a trial's rank-0 metrics, or None.

    The worker sets the validation gauges at the end of each epoch; completed epochs follow from the
    optimizer steps (steps x epochs / total steps), which move only with training.
    """
    if not series or metric not in INTERMEDIATE_SERIES:
        return None
    value = series.get(INTERMEDIATE_SERIES[metric])
    step, total = series.get("modelops_training_step"), series.get("modelops_training_total_steps")
    epochs = series.get("modelops_training_total_epochs")
    if value is None or not step or not total or not epochs or math.isnan(value):
        return None
    done = int(step * epochs // total)
    return (done, float(value)) if done >= 1 else None


# -- the study ------------------------------------------------------------------------------------


def distribution(p: Parameter) -> BaseDistribution:
    if p.type == "categorical":
        return CategoricalDistribution(list(p.choices or []))
    assert p.low is not None and p.high is not None  # the CEL rules and the model require both
    if p.type == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(p.low, p.high, log=p.log, step=p.step)


def grid(spec: TuningJobSpec) -> dict[str, list[Any]]:
    """Every value of each parameter, for the grid algorithm."""
    out: dict[str, list[Any]] = {}
    for p in spec.search_space:
        if p.type == "categorical":
            out[p.name] = list(p.choices or [])
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            out[p.name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            assert p.low is not None and p.high is not None and p.step is not None
            count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
            out[p.name] = [round(p.low + i * p.step, 12) for i in range(count)]
    return out


def trial_budget(spec: TuningJobSpec) -> int:
    """How many trials the search creates in all: maxTrials, or fewer when a grid has fewer points."""
    if spec.algorithm.name != "grid":
        return spec.max_trials
    return min(spec.max_trials, math.prod(len(values) for values in grid(spec).values()))


def base_seed(spec: TuningJobSpec, uid: str) -> int:
    """The search's seed: the spec's, else one derived from the object (stable across restarts)."""
    return spec.algorithm.seed if spec.algorithm.seed is not None else zlib.crc32(uid.encode())


def sampler(spec: TuningJobSpec, seed: int, number: int) -> optuna.samplers.BaseSampler:
    """A sampler for proposing trial `number`.

    The study is rebuilt for every plan, so a sampler seeded once would draw the same random numbers
    again; seeding from (seed, number) makes each trial's draw its own, and reproducible.
    """
    s = (seed * 1_000_003 + number) % (2**31 - 1)
    algorithm = spec.algorithm
    if algorithm.name == "random":
        return optuna.samplers.RandomSampler(seed=s)
    if algorithm.name == "grid":
        # The grid's order is shuffled by the seed and trial n takes grid point n: one seed for all.
        return optuna.samplers.GridSampler(grid(spec), seed=seed % (2**31 - 1))
    if algorithm.name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=s, n_startup_trials=algorithm.startup_trials, warn_independent_sampling=False
        )
    return optuna.samplers.TPESampler(
        seed=s, n_startup_trials=algorithm.startup_trials, constant_liar=True, multivariate=True
    )


def pruner(spec: TuningJobSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    if p.name == "successiveHalving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource,
            max_resource=p.max_resource if p.max_resource is not None else "auto",
            reduction_factor=p.reduction_factor,
        )
    return optuna.pruners.NopPruner()


def _frozen(
    spec: TuningJobSpec, record: Mapping[str, Any], distributions: dict[str, BaseDistribution]
) -> FrozenTrial:
    state = _OPTUNA_STATE[str(record["state"])]
    params = {k: v for k, v in (record.get("parameters") or {}).items() if k in distributions}
    intermediate = {int(s): float(v) for s, v in record.get("intermediate") or ()}
    if state in (TrialState.COMPLETE, TrialState.PRUNED) and intermediate:
        # Epochs are observed by scraping, so a finished trial's values are sparse; pruners compare
        # at equal epochs, so each epoch between two observations holds the value seen before it.
        held = intermediate[min(intermediate)]
        for epoch in range(min(intermediate), max(intermediate) + 1):
            held = intermediate.setdefault(epoch, held)
    value = record.get("value") if state is TrialState.COMPLETE else None
    try:
        return create_trial(
            state=state,
            params=params,
            distributions={k: distributions[k] for k in params},
            value=value,
            intermediate_values=intermediate,
            system_attrs=dict(record.get("systemAttrs") or {}),
        )
    except ValueError:
        # Parameters the space no longer contains (cannot happen while the spec is immutable): the
        # trial still holds its number, as a failure the samplers ignore.
        return create_trial(state=TrialState.FAIL)


def build_study(
    spec: TuningJobSpec, records: Sequence[Mapping[str, Any]], *, study_name: str
) -> optuna.Study:
    """An in-memory study holding every record, trial numbers equal to record numbers."""
    study = optuna.create_study(
        study_name=study_name,
        direction=spec.objective.direction,
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=pruner(spec),
    )
    distributions = {p.name: distribution(p) for p in spec.search_space}
    for record in records:
        study.add_trial(_frozen(spec, record, distributions))
    return study


# -- records --------------------------------------------------------------------------------------


def objective_value(
    spec: TuningJobSpec, trial: TrialView, intermediate: Sequence[Sequence[float]]
) -> float | None:
    """The score of a trial that succeeded, by spec.objective.source (None: the metric is missing)."""
    objective = spec.objective
    final = trial.metrics.get(objective.metric)
    values = [float(v) for _, v in intermediate]
    if objective.source == "lastIntermediate" and values:
        return values[-1]
    if objective.source == "bestIntermediate" and values:
        return max(values) if objective.direction == "maximize" else min(values)
    return final


def _merge_intermediate(
    previous: Sequence[Sequence[float]], new: tuple[int, float] | None
) -> list[list[float]]:
    values = {int(s): float(v) for s, v in previous}
    if new is not None:
        values[new[0]] = new[1]
    steps = sorted(values)[-MAX_INTERMEDIATE_VALUES:]
    return [[s, values[s]] for s in steps]


def _record_from(
    spec: TuningJobSpec,
    trial: TrialView,
    previous: Mapping[str, Any] | None,
    observed: tuple[int, float] | None,
    now: str,
) -> dict[str, Any]:
    previous = previous or {}
    intermediate = _merge_intermediate(previous.get("intermediate") or (), observed)
    record: dict[str, Any] = {
        "number": trial.number,
        "name": trial.name,
        "parameters": trial.parameters,
        "intermediate": intermediate,
        "startTime": previous.get("startTime") or trial.created or now,
    }
    system_attrs = {**trial.system_attrs, **(previous.get("systemAttrs") or {})}
    if compact(system_attrs):
        record["systemAttrs"] = compact(system_attrs)
    record["_systemAttrs"] = system_attrs  # for the study only; not written
    if previous.get("state") in FINISHED:
        # A result once recorded is never rewritten.
        return {**previous, "name": trial.name, "_systemAttrs": system_attrs}
    if trial.phase == "Succeeded":
        value = objective_value(spec, trial, intermediate)
        if value is None or math.isnan(value):
            record.update(
                state=T_FAILED,
                reason=f"ObjectiveMissing: the trial finished without metric {spec.objective.metric}",
            )
        else:
            record.update(state=T_COMPLETE, value=value)
    elif trial.pruned_at is not None:
        record.update(state=T_PRUNED, reason=f"Pruned at epoch {trial.pruned_at}")
    elif trial.phase == "Failed":
        record.update(state=T_FAILED, reason=trial.failure or "the trial's TrainingJob failed")
    elif trial.stopped is not None:
        record.update(state=T_STOPPED, reason=f"Stopped: {trial.stopped}")
    else:
        record["state"] = T_RUNNING
    if record["state"] != T_RUNNING:
        record["completionTime"] = trial.completed or now
    return record


def compact(system_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler's and pruner's bookkeeping worth keeping in status: not CMA-ES's serialised
    optimizer (kilobytes, in the trial's annotation instead) nor the grid's space (the spec's)."""
    return {k: v for k, v in system_attrs.items() if not k.startswith("cma:") and k != "search_space"}


def merge_records(
    spec: TuningJobSpec,
    current: Sequence[Mapping[str, Any]],
    trials: Sequence[TrialView],
    observed: Mapping[str, tuple[int, float]],
    now: str,
) -> list[dict[str, Any]]:
    """The study's trials, by number: the status's records brought up to date from the cluster.

    A number with a record but no TrainingJob (deleted by cleanup, or by someone else while it ran)
    keeps its record; one that was still running is recorded as failed. A TrainingJob without a
    record (the operator stopped between creating it and writing the status) is adopted.
    """
    by_number = {int(r["number"]): dict(r) for r in current}
    jobs = {t.number: t for t in trials}
    out: list[dict[str, Any]] = []
    for number in range(max([*by_number, *jobs], default=-1) + 1):
        previous, trial = by_number.get(number), jobs.get(number)
        if trial is not None:
            out.append(_record_from(spec, trial, previous, observed.get(trial.name), now))
        elif previous is not None:
            record = dict(previous)
            if record.get("state") == T_RUNNING:
                record.update(
                    state=T_FAILED,
                    reason="TrialDeleted: the trial's TrainingJob was deleted before it finished",
                    completionTime=now,
                )
            out.append(record)
        else:
            out.append({"number": number, "name": "", "state": T_FAILED, "reason": "Lost", "parameters": {}})
    return out


def _study_records(spec: TuningJobSpec, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    space = grid(spec) if spec.algorithm.name == "grid" else None
    for r in records:
        attrs = dict(r.get("_systemAttrs") or r.get("systemAttrs") or {})
        if space is not None and "grid_id" in attrs:
            attrs.setdefault("search_space", space)
        out.append({**r, "systemAttrs": attrs})
    return out


def _public(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_") and v is not None}


def ranked(spec: TuningJobSpec, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Complete trials, best first (ties: the earlier trial)."""
    sign = -1.0 if spec.objective.direction == "maximize" else 1.0
    done = [r for r in records if r.get("state") == T_COMPLETE and r.get("value") is not None]
    return sorted(done, key=lambda r: (sign * float(r["value"]), int(r["number"])))


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": record["number"],
        "name": record["name"],
        "value": record["value"],
        "parameters": record.get("parameters") or {},
    }


# -- the plan -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NewTrial:
    number: int
    name: str
    parameters: dict[str, Any]
    system_attrs: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Registration:
    """The best trial, to be registered as a ModelVersion."""

    trial: str
    number: int
    parameters: dict[str, Any]
    value: float


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do now; `status_patch` is a merge patch of the status (empty: write nothing)."""

    conclusion: status.Conclusion
    status_patch: dict[str, Any]
    events: list[Event]
    create: list[NewTrial] = dataclasses.field(default_factory=list)
    prune: dict[str, int] = dataclasses.field(default_factory=dict)  # trial -> epoch
    stop: dict[str, str] = dataclasses.field(default_factory=dict)  # trial -> reason
    delete: list[str] = dataclasses.field(default_factory=list)
    register: Registration | None = None


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _verdict(
    spec: TuningJobSpec,
    records: Sequence[Mapping[str, Any]],
    *,
    started: datetime.datetime | None,
    now: datetime.datetime,
) -> status.Conclusion | None:
    """How the search ends now, or None while it goes on."""
    counts = _counts(records)
    best = next(iter(ranked(spec, records)), None)
    metric = spec.objective.metric
    if counts["failed"] > spec.max_failed_trials:
        return status.stalled(
            "MaxFailedTrialsReached",
            f"{counts['failed']} trials failed, more than spec.maxFailedTrials ({spec.max_failed_trials}); "
            "see status.trials[].reason and the failed trials' TrainingJobs, fix the template or the "
            "search space, and create the TuningJob again.",
        )
    goal = spec.objective.goal
    if best is not None and goal is not None:
        value = float(best["value"])
        if (value >= goal) if spec.objective.direction == "maximize" else (value <= goal):
            return status.ready(
                "GoalReached",
                f"Trial {best['number']} reached {metric} {value:.6g} (spec.objective.goal {goal}).",
                phase=SUCCEEDED,
            )
    deadline = spec.active_deadline_seconds
    if deadline is not None and started is not None and (now - started).total_seconds() >= deadline:
        message = f"The search ran for spec.activeDeadlineSeconds ({deadline}s)"
        if best is None:
            return status.stalled(
                "BudgetExhausted", f"{message} and no trial finished; raise the budget or shorten the trials."
            )
        return status.ready(
            "BudgetExhausted",
            f"{message}; best {metric} {float(best['value']):.6g} from trial {best['number']}.",
            phase=SUCCEEDED,
        )
    budget = trial_budget(spec)
    if len(records) >= budget and counts["running"] == 0:
        reason = "SearchSpaceExhausted" if budget < spec.max_trials else "MaxTrialsReached"
        if best is None:
            return status.stalled(
                "NoTrialSucceeded",
                f"All {len(records)} trials were pruned or failed; see status.trials[].reason.",
            )
        return status.ready(
            reason,
            f"{len(records)} trials done; best {metric} {float(best['value']):.6g} from trial "
            f"{best['number']} ({best['name']}).",
            phase=SUCCEEDED,
        )
    return None


def _counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    states = [r.get("state") for r in records]
    return {
        "running": states.count(T_RUNNING),
        "succeeded": states.count(T_COMPLETE),
        "pruned": states.count(T_PRUNED),
        "failed": states.count(T_FAILED),
    }


def plan(
    job: Mapping[str, Any],
    trial_jobs: Sequence[Mapping[str, Any]],
    observed: Mapping[str, tuple[int, float]],
    *,
    now: datetime.datetime,
) -> Plan:
    """Status and actions for a search with a valid spec.

    `trial_jobs` are the TrainingJobs labelled as this search's trials; `observed` maps a running
    trial's name to its latest (completed epochs, validation value).
    """
    meta = job.get("metadata") or {}
    spec = TuningJobSpec.model_validate(job.get("spec") or {})
    current: dict[str, Any] = dict(job.get("status") or {})
    generation = meta.get("generation")
    stamp = status.format_time(now)
    views = [v for v in (view(t) for t in trial_jobs) if v is not None]
    records = merge_records(spec, current.get("trials") or [], views, observed, stamp)
    existing = {v.name for v in views}
    events: list[Event] = []
    for before, after in zip(current.get("trials") or [], records, strict=False):
        if before.get("state") == T_RUNNING and after.get("state") in (T_FAILED,):
            events.append(
                Event("Warning", "TrialFailed", f"Trial {after['name']} failed: {after.get('reason')}")
            )

    create: list[NewTrial] = []
    prune: dict[str, int] = {}
    stop: dict[str, str] = {}
    phase_now = current.get("phase")
    started = _parse_time(current.get("startTime"))
    verdict: status.Conclusion | None
    if phase_now in TERMINAL:
        verdict = _terminal_conclusion(current)
    else:
        study = build_study(
            spec, _study_records(spec, records), study_name=str(meta.get("uid") or meta.get("name"))
        )
        prune = _prune(spec, study, records, observed, existing)
        for record in records:
            if record["name"] in prune:
                record.update(
                    state=T_PRUNED, reason=f"Pruned at epoch {prune[record['name']]}", completionTime=stamp
                )
                events.append(
                    Event(
                        "Normal",
                        "TrialPruned",
                        f"Trial {record['name']} pruned at epoch {prune[record['name']]}.",
                    )
                )
        verdict = _verdict(spec, records, started=started or now, now=now)
        if verdict is None:
            create = _ask(spec, study, records, meta, now=now)
            records.extend(
                {
                    "number": t.number,
                    "name": t.name,
                    "state": T_RUNNING,
                    "parameters": t.parameters,
                    "intermediate": [],
                    "startTime": stamp,
                    **({"systemAttrs": compact(t.system_attrs)} if compact(t.system_attrs) else {}),
                }
                for t in create
            )
        else:
            for record in records:
                if record["state"] == T_RUNNING:
                    stop[record["name"]] = verdict.reason
                    record.update(state=T_STOPPED, reason=f"Stopped: {verdict.reason}", completionTime=stamp)
    counts = _counts(records)
    best = ranked(spec, records)
    desired: dict[str, Any] = {
        "trialsCreated": len(records),
        "trialsRunning": counts["running"],
        "trialsSucceeded": counts["succeeded"],
        "trialsPruned": counts["pruned"],
        "trialsFailed": counts["failed"],
        "leaderboard": [summary(r) for r in best[:LEADERBOARD_SIZE]],
        "trials": [_public(r) for r in records],
    }
    for key in ("startTime", "completionTime", "modelVersion"):
        if current.get(key) is not None:
            desired[key] = current[key]
    if records and "startTime" not in desired:
        desired["startTime"] = stamp
    if best:
        desired["bestTrial"] = summary(best[0])
        desired["bestValue"] = best[0]["value"]
    if verdict is None:
        phase = RUNNING if records else PENDING
        conclusion = status.progressing(
            phase, _progress_message(spec, counts, len(records), best), phase=phase
        )
    else:
        phase, conclusion = (SUCCEEDED if verdict.state is status.State.READY else FAILED), verdict
        desired.setdefault("completionTime", stamp)
    desired["phase"] = phase
    summary_ = status.summarize(
        conclusion, generation=generation, conditions=current.get("conditions"), now=now
    )
    desired["conditions"] = _lifecycle(
        phase, conclusion, summary_["conditions"], generation=generation, now=now
    )
    if generation is not None:
        desired["observedGeneration"] = generation
    if (phase_now, _ready_reason(current)) != (phase, conclusion.reason) and phase != RUNNING:
        kind = "Warning" if conclusion.state is status.State.STALLED else "Normal"
        events.append(Event(kind, conclusion.reason, conclusion.message))
    register = None
    if phase == SUCCEEDED and spec.registration is not None and best and not current.get("modelVersion"):
        top = best[0]
        register = Registration(
            str(top["name"]), int(top["number"]), dict(top.get("parameters") or {}), float(top["value"])
        )
    delete = cleanup(spec, current.get("trials") or [])
    if delete:
        gone = set(delete)
        desired["trials"] = [{**r, "deleted": True} if r["name"] in gone else r for r in desired["trials"]]
    return Plan(
        conclusion,
        status.status_changes(current, desired),
        events,
        create=create,
        prune=prune,
        stop=stop,
        delete=delete,
        register=register,
    )


def reject(status_patch: Mapping[str, Any], number: int, reason: str) -> dict[str, Any]:
    """The status patch with trial `number` recorded failed: the API server refused to create it.

    The number stays used (it was asked of the study); the refusal counts against maxFailedTrials,
    so a template the cluster refuses ends the search with its reason instead of a retry loop.
    """
    patch = dict(status_patch)
    records = [dict(r) for r in patch.get("trials") or ()]
    for record in records:
        if record.get("number") == number:
            record.update(state=T_FAILED, reason=f"TrialRejected: {reason}"[:1024])
    counts = _counts(records)
    patch.update(
        trials=records,
        trialsRunning=counts["running"],
        trialsFailed=counts["failed"],
    )
    return patch


def _progress_message(
    spec: TuningJobSpec, counts: Mapping[str, int], created: int, best: Sequence[Mapping[str, Any]]
) -> str:
    message = (
        f"{counts['running']} trial(s) running, {created} of {trial_budget(spec)} created "
        f"({counts['succeeded']} done, {counts['pruned']} pruned, {counts['failed']} failed)"
    )
    if best:
        message += f"; best {spec.objective.metric} {float(best[0]['value']):.6g} (trial {best[0]['number']})"
    return message + "."


def _prune(
    spec: TuningJobSpec,
    study: optuna.Study,
    records: Sequence[dict[str, Any]],
    observed: Mapping[str, tuple[int, float]],
    existing: set[str],
) -> dict[str, int]:
    """Running trials the pruner stops now (trial -> epoch); records keep the pruner's bookkeeping."""
    if spec.pruner.name == "none":
        return {}
    out: dict[str, int] = {}
    trials = study.get_trials(deepcopy=False)
    for record in records:
        if record["state"] != T_RUNNING or record["name"] not in observed or record["name"] not in existing:
            continue
        frozen = trials[int(record["number"])]
        if not frozen.intermediate_values:
            continue
        should = study.pruner.prune(study, frozen)
        created_attrs = dict(record.get("_systemAttrs") or {})
        after = study._storage.get_trial(frozen._trial_id).system_attrs
        added = {k: v for k, v in after.items() if created_attrs.get(k) != v}
        if compact(added):
            record["systemAttrs"] = {**(record.get("systemAttrs") or {}), **compact(added)}
        if should:
            out[str(record["name"])] = int(frozen.last_step or 0)
    return out


def _ask(
    spec: TuningJobSpec,
    study: optuna.Study,
    records: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    *,
    now: datetime.datetime,
) -> list[NewTrial]:
    """New trials to fill the free parallel slots, each proposed by the sampler seeing all others."""
    running = sum(1 for r in records if r["state"] == T_RUNNING)
    free = min(spec.parallel_trials - running, trial_budget(spec) - len(records))
    distributions = {p.name: distribution(p) for p in spec.search_space}
    seed = base_seed(spec, str(meta.get("uid") or meta.get("name")))
    out: list[NewTrial] = []
    for _ in range(max(0, free)):
        number = len(study.get_trials(deepcopy=False))
        study.sampler = sampler(spec, seed, number)
        trial = study.ask(distributions)
        attrs = study._storage.get_trial(trial._trial_id).system_attrs
        out.append(
            NewTrial(number, builders.trial_name(str(meta["name"]), number), dict(trial.params), dict(attrs))
        )
    return out


def cleanup(spec: TuningJobSpec, recorded: Sequence[Mapping[str, Any]]) -> list[str]:
    """Finished trials to delete by spec.cleanupPolicy, judged from the status already written.

    Only a result already in the status is deleted, so a restart between the delete and the status
    write cannot lose it; the best trial stays while its model is to be registered.
    """
    if spec.cleanup_policy == "keepAll":
        return []
    keep: set[str] = set()
    best = ranked(spec, recorded)
    if spec.cleanup_policy == "keepBest":
        keep = {str(r["name"]) for r in best[: spec.keep_best_trials]}
    elif spec.registration is not None and best:
        keep = {str(best[0]["name"])}
    return [
        str(r["name"])
        for r in recorded
        if r.get("state") in FINISHED and not r.get("deleted") and r.get("name") not in keep
    ]


def _ready_reason(current: Mapping[str, Any]) -> str | None:
    c = status.get_condition(current.get("conditions"), status.READY)
    return None if c is None else str(c.get("reason"))


def _terminal_conclusion(current: Mapping[str, Any]) -> status.Conclusion:
    ready = status.get_condition(current.get("conditions"), status.READY) or {}
    reason = str(ready.get("reason") or current.get("phase"))
    message = str(ready.get("message") or current.get("phase"))
    if current.get("phase") == SUCCEEDED:
        return status.ready(reason, message, phase=SUCCEEDED)
    return status.stalled(reason, message, phase=FAILED)


def _lifecycle(
    phase: str,
    conclusion: status.Conclusion,
    conditions: Any,
    *,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """Succeeded or Failed, True once the search ended that way (absent before)."""
    result = [dict(c) for c in conditions or ()]
    if phase in LIFECYCLE_CONDITIONS:
        result = status.set_condition(
            result,
            phase,
            "True",
            conclusion.reason,
            conclusion.message,
            observed_generation=generation,
            now=now,
        )
    return result
