"""The kopf registrations of the TrainingJob controller, and the API calls that carry out its plan.

Decisions are `trainingjob`'s (pure functions); here they meet the cluster. One `sync` runs on every
change of a job and on a timer (pods and progress change without any change to the job): list the
job's pods, scrape rank 0's metrics, let `trainingjob.plan` decide, create or delete the children
(headless Service, checkpoint claim, one pod per node), register the ModelVersion of a finished job,
write the status, post the events.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from modelops import API_VERSION, status
from modelops.api.trainingjob import TrainingJobSpec, output_format
from modelops.builders import finetune as ft_builders
from modelops.builders import trainingjob as tj_builders
from modelops.controllers import children, reconcile, registration, trainingjob
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics

# How often a job's pods and progress are looked at; status is written only when it changed.
SYNC_INTERVAL = 3.0


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
        "format": output_format(spec),
    }
    if plan.result is not None and plan.result.artifact is not None:
        mv_spec["sha256"] = plan.result.artifact.sha256
        mv_spec.update(ft_builders.model_version_fields(spec, plan.result))
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


def _needs_pods(body: kopf.Body, spec: TrainingJobSpec, pods: Sequence[Mapping[str, Any]]) -> bool:
    st = body.get("status") or {}
    if st.get("phase") in trainingjob.TERMINAL or tj_builders.is_suspended(spec):
        return False
    return len(pods) < spec.distributed.nodes


def _fine_tune_base(
    cluster: Cluster, body: kopf.Body, spec: TrainingJobSpec, pods: Sequence[Mapping[str, Any]]
) -> tuple[ft_builders.ResolvedBase | None, list[children.Missing]]:
    """A fine-tune's base model (looked up only while pods are missing), or why it cannot be mounted."""
    if spec.fine_tune is None or not _needs_pods(body, spec, pods):
        return None, []
    by_version = spec.fine_tune.base_model.model_version is not None
    versions = cluster.list_model_versions(str(body.metadata.namespace)) if by_version else []
    resolved = ft_builders.resolve_base(spec, versions)
    if isinstance(resolved, ft_builders.Unresolved):
        return None, [children.Missing("ModelVersion", resolved.name, resolved.field)]
    return resolved, []


def _missing_claims(
    cluster: Cluster,
    body: kopf.Body,
    spec: TrainingJobSpec,
    pods: Sequence[Mapping[str, Any]],
    base: ft_builders.ResolvedBase | None = None,
) -> list[children.Missing]:
    """The claims the job's pods would mount that do not exist (only looked up while pods are missing)."""
    if not _needs_pods(body, spec, pods):
        return []
    name, namespace, uid = str(body.metadata.name), str(body.metadata.namespace), str(body.metadata.uid)
    ours = tj_builders.checkpoint_pvc(name, namespace, uid, spec)
    created = None if ours is None else ours["metadata"]["name"]
    wanted: dict[str, str] = {}
    for pod in tj_builders.pods(name, namespace, uid, spec, base=base):
        for claim, volume in children.pod_claims(pod):
            if claim != created:
                wanted.setdefault(claim, tj_builders.claim_field(spec, claim, volume))
    missing = [
        children.Missing("PersistentVolumeClaim", claim, where)
        for claim, where in cluster.missing_claims(namespace, list(wanted.items()))
    ]
    restore = spec.checkpoint.restore_from
    if ours is not None and restore is not None and restore.volume_snapshot is not None:
        # A claim from a snapshot that does not exist would stay Pending with no word to the job.
        snapshot = restore.volume_snapshot.name
        if not cluster.snapshot_exists(namespace, snapshot):
            missing.append(
                children.Missing(
                    "VolumeSnapshot", snapshot, "spec.checkpoint.restoreFrom.volumeSnapshot.name"
                )
            )
    return missing


def _carry_out(
    cluster: Cluster,
    body: kopf.Body,
    spec: TrainingJobSpec,
    pods: Sequence[Mapping[str, Any]],
    plan: trainingjob.Plan,
    base: ft_builders.ResolvedBase | None = None,
) -> None:
    """Delete and create what the plan says; a child the API server refuses raises `ChildRejected`."""
    name, namespace, uid = str(body.metadata.name), str(body.metadata.namespace), str(body.metadata.uid)
    for pod_name in plan.delete_pods:
        cluster.delete_pod(namespace, pod_name)
    if not plan.create_pods:
        return
    service = tj_builders.headless_service(name, namespace, uid)
    with children.creating("Service", service["metadata"]["name"]):
        cluster.create(service, patch_existing=True)
    pvc = tj_builders.checkpoint_pvc(name, namespace, uid, spec)
    if pvc is not None:
        with children.creating("PersistentVolumeClaim", pvc["metadata"]["name"]):
            cluster.create(pvc)
    existing = {str(p["metadata"]["name"]) for p in pods}
    for pod in tj_builders.pods(name, namespace, uid, spec, attempt=plan.attempt, base=base):
        if pod["metadata"]["name"] not in existing:
            with children.creating("Pod", pod["metadata"]["name"]):
                cluster.create(pod)


def _scrape_rank0(cluster: Cluster, pods: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Rank 0's training gauges while it runs (None before, after, or when it does not answer)."""
    rank0 = next(
        (
            p
            for p in pods
            if ((p.get("metadata") or {}).get("labels") or {}).get(tj_builders.LABEL_RANK) == "0"
        ),
        None,
    )
    st = (rank0 or {}).get("status") or {}
    return cluster.scrape(st["podIP"]) if st.get("podIP") and st.get("phase") == "Running" else None


def _plan_and_carry_out(
    cluster: Cluster, body: kopf.Body, spec: TrainingJobSpec, pods: Sequence[Mapping[str, Any]]
) -> trainingjob.Plan:
    """Observe (metrics, missing claims, the kubelet's complaints), plan, and create/delete children."""
    scraped = _scrape_rank0(cluster, pods)
    now = datetime.datetime.now(datetime.UTC)
    base, unresolved = _fine_tune_base(cluster, body, spec, pods)
    missing = [*unresolved, *_missing_claims(cluster, body, spec, pods, base)]
    mounts = cluster.failed_mounts(str(body.metadata.namespace)) if children.has_pending(pods) else []
    plan = trainingjob.plan(body, pods, scraped, now=now, mounts=mounts, absent=missing)
    try:
        _carry_out(cluster, body, spec, pods, plan, base)
    except children.ChildRejected as rejected:
        # The server's refusal is the job's state now: reported, and tried again on the next look.
        plan = trainingjob.plan(
            body, pods, scraped, now=now, mounts=mounts, absent=missing, rejected=rejected
        )
    return plan


def _register_model_version(
    cluster: Cluster,
    body: kopf.Body,
    spec: TrainingJobSpec,
    plan: trainingjob.Plan,
    post: registration.EventPoster,
    logger: kopf.Logger,
) -> str | None:
    """Create the finished job's ModelVersion (once); its name, or None when the API server refused it."""
    mv_name, manifest = model_version_for(
        body, spec, cluster.list_model_versions(str(body.metadata.namespace)), plan
    )
    if manifest is None:
        return mv_name
    try:
        with children.creating("ModelVersion", mv_name):
            cluster.create(manifest)
    except children.ChildRejected as rejected:
        # The job did succeed; the registry refused its version (e.g. a rule of the CRD).
        message = children.rejected_conclusion(rejected, phase=trainingjob.SUCCEEDED).message
        post(body, type="Warning", reason="ModelVersionRejected", message=message)
        logger.warning(f"ModelVersionRejected: {message}")
        return None
    post(body, type="Normal", reason="ModelVersionCreated", message=f"Registered ModelVersion {mv_name}.")
    return mv_name


def sync(
    cluster: Cluster,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    retry: int,
    post: registration.EventPoster,
) -> None:
    """Look at a job's pods and metrics, carry out the plan, write the status if it changed."""
    if reconcile.conclude(logic, body.get("spec")).state is status.State.STALLED:
        # An unusable spec: the generic path says which field, and nothing is created.
        registration.reconcile_object(
            logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=post
        )
        return
    spec = TrainingJobSpec.model_validate(dict(body.get("spec") or {}))
    if _needs_no_look(spec, body.get("status") or {}):
        return
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    with metrics.timed(logic.kind):
        try:
            pods = cluster.list_pods(namespace, name)
            plan = _plan_and_carry_out(cluster, body, spec, pods)
            status_patch = dict(plan.status_patch)
            if plan.register_model_version:
                registered = _register_model_version(cluster, body, spec, plan, post, logger)
                if registered is not None:
                    status_patch["modelVersion"] = registered
        except Exception as error:
            raise registration.unexpected(
                error, logic.kind, metrics, logger, retry, what="TrainingJob sync"
            ) from error
    for key, value in status_patch.items():
        patch.status[key] = value
    for event in plan.events:
        post(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"Phase {plan.conclusion.phase}, {event.reason}: {event.message}")
    metrics.reconciled(logic.kind, plan.conclusion.state.value.lower())


def register(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    def run(*, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int) -> None:
        sync(cluster, logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=kopf.event)

    registration.quiet_timer("sync")
    registration.reconcile_and_sync(registry, plural, run, interval=SYNC_INTERVAL)
