"""The kopf registrations, and the little glue between kopf and the pure logic they delegate to.

Deciding happens in `reconcile` and the per-kind modules; here a decision is only applied (status
into kopf's patch, an Event, metrics) and an unexpected error is turned into a kopf retry. Everything is registered on a registry passed in (not kopf's global one), so importing this module
has no side effects and a test can build an operator of its own.
"""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import kopf

from modelops import API_VERSION, GROUP, VERSION, status
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import trainingjob as tj_builders
from modelops.controllers import (
    alerting_handlers,
    backup_handlers,
    inferenceservice,
    inferenceservice_handlers,
    login,
    modelversion,
    modelversion_handlers,
    reconcile,
    registration,
    trainingjob,
)
from modelops.controllers import settings as operator_settings
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics

LOGIN_RETRY_DELAY = 5.0
# Longest wait between retries of an object whose reconcile keeps failing unexpectedly.
MAX_RETRY_DELAY = 300.0


def retry_delay(retry: int) -> float:
    """Exponential backoff for unexpected errors: 1, 2, 4 ... seconds, capped at MAX_RETRY_DELAY."""
    return min(MAX_RETRY_DELAY, 2.0 ** min(retry, 16))


def phase_index_id(plural: str) -> str:
    return f"{plural}_by_phase"


def register(
    registry: kopf.OperatorRegistry,
    *,
    kinds: Sequence[tuple[str, reconcile.KindLogic[Any]]],
    metrics: OperatorMetrics,
    kubeconfig: str | None,
) -> None:
    """Register the operator's handlers; `kinds` pairs each CRD plural with its logic."""

    # A failed login is retried soon: a mounted token or kubeconfig may appear a moment later.
    @kopf.on.login(registry=registry, id="login", backoff=LOGIN_RETRY_DELAY)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return login.connection_info(kubeconfig)

    @kopf.on.startup(registry=registry, id="configure-settings")
    def _startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        operator_settings.configure(settings, instance=socket.gethostname())
        # kopf hands every handler its indices by id; the metrics read them at scrape time.
        for plural, logic in kinds:
            metrics.track_objects(logic.kind, kwargs[phase_index_id(plural)])

    cluster = Cluster(kubeconfig)
    for plural, logic in kinds:
        if logic.kind == trainingjob.KIND:
            _register_trainingjob(registry, plural, logic, metrics, cluster)
        elif logic.kind == modelversion.KIND:
            modelversion_handlers.register(registry, plural, logic, metrics, cluster)
        elif logic.kind == inferenceservice.KIND:
            inferenceservice_handlers.register(registry, plural, logic, metrics, cluster)
        else:
            register_kind(registry, plural, logic, metrics)
        _register_index(registry, plural)
    # Cross-cutting children of all kinds, each in its own handlers (their own ids), so they never
    # stand in the way of a kind's reconcile.
    alerting_handlers.register(registry, kinds, metrics, cluster)
    backup_handlers.register(registry, kinds, metrics, cluster)


def _register_index(registry: kopf.OperatorRegistry, plural: str) -> None:
    @kopf.index(GROUP, VERSION, plural, registry=registry, id=phase_index_id(plural))
    def _by_phase(body: kopf.Body, **_: Any) -> dict[str, str]:
        return {str(body.get("status", {}).get("phase") or "Unknown"): str(body.metadata.uid)}


def register_kind(
    registry: kopf.OperatorRegistry, plural: str, logic: reconcile.KindLogic[Any], metrics: OperatorMetrics
) -> None:
    @kopf.on.resume(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, plural, registry=registry, id="reconcile")
    def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int, **_: Any) -> None:
        reconcile_object(logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=kopf.event)


class EventPoster(Protocol):
    def __call__(self, objs: kopf.Body, *, type: str, reason: str, message: str = "") -> None: ...


def reconcile_object(
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    retry: int,
    post: EventPoster,
) -> None:
    """Apply one reconcile: status through the patch (kopf writes it to /status), one event per transition.

    An unexpected error is counted, logged with the object, and turned into a kopf TemporaryError so
    kopf retries the object with backoff; the operator itself keeps running.
    """
    kind = logic.kind
    with metrics.timed(kind):
        try:
            outcome = reconcile.reconcile(logic, body, now=datetime.datetime.now(datetime.UTC))
        except Exception as error:
            delay = retry_delay(retry)
            metrics.failed(kind, type(error).__name__)
            logger.exception(f"Reconcile failed unexpectedly ({type(error).__name__}); retry in {delay:.0f}s")
            raise kopf.TemporaryError(f"unexpected {type(error).__name__}: {error}", delay=delay) from error
    for key, value in outcome.status_patch.items():
        patch.status[key] = value
    if outcome.event is not None:
        post(body, type=outcome.event.type, reason=outcome.event.reason, message=outcome.event.message)
        logger.info(f"Phase {outcome.conclusion.phase}, {outcome.event.reason}: {outcome.event.message}")
    metrics.reconciled(kind, outcome.result)


# ---------------------------------------------------------------------------------------------------
# TrainingJob: the children (pods, headless Service, checkpoint PVC) and the ModelVersion on success.

# How often a job's pods and progress are looked at; status is written only when it changed.
TRAINING_SYNC_INTERVAL = 3.0


def model_version_for(
    job: Mapping[str, Any],
    spec: TrainingJobSpec,
    existing: Sequence[Mapping[str, Any]],
    plan: trainingjob.Plan,
) -> tuple[str, dict[str, Any] | None]:
    """The ModelVersion of a finished job: (name, manifest to create) or (name, None) when it exists.

    The version number is the next free one of the model; an existing ModelVersion from this job
    (the operator restarted between creating it and writing the status) is reused, not duplicated.
    """
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    model = spec.output.model_name or name
    for mv in existing:
        theirs = mv.get("spec") or {}
        if (
            theirs.get("model") == model
            and ((theirs.get("source") or {}).get("trainingJob") or {}).get("name") == name
        ):
            return str(mv["metadata"]["name"]), None
    taken_names = {str(mv["metadata"]["name"]) for mv in existing}
    versions = [
        int((mv.get("spec") or {}).get("version") or (mv.get("status") or {}).get("version") or 0)
        for mv in existing
        if (mv.get("spec") or {}).get("model") == model
    ]
    version = max(versions, default=0) + 1
    while f"{model}-{version}" in taken_names:
        version += 1
    mv_spec: dict[str, Any] = {
        "model": model,
        "version": version,
        "source": {"trainingJob": {"name": name}},
        "format": spec.output.format,
    }
    if plan.result is not None and plan.result.artifact is not None:
        mv_spec["sha256"] = plan.result.artifact.sha256
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": f"{model}-{version}",
            "namespace": namespace,
            "labels": tj_builders.labels(name),
        },
        "spec": mv_spec,
    }
    return f"{model}-{version}", manifest


def _needs_no_look(spec: TrainingJobSpec, st: Mapping[str, Any]) -> bool:
    """A finished job with nothing left to clean up: no API calls every few seconds for it."""
    return (
        st.get("phase") in trainingjob.TERMINAL
        and spec.run_policy.clean_pod_policy == "None"
        and spec.run_policy.ttl_seconds_after_finished is None
    )


def sync_trainingjob(
    cluster: Cluster,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    retry: int,
    post: EventPoster,
) -> None:
    """Look at a job's pods and metrics, carry out the plan, write the status if it changed."""
    if reconcile.conclude(logic, body.get("spec")).state is status.State.STALLED:
        # An unusable spec: the generic path says which field, and nothing is created.
        reconcile_object(logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=post)
        return
    spec = TrainingJobSpec.model_validate(dict(body.get("spec") or {}))
    if _needs_no_look(spec, body.get("status") or {}):
        return
    name, namespace, uid = str(body.metadata.name), str(body.metadata.namespace), str(body.metadata.uid)
    with metrics.timed(logic.kind):
        try:
            pods = cluster.list_pods(namespace, name)
            rank0 = next(
                (
                    p
                    for p in pods
                    if (p.get("metadata") or {}).get("labels", {}).get(tj_builders.LABEL_RANK) == "0"
                ),
                None,
            )
            ip = ((rank0 or {}).get("status") or {}).get("podIP")
            scraped = (
                cluster.scrape(ip)
                if ip and (rank0 or {}).get("status", {}).get("phase") == "Running"
                else None
            )
            plan = trainingjob.plan(body, pods, scraped, now=datetime.datetime.now(datetime.UTC))
            for pod_name in plan.delete_pods:
                cluster.delete_pod(namespace, pod_name)
            if plan.create_pods:
                cluster.create(tj_builders.headless_service(name, namespace, uid), patch_existing=True)
                pvc = tj_builders.checkpoint_pvc(name, namespace, uid, spec)
                if pvc is not None:
                    cluster.create(pvc)
                existing = {str(p["metadata"]["name"]) for p in pods}
                for pod in tj_builders.pods(name, namespace, uid, spec, attempt=plan.attempt):
                    if pod["metadata"]["name"] not in existing:
                        cluster.create(pod)
            status_patch = dict(plan.status_patch)
            if plan.register_model_version:
                mv_name, manifest = model_version_for(
                    body, spec, cluster.list_model_versions(namespace), plan
                )
                if manifest is not None:
                    cluster.create(manifest)
                    post(
                        body,
                        type="Normal",
                        reason="ModelVersionCreated",
                        message=f"Registered ModelVersion {mv_name}.",
                    )
                status_patch["modelVersion"] = mv_name
        except Exception as error:
            delay = retry_delay(retry)
            metrics.failed(logic.kind, type(error).__name__)
            logger.exception(f"TrainingJob sync failed ({type(error).__name__}); retry in {delay:.0f}s")
            raise kopf.TemporaryError(f"unexpected {type(error).__name__}: {error}", delay=delay) from error
    for key, value in status_patch.items():
        patch.status[key] = value
    for event in plan.events:
        post(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"Phase {plan.conclusion.phase}, {event.reason}: {event.message}")
    metrics.reconciled(logic.kind, plan.conclusion.state.value.lower())


class _QuietTimer(logging.Filter):
    """Drops kopf's "Timer 'sync' succeeded." line: one per job every few seconds drowns the log.

    Failures of the timer are still logged (by kopf and by `sync_trainingjob`), and every transition
    of a job is logged with its reason.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Timer 'sync' succeeded."


def _register_trainingjob(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    def run(*, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int) -> None:
        sync_trainingjob(
            cluster, logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=kopf.event
        )

    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietTimer) for f in objects_logger.filters):
        objects_logger.addFilter(_QuietTimer())
    # Pods and progress change without any change to the job, so they are looked at on a timer too.
    registration.reconcile_and_sync(registry, plural, run, interval=TRAINING_SYNC_INTERVAL)
