"""The kopf registrations of the backup controller: one timer per TrainingJob and ModelVersion.

The timer reads what exists (the copy CronJob, its runs' pods, the VolumeSnapshots, the restore
pods), asks `controllers.backup.plan` what to do, and does it. It runs in its own handling cycle with
its own handler id, so its status writes (`status.backup` and the `BackupHealthy` condition, merged
into the current conditions) never share a patch with the kind's reconcile.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
import kubernetes

from modelops import GROUP, VERSION
from modelops.builders import backup as builders
from modelops.builders import trainingjob as tj_builders
from modelops.controllers import backup, reconcile
from modelops.controllers.cluster import Cluster, resource_path
from modelops.controllers.metrics import OperatorMetrics

KINDS = ("TrainingJob", "ModelVersion")
SPEC_HASH = "modelops.dev/spec-hash"


def wanted(kind: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether the object has anything for the backup controller (a policy, a restore, or leftovers)."""
    restore = (
        (spec.get("checkpoint") or {}).get("restoreFrom")
        if kind == "TrainingJob"
        else spec.get("restoreFrom")
    )
    return bool(spec.get("backup") or restore or (status or {}).get("backup"))


def _hashed(manifest: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    meta = manifest.setdefault("metadata", {})
    meta.setdefault("annotations", {})[SPEC_HASH] = digest
    return manifest


def observe(cluster: Cluster, kind: str, body: Mapping[str, Any]) -> backup.Observed:
    owner = backup.owner_of(kind, body)
    ns = owner.namespace
    spec = body.get("spec") or {}
    policy = spec.get("backup") or {}
    methods = (policy.get("methods") or ["copy"]) if policy else []
    restore = (
        (spec.get("checkpoint") or {}).get("restoreFrom")
        if kind == "TrainingJob"
        else spec.get("restoreFrom")
    )
    cronjob = cluster.get(resource_path("batch/v1", "cronjobs", ns, builders.cronjob_name(owner)))
    copy_pods = (
        cluster.list_items(resource_path("v1", "pods", ns), label_selector=builders.selector(owner, "copy"))
        if cronjob is not None
        else []
    )
    snapshots: list[dict[str, Any]] | None = []
    if "volumeSnapshot" in methods or (restore or {}).get("volumeSnapshot"):
        try:
            snapshots = cluster.list_items(
                resource_path(builders.SNAPSHOT_API_VERSION, builders.SNAPSHOT_PLURAL, ns),
                label_selector=builders.selector(owner, "snapshot") if "volumeSnapshot" in methods else None,
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            snapshots = None
    restore_pods: list[dict[str, Any]] = []
    if restore:
        selector = (
            f"{tj_builders.LABEL_JOB}={owner.name},{tj_builders.LABEL_RANK}=0"
            if kind == "TrainingJob"
            else builders.selector(owner, "restore")
        )
        restore_pods = cluster.list_items(resource_path("v1", "pods", ns), label_selector=selector)
    return backup.Observed(
        cronjob=cronjob, copy_pods=copy_pods, snapshots=snapshots, restore_pods=restore_pods
    )


def _path_of(manifest: Mapping[str, Any]) -> tuple[str, str]:
    api_version, kind = str(manifest["apiVersion"]), str(manifest["kind"])
    plural = {
        "CronJob": "cronjobs",
        "Job": "jobs",
        "PersistentVolumeClaim": "persistentvolumeclaims",
        "VolumeSnapshot": builders.SNAPSHOT_PLURAL,
    }[kind]
    meta = manifest["metadata"]
    return resource_path(api_version, plural, meta["namespace"]), resource_path(
        api_version, plural, meta["namespace"], meta["name"]
    )


def carry_out(cluster: Cluster, namespace: str, plan: backup.Plan, observed: backup.Observed) -> None:
    for api_version, plural, name in plan.delete:
        cluster.delete(resource_path(api_version, plural, namespace, name))
    for manifest in plan.create:
        collection, _ = _path_of(manifest)
        cluster.create_at(collection, manifest)
    for manifest in plan.apply:
        manifest = _hashed(dict(manifest))
        collection, path = _path_of(manifest)
        current = observed.cronjob if manifest["kind"] == "CronJob" else None
        if current is None:
            if cluster.create_at(collection, manifest) is None:
                cluster.apply(path, manifest)
        elif ((current.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH) != manifest[
            "metadata"
        ]["annotations"][SPEC_HASH]:
            cluster.apply(path, manifest)


def sync(
    cluster: Cluster,
    metrics: OperatorMetrics,
    kind: str,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    post: Any = kopf.event,
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    try:
        observed = observe(cluster, kind, body)
        plan = backup.plan(kind, body, observed, now=now)
        carry_out(cluster, str(body.metadata.namespace), plan, observed)
    except kubernetes.client.ApiException as error:
        metrics.failed(kind, f"Backup{type(error).__name__}")
        raise kopf.TemporaryError(
            f"backup sync: API error {error.status} {error.reason}", delay=30
        ) from error
    current = dict((body.get("status") or {}).get("backup") or {})
    change = backup.backup_patch(current, plan.backup_status)
    if change is not None:
        patch.status["backup"] = change or None
    conditions = backup.conditions_with(body, plan.condition, now=now)
    if conditions is not None:
        patch.status["conditions"] = conditions
    for event in plan.events:
        post(body, type=event.type, reason=event.reason, message=event.message[:1024])
        log = logger.warning if event.type == "Warning" else logger.info
        log(f"Backup: {event.reason}: {event.message}")


class _QuietTimer(logging.Filter):
    """Drops kopf's "Timer 'backup' succeeded." line (one per object every few seconds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Timer 'backup' succeeded."


def register(
    registry: kopf.OperatorRegistry,
    kinds: Sequence[tuple[str, reconcile.KindLogic[Any]]],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietTimer) for f in objects_logger.filters):
        objects_logger.addFilter(_QuietTimer())
    for plural, logic in kinds:
        if logic.kind in KINDS:
            _register(registry, plural, logic.kind, metrics, cluster)


def sync_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between two looks at one object: MODELOPS_BACKUP_SYNC_SECONDS, else the default."""
    value = (os.environ if environ is None else environ).get(backup.ENV_SYNC_INTERVAL)
    try:
        return max(1.0, float(value)) if value else backup.SYNC_INTERVAL
    except ValueError:
        return backup.SYNC_INTERVAL


def _register(
    registry: kopf.OperatorRegistry, plural: str, kind: str, metrics: OperatorMetrics, cluster: Cluster
) -> None:
    interval = sync_interval()

    def _when(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
        return wanted(kind, spec, status)

    @kopf.timer(
        GROUP,
        VERSION,
        plural,
        registry=registry,
        id="backup",
        interval=interval,
        initial_delay=min(5.0, interval / 2),
        when=_when,
    )
    def _backup(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        sync(cluster, metrics, kind, body=body, patch=patch, logger=logger)
