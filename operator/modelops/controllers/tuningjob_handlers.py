"""The kopf registrations of the TuningJob controller, and the API calls that carry out its plans.

Decisions are `tuningjob`'s (pure functions); here they are read from and written to the cluster:
the TuningJob is read fresh, its trials are listed by label, each running trial's rank-0 pod is
scraped for its latest validation value, and then the plan is applied in an order that keeps a
restart safe: trials are created (create-if-absent, deterministic names) and pruned ones suspended
before the status records them, finished ones deleted only once the status holds their result.

It runs on the TuningJob's own changes and on a timer, and also as soon as one of its trials
finishes (a watch on TrainingJobs labelled as trials), so the next trial does not wait for the timer.
One search is planned by one thread at a time.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes

from modelops import API_VERSION, GROUP, VERSION, status
from modelops.api.tuningjob import TuningJobSpec
from modelops.builders import trainingjob as tj_builders
from modelops.builders import tuningjob as builders
from modelops.controllers import reconcile, registration
from modelops.controllers import tuningjob as tuning
from modelops.controllers.cluster import Cluster, resource_path
from modelops.controllers.metrics import OperatorMetrics

# How often a running search looks at its trials when nothing told it to.
SYNC_INTERVAL = 2.0
TRIAL_FINISHED = ("Succeeded", "Failed")
# A create the API server refuses for good (invalid, forbidden, e.g. a quota): the trial fails.
REFUSED = (400, 403, 422)
# A trial that finished this recently (seconds) triggers a plan of its search.
RECENT = 30.0
# How long after a search ended the timer still looks for finished trials to delete.
CLEANUP_WINDOW = 60.0

_locks_guard = threading.Lock()
_locks: dict[tuple[str, str], threading.Lock] = {}


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _path(namespace: str, name: str | None = None) -> str:
    return resource_path(API_VERSION, "tuningjobs", namespace, name)


def _trials_path(namespace: str, name: str | None = None) -> str:
    return resource_path(API_VERSION, "trainingjobs", namespace, name)


def has_work(body: Mapping[str, Any]) -> bool:
    """Whether the timer must look at this search now (a finished one costs no API call)."""
    st = body.get("status") or {}
    if st.get("phase") not in tuning.TERMINAL:
        return True
    spec = body.get("spec") or {}
    if spec.get("registration") is not None and not st.get("modelVersion") and st.get("phase") == "Succeeded":
        return True
    if spec.get("cleanupPolicy", "keepAll") == "keepAll":
        return False
    # Cleanup reads the status written when the search ended, so it happens a tick or two later.
    ended = tuning._parse_time(st.get("completionTime"))
    return ended is None or (datetime.datetime.now(datetime.UTC) - ended).total_seconds() < CLEANUP_WINDOW


def _owned(job: Mapping[str, Any], trial: Mapping[str, Any] | None) -> bool:
    uid = job["metadata"]["uid"]
    return trial is not None and any(
        o.get("uid") == uid for o in (trial.get("metadata") or {}).get("ownerReferences") or ()
    )


def fetch_trials(cluster: Cluster, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The trials whose state can still change: the running ones, and any created after the last one
    the status records (the operator stopped before recording it). A GET each, so a plan costs the
    same API calls after 500 trials as after 5; finished results are the status's own."""
    namespace, name = str(job["metadata"]["namespace"]), str(job["metadata"]["name"])
    records = (job.get("status") or {}).get("trials") or []
    out = []
    for record in records:
        if record.get("state") == tuning.T_RUNNING:
            trial = cluster.get(_trials_path(namespace, str(record.get("name"))))
            if _owned(job, trial):
                out.append(trial)
    number = len(records)
    while True:
        trial = cluster.get(_trials_path(namespace, builders.trial_name(name, number)))
        if trial is None or not _owned(job, trial):
            return [t for t in out if t is not None]
        out.append(trial)
        number += 1


def observe(
    cluster: Cluster, namespace: str, trials: list[dict[str, Any]], metric: str
) -> dict[str, tuple[int, float]]:
    """Each running trial's latest (completed epochs, validation value), scraped from its rank-0 pod."""
    out: dict[str, tuple[int, float]] = {}
    for job in trials:
        if (job.get("status") or {}).get("phase") != "Running":
            continue
        name = str(job["metadata"]["name"])
        rank0 = next(
            (
                p
                for p in cluster.list_pods(namespace, name)
                if (p.get("metadata") or {}).get("labels", {}).get(tj_builders.LABEL_RANK) == "0"
                and (p.get("status") or {}).get("phase") == "Running"
            ),
            None,
        )
        ip = ((rank0 or {}).get("status") or {}).get("podIP")
        value = tuning.epoch_value(cluster.scrape(ip) if ip else None, metric)
        if value is not None:
            out[name] = value
    return out


def next_version(existing: list[dict[str, Any]], model: str, trial: str) -> tuple[str | None, int]:
    """(name of this trial's ModelVersion if it exists, else None; the next free version number)."""
    for mv in existing:
        spec = mv.get("spec") or {}
        if (
            spec.get("model") == model
            and ((spec.get("source") or {}).get("trainingJob") or {}).get("name") == trial
        ):
            return str(mv["metadata"]["name"]), 0
    taken = {str(mv["metadata"]["name"]) for mv in existing}
    numbers = [
        int((mv.get("spec") or {}).get("version") or (mv.get("status") or {}).get("version") or 0)
        for mv in existing
        if (mv.get("spec") or {}).get("model") == model
    ]
    version = max(numbers, default=0) + 1
    while f"{model}-{version}" in taken:
        version += 1
    return None, version


def _register(
    cluster: Cluster, job: Mapping[str, Any], spec: TuningJobSpec, best: tuning.Registration
) -> str:
    namespace = str(job["metadata"]["namespace"])
    assert spec.registration is not None
    model = spec.registration.model_name or str(job["metadata"]["name"])
    existing = cluster.list_items(resource_path(API_VERSION, "modelversions", namespace))
    found, version = next_version(existing, model, best.trial)
    if found is not None:
        return found
    manifest = builders.model_version(
        job,
        spec,
        best_trial=best.trial,
        number=best.number,
        parameters=best.parameters,
        value=best.value,
        version=version,
    )
    cluster.create_at(resource_path(API_VERSION, "modelversions", namespace), manifest)
    return str(manifest["metadata"]["name"])


def sync(cluster: Cluster, metrics: OperatorMetrics, kind: str, namespace: str, name: str, post: Any) -> None:
    """Plan one search from fresh reads and carry the plan out."""
    with _lock(namespace, name), metrics.timed(kind):
        job = cluster.get(_path(namespace, name))
        if job is None or (job.get("metadata") or {}).get("deletionTimestamp"):
            return
        logic = reconcile.KindLogic(kind=kind, spec_model=TuningJobSpec, decide=tuning.decide)
        now = datetime.datetime.now(datetime.UTC)
        if reconcile.conclude(logic, job.get("spec")).state is status.State.STALLED:
            outcome = reconcile.reconcile(logic, job, now=now)
            if outcome.status_patch:
                cluster.status_patch(_path(namespace, name), outcome.status_patch)
            if outcome.event is not None:
                post(job, type=outcome.event.type, reason=outcome.event.reason, message=outcome.event.message)
            metrics.reconciled(kind, outcome.result)
            return
        spec = TuningJobSpec.model_validate(job.get("spec") or {})
        trials = fetch_trials(cluster, job)
        observed = observe(cluster, namespace, trials, spec.objective.metric)
        plan = tuning.plan(job, trials, observed, now=now)
        patch = dict(plan.status_patch)
        for new in plan.create:
            manifest = builders.trial(job, spec, new.number, new.parameters, new.system_attrs)
            try:
                cluster.create_at(_trials_path(namespace), manifest)
            except kubernetes.client.ApiException as error:
                if error.status not in REFUSED:
                    raise
                reason = _refusal(error)
                patch = tuning.reject(patch, new.number, reason)
                post(job, type="Warning", reason="TrialRejected", message=f"Trial {new.name}: {reason}")
        for trial, epoch in plan.prune.items():
            _stop(cluster, namespace, trial, builders.stop_patch(builders.ANNOTATION_PRUNED, str(epoch)))
        for trial, reason in plan.stop.items():
            _stop(cluster, namespace, trial, builders.stop_patch(builders.ANNOTATION_STOPPED, reason))
        for trial in plan.delete:
            cluster.delete(_trials_path(namespace, trial))
        if plan.register is not None:
            mv_name = _register(cluster, job, spec, plan.register)
            patch["modelVersion"] = mv_name
            post(
                job,
                type="Normal",
                reason="ModelVersionCreated",
                message=f"Registered the best trial {plan.register.trial} as ModelVersion {mv_name}.",
            )
        if patch:
            cluster.status_patch(_path(namespace, name), patch)
        for event in plan.events:
            post(job, type=event.type, reason=event.reason, message=event.message)
        metrics.reconciled(kind, plan.conclusion.state.value.lower())


def _refusal(error: kubernetes.client.ApiException) -> str:
    """The API server's message of a refused create (a CEL rule, a quota), without the request body."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or error.reason or f"HTTP {error.status}")


def _stop(cluster: Cluster, namespace: str, trial: str, patch: Mapping[str, Any]) -> None:
    try:
        cluster.patch(_trials_path(namespace, trial), patch)
    except kubernetes.client.ApiException as error:
        if error.status != 404:
            raise


def _guarded(run: Any, metrics: OperatorMetrics, kind: str, logger: kopf.Logger, retry: int) -> None:
    try:
        run()
    except Exception as error:
        delay = registration.retry_delay(retry)
        metrics.failed(kind, type(error).__name__)
        logger.exception(f"TuningJob sync failed ({type(error).__name__}); retry in {delay:.0f}s")
        raise kopf.TemporaryError(f"unexpected {type(error).__name__}: {error}", delay=delay) from error


def register(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    kind = logic.kind

    def run(*, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int) -> None:
        namespace, name = str(body.metadata.namespace), str(body.metadata.name)
        _guarded(
            lambda: sync(cluster, metrics, kind, namespace, name, kopf.event), metrics, kind, logger, retry
        )

    registration.reconcile_and_sync(registry, plural, run, interval=SYNC_INTERVAL, has_work=has_work)

    # A trial that finishes frees a slot: plan its search at once rather than at the next tick.
    @kopf.on.event(
        GROUP,
        VERSION,
        "trainingjobs",
        registry=registry,
        id="tuning-trial-finished",
        labels={builders.LABEL_TUNINGJOB: kopf.PRESENT},
    )
    def _trial_event(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
        phase = (body.get("status") or {}).get("phase")
        if kwargs.get("type") == "DELETED" or phase not in TRIAL_FINISHED:
            return
        # Only a trial that has just finished: the watch's first listing (every finished trial of
        # every search, after a restart) must not plan each search once per trial.
        finished = tuning._parse_time((body.get("status") or {}).get("completionTime"))
        now = datetime.datetime.now(datetime.UTC)
        if finished is None or (now - finished).total_seconds() > RECENT:
            return
        owner = str((body.metadata.get("labels") or {}).get(builders.LABEL_TUNINGJOB))
        namespace = str(body.metadata.namespace)
        try:
            sync(cluster, metrics, kind, namespace, owner, kopf.event)
        except Exception as error:  # the timer retries; a watch handler must not stop on it
            metrics.failed(kind, type(error).__name__)
            logger.warning(
                f"Planning TuningJob {owner} after trial {body.metadata.name} finished failed: {error}"
            )
