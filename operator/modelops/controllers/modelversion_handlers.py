"""The kopf registrations of the ModelVersion controller, and the API calls that carry out its decisions.

Decisions are `modelversion`'s (pure functions); here they are read from and written to the cluster:

- `sync` (on create/update/resume, and on a timer while there is work): the in-use finalizer, the
  version number, the verification pod and its verdict, alias grants, servedBy.
- `served-by` (a slower timer): InferenceServices change independently of versions, so who serves a
  version is looked at again periodically.
- `in-use-protection` (on delete): holds the deletion while an InferenceService serves the version.

Alias grants of one model are serialised by a lock per (namespace, model) inside the operator (one
replica, Recreate) and written with resourceVersion preconditions, so even a second writer could not
make two holders: a stale write fails with 409 and the grant is decided again from fresh objects.
"""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import kopf
import kubernetes

from modelops import API_VERSION, GROUP, VERSION, status
from modelops.api.modelversion import ModelVersionSpec
from modelops.builders import modelversion as builders
from modelops.builders.trainingjob import worker_image
from modelops.controllers import children, reconcile, registration
from modelops.controllers import modelversion as mv
from modelops.controllers.cluster import Cluster, resource_path
from modelops.controllers.metrics import OperatorMetrics

# How often a version with work under way (verification, aliases) is looked at.
SYNC_INTERVAL = 3.0
# How often servedBy is refreshed for every version.
SERVED_BY_INTERVAL = 15.0
# How soon a blocked deletion looks again whether the version is still served.
DELETE_RETRY = 5.0

# Operator-level retention policy: keep this many unaliased, unserved versions per model (unset: all).
ENV_RETAIN = "MODELOPS_RETAIN_UNALIASED_VERSIONS"
# Operator-level periodic re-verification of every version, in seconds (unset: only on request).
ENV_REVERIFY_INTERVAL = "MODELOPS_REVERIFY_INTERVAL_SECONDS"

_locks_guard = threading.Lock()
_locks: dict[tuple[str, str], threading.Lock] = {}


@contextmanager
def model_lock(namespace: str, model: str) -> Iterator[None]:
    """One alias or version-number decision at a time per model."""
    with _locks_guard:
        lock = _locks.setdefault((namespace, model), threading.Lock())
    with lock:
        yield


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _mv_path(namespace: str, name: str | None = None) -> str:
    return resource_path(API_VERSION, "modelversions", namespace, name)


def _versions(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return cluster.list_items(_mv_path(namespace))


def _find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((i for i in items if mv.name_of(i) == name), None)


def _isvcs(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    try:
        return cluster.list_items(resource_path(API_VERSION, "inferenceservices", namespace))
    except kubernetes.client.ApiException as error:
        if error.status == 404:  # the InferenceService CRD is not installed: nothing serves anything
            return []
        raise


def _job(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    # A list rather than a get: the operator's RBAC already grants list on its kinds.
    return _find(cluster.list_items(resource_path(API_VERSION, "trainingjobs", namespace)), name)


def _conflict(error: Exception) -> bool:
    return isinstance(error, kubernetes.client.ApiException) and error.status == 409


def has_work(body: Mapping[str, Any]) -> bool:
    """Whether the timer must look at this version now (else it costs no API call)."""
    st = body.get("status") or {}
    meta = body.get("metadata") or {}
    if mv.FINALIZER not in (meta.get("finalizers") or []):
        return True
    if st.get("version") is None:
        return True
    if mv.needs_verification(body, now=_now(), interval=reverify_interval()):
        return True
    asked = set(((body.get("spec") or {}).get("promotion") or {}).get("aliases") or [])
    if set(mv.aliases_of(body)) - asked:
        return True
    return bool(
        st.get("phase") == "Ready" and asked and st.get("promotionGeneration") != meta.get("generation")
    )


def ensure_finalizer(cluster: Cluster, body: Mapping[str, Any]) -> None:
    meta = body.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    if mv.FINALIZER in finalizers or meta.get("deletionTimestamp"):
        return
    patch = {
        "metadata": {
            "finalizers": [*finalizers, mv.FINALIZER],
            "resourceVersion": meta.get("resourceVersion"),
        }
    }
    try:
        cluster.patch(_mv_path(str(meta["namespace"]), str(meta["name"])), patch)
    except kubernetes.client.ApiException as error:
        if error.status not in (404, 409):  # a newer object or a gone one: the next look adds it
            raise


def assign_version(cluster: Cluster, body: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """The version number (assigned once, under the model's lock) and the versions of the namespace."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta["namespace"]), str(meta["name"])
    model = str((body.get("spec") or {}).get("model"))
    with model_lock(namespace, model):
        versions = _versions(cluster, namespace)
        me = _find(versions, name) or dict(body)
        number = mv.version_of(me)
        if number is None:
            number = mv.next_version(me, versions)
            cluster.patch(
                _mv_path(namespace, name) + "/status",
                {
                    "metadata": {"resourceVersion": (me.get("metadata") or {}).get("resourceVersion")},
                    "status": {"version": number},
                },
            )
            me.setdefault("status", {})["version"] = number
            versions = [me if mv.name_of(v) == name else v for v in versions]
    return number, versions


def promote(cluster: Cluster, namespace: str, name: str, model: str, post: registration.EventPoster) -> None:
    """Carry out the alias decisions of one version: revoke from the old holder, then grant."""
    with model_lock(namespace, model):
        versions = _versions(cluster, namespace)
        me = _find(versions, name)
        if me is None:
            return
        decisions = mv.decide_aliases(me, versions)
        generation = (me.get("metadata") or {}).get("generation")
        asked_now = (
            mv.is_ready(me)
            and not mv.is_deleting(me)
            and ((me.get("status") or {}).get("promotionGeneration") != generation)
        )
        if not decisions and not asked_now:
            return
        now = _now()
        aliases = mv.aliases_of(me)
        entries: list[dict[str, Any]] = []
        for d in decisions:
            if d.action == "Granted" and d.previous:
                holder = _find(versions, d.previous)
                if holder is not None:
                    cluster.patch(
                        _mv_path(namespace, d.previous) + "/status",
                        mv.revoke_patch(holder, d.alias, name, now),
                    )
                    post(
                        cast(kopf.Body, holder),
                        type="Normal",
                        reason="AliasRevoked",
                        message=f"Alias {d.alias} moved to {name}.",
                    )
            if d.action == "Granted":
                aliases.append(d.alias)
            elif d.action == "Revoked":
                aliases = [a for a in aliases if a != d.alias]
            entries.append(mv.history_entry(d, now))
        patch: dict[str, Any] = {
            "aliases": sorted(set(aliases)),
            "promotionHistory": mv.with_history(me, entries),
        }
        if asked_now:
            patch["promotionGeneration"] = generation
        cluster.patch(
            _mv_path(namespace, name) + "/status",
            {
                "metadata": {"resourceVersion": (me.get("metadata") or {}).get("resourceVersion")},
                "status": patch,
            },
        )
        for d in decisions:
            kind = {"Granted": "Normal", "Revoked": "Normal", "Denied": "Warning"}[d.action]
            post(
                cast(kopf.Body, me),
                type=kind,
                reason=f"Alias{d.action}",
                message=f"Alias {d.alias}: {d.message}.",
            )


def reverify_interval(environ: Mapping[str, str] | None = None) -> int | None:
    """Seconds between periodic re-verifications, or None when they are off."""
    value = (os.environ if environ is None else environ).get(ENV_REVERIFY_INTERVAL, "").strip()
    return int(value) if value.isdigit() and int(value) >= 60 else None


def retain(environ: Mapping[str, str] | None = None) -> int | None:
    """The retention setting, or None when every version is kept (unset, empty or not a number >= 1)."""
    value = (os.environ if environ is None else environ).get(ENV_RETAIN, "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def apply_retention(
    cluster: Cluster, namespace: str, model: str, keep: int, post: registration.EventPoster, *, verified: str
) -> None:
    """Delete the model's versions beyond the newest `keep` unaliased ones (the finalizer still guards).

    `verified` has just passed verification; its Ready status is not written yet, so it counts as Ready.
    """
    with model_lock(namespace, model):
        versions = [dict(v) for v in mv.same_model(_versions(cluster, namespace), model)]
        for v in versions:
            if mv.name_of(v) == verified:
                v["status"] = {**(v.get("status") or {}), "phase": "Ready"}
        for name in mv.retention_victims(versions, keep):
            victim = _find(versions, name)
            if cluster.delete(_mv_path(namespace, name)) and victim is not None:
                post(
                    cast(kopf.Body, victim),
                    type="Normal",
                    reason="Retention",
                    message=f"Deleted: {ENV_RETAIN}={keep} keeps the newest {keep} unaliased versions of {model}.",
                )


def _finished_conclusion(body: Mapping[str, Any]) -> status.Conclusion:
    """The state of a version whose last verification finished, from its Verified condition."""
    cond = status.get_condition((body.get("status") or {}).get("conditions"), mv.VERIFIED) or {}
    if cond.get("status") == "True":
        return status.ready(mv.REASON_VERIFIED, str(cond.get("message") or "The artifact is verified."))
    return status.stalled(
        str(cond.get("reason") or mv.REASON_VERIFIER_FAILED),
        str(cond.get("message") or "Verification failed."),
    )


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
    """Look at one version and move it along: finalizer, number, verification, aliases, servedBy."""
    if reconcile.conclude(logic, body.get("spec")).state is status.State.STALLED:
        registration.reconcile_object(
            logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=post
        )
        return
    if body.metadata.get("deletionTimestamp"):
        return
    spec = ModelVersionSpec.model_validate(dict(body.get("spec") or {}))
    name, namespace = str(body.metadata.name), str(body.metadata.namespace)
    current: dict[str, Any] = dict(body.get("status") or {})
    now = _now()
    desired: dict[str, Any] = {}
    events: list[reconcile.Event] = []
    conditions = list(current.get("conditions") or [])
    generation = body.metadata.get("generation")
    with metrics.timed(logic.kind):
        try:
            ensure_finalizer(cluster, body)
            number, versions = assign_version(cluster, body)
            desired["version"] = number
            me = _find(versions, name) or dict(body)
            duplicate = mv.duplicate_of(me, versions)
            if duplicate is not None:
                conclusion = status.stalled(
                    mv.REASON_DUPLICATE,
                    f"ModelVersion {duplicate} is already version {number} of model {spec.model}: "
                    "give this one another spec.version (or leave it out to get the next free number).",
                )
            elif mv.needs_verification(body, now=now, interval=reverify_interval()):
                conclusion = _verify(cluster, body, spec, desired, conditions, events, now, logger)
            else:
                conclusion = _finished_conclusion(body)
            users = mv.served_by(me, _isvcs(cluster, namespace))
            if users != (current.get("servedBy") or []):
                desired["servedBy"] = users
        except Exception as error:
            if _conflict(error):
                raise kopf.TemporaryError(
                    "a newer version of the object exists; looking again", delay=1
                ) from error
            raise registration.unexpected(
                error, logic.kind, metrics, logger, retry, what="ModelVersion sync"
            ) from error
    summary = status.summarize(conclusion, generation=generation, conditions=conditions, now=now)
    desired.update(summary)
    changes = status.status_changes(current, desired)
    for key, value in changes.items():
        patch.status[key] = value
    if reconcile._signature(current) != reconcile._signature(summary) and not events:
        kind = "Warning" if conclusion.state is status.State.STALLED else "Normal"
        events.append(reconcile.Event(kind, conclusion.reason, conclusion.message))
    for event in events:
        post(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"Phase {conclusion.phase}, {event.reason}: {event.message}")
    metrics.reconciled(logic.kind, conclusion.state.value.lower())
    keep = retain()
    if keep is not None and "artifact" in changes and conclusion.state is status.State.READY:
        apply_retention(cluster, namespace, spec.model, keep, post, verified=name)
    # Grants wait until Ready is written; giving up an alias dropped from the spec never waits.
    dropped = set(mv.aliases_of(body)) - set(spec.promotion.aliases)
    if (conclusion.state is status.State.READY and current.get("phase") == "Ready") or dropped:
        try:
            promote(cluster, namespace, name, spec.model, post)
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise kopf.TemporaryError(
                    "alias holders changed meanwhile; deciding again", delay=1
                ) from error
            raise


def _verify(
    cluster: Cluster,
    body: kopf.Body,
    spec: ModelVersionSpec,
    desired: dict[str, Any],
    conditions: list[dict[str, Any]],
    events: list[reconcile.Event],
    now: datetime.datetime,
    logger: kopf.Logger,
) -> status.Conclusion:
    """Start, watch or conclude the verification run the version needs; fills `desired` and `conditions`."""
    name, namespace, uid = str(body.metadata.name), str(body.metadata.namespace), str(body.metadata.uid)
    generation = body.metadata.get("generation")
    job = None
    if spec.source.training_job is not None:
        job = _job(cluster, namespace, spec.source.training_job.name)
    location = mv.locate(spec, job)
    if isinstance(location, status.Conclusion):
        return location
    request = mv.wanted_request(body, now=now, interval=reverify_interval()) or ""
    pod_name = builders.pod_name(name, request)
    pods_path = resource_path("v1", "pods", namespace)
    listed = cluster.list_items(pods_path, label_selector=f"{builders.LABEL_VERIFIES}={name}")
    # Only pods this version owns: a label is a hint anyone can copy, the owner's uid is not.
    pods = [
        p
        for p in listed
        if any(ref.get("uid") == uid for ref in (p.get("metadata") or {}).get("ownerReferences") or [])
    ]
    pod = _find(pods, pod_name)
    for stale in pods:
        # A run of an earlier request, never read (a newer request overtook it): it answers nothing now.
        if mv.name_of(stale) != pod_name:
            cluster.delete(resource_path("v1", "pods", namespace, mv.name_of(stale)))
    started = dict((body.get("status") or {}).get("verification") or {})
    if pod is None:
        absent = cluster.missing_claims(
            namespace, [(location.claim, "spec.source")] if location.on_claim else []
        )
        if absent:
            # Checked before the pod exists, so the answer is here now, not after a mount times out.
            where = (
                "spec.source.uri"
                if spec.source.uri
                else f"the checkpoint claim of TrainingJob {job_name(spec)}"
            )
            found = children.missing_conclusion(
                [children.Missing("PersistentVolumeClaim", location.claim, where)], phase="Pending"
            )
            assert found is not None
            return found
        if started.get("pod") == pod_name and started.get("request") == request and started.get("startedAt"):
            # The pod of this run is gone before its answer was read (deleted by someone): run it again.
            logger.info(f"verification pod {pod_name} disappeared; starting it again")
        manifest = builders.verification_pod(
            name,
            namespace,
            uid,
            location=location,
            sha256=mv.expected_digest(spec, body),
            fmt=spec.format,
            request=request,
            signature=spec.signature.model_dump_json(by_alias=True) if spec.signature else None,
        )
        try:
            with children.creating("Pod", pod_name):
                cluster.create_at(pods_path, manifest)
        except children.ChildRejected as rejected:
            # Reported, and tried again on the next look (the timer keeps looking until verified).
            return children.rejected_conclusion(rejected, phase="Pending")
        # Nulls clear the previous run's outcome (the status is merge-patched).
        desired["verification"] = {
            "request": request,
            "pod": pod_name,
            "startedAt": status.format_time(now),
            "finishedAt": None,
            "reason": None,
        }
        return _running(body, location, pod_name)
    verdict = mv.pod_verdict(pod)
    if verdict is None:
        mounts = cluster.failed_mounts(namespace) if children.has_pending([pod]) else []
        problem = children.pod_problem(pod, mounts)
        if problem is not None and not mv.was_verified(body):
            return problem.conclusion(phase="Pending")
        return _running(body, location, pod_name)
    finished = {
        "request": request,
        "pod": None,
        "startedAt": started.get("startedAt") or status.format_time(now),
        "finishedAt": status.format_time(now),
        "reason": verdict.reason,
    }
    desired["verification"] = finished
    if verdict.ok:
        desired.update(mv.verified_status(verdict, location, spec, job, image=worker_image(), now=now))
        message = f"{location.uri}: {verdict.message}."
        conditions[:] = status.set_condition(
            conditions,
            mv.VERIFIED,
            "True",
            mv.REASON_VERIFIED,
            message,
            observed_generation=generation,
            now=now,
        )
        conclusion = status.ready(mv.REASON_VERIFIED, message)
    else:
        message = mv.failure_message(verdict, location)
        conditions[:] = status.set_condition(
            conditions, mv.VERIFIED, "False", verdict.reason, message, observed_generation=generation, now=now
        )
        conclusion = status.stalled(verdict.reason, message)
    cluster.delete(resource_path("v1", "pods", namespace, pod_name))
    return conclusion


def job_name(spec: ModelVersionSpec) -> str:
    return spec.source.training_job.name if spec.source.training_job is not None else ""


def _running(body: Mapping[str, Any], location: builders.Location, pod_name: str) -> status.Conclusion:
    """A first verification is progress; a re-verification keeps a verified version Ready meanwhile
    (InferenceServices resolve Ready versions, and nothing has been found wrong yet)."""
    message = f"Verifying {location.uri} in pod {pod_name}."
    if mv.was_verified(body):
        return status.ready(
            "Reverifying", f"The artifact was verified before; re-verifying it in pod {pod_name}."
        )
    return status.progressing("Verifying", message, phase="Verifying")


def refresh_served_by(cluster: Cluster, body: kopf.Body, patch: kopf.Patch) -> None:
    users = mv.served_by(body, _isvcs(cluster, str(body.metadata.namespace)))
    if users != ((body.get("status") or {}).get("servedBy") or []):
        patch.status["servedBy"] = users


def release_or_hold(cluster: Cluster, body: kopf.Body, retry: int, post: registration.EventPoster) -> None:
    """On delete: keep the finalizer while an InferenceService serves the version, else drop it."""
    namespace, name = str(body.metadata.namespace), str(body.metadata.name)
    users = mv.served_by(body, _isvcs(cluster, namespace))
    path = _mv_path(namespace, name)
    if users:
        message = mv.deletion_blocked_message(users)
        conditions = status.set_condition(
            (body.get("status") or {}).get("conditions"),
            "DeletionBlocked",
            "True",
            mv.REASON_IN_USE,
            message,
            observed_generation=body.metadata.get("generation"),
            now=_now(),
        )
        cluster.status_patch(path, {"servedBy": users, "conditions": conditions})
        if retry == 0 or (body.get("status") or {}).get("servedBy") != users:
            post(body, type="Warning", reason="DeletionBlocked", message=message)
        raise kopf.TemporaryError(message, delay=DELETE_RETRY)
    finalizers = [f for f in (body.metadata.get("finalizers") or []) if f != mv.FINALIZER]
    if mv.FINALIZER in (body.metadata.get("finalizers") or []):
        try:
            cluster.patch(
                path,
                {
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": body.metadata.get("resourceVersion"),
                    }
                },
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:  # kopf or a user changed it since: look again at the newer object
                raise kopf.TemporaryError("the object changed; releasing again", delay=1) from error
            if error.status != 404:
                raise


def register(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    def run(*, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int) -> None:
        sync(cluster, logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=kopf.event)

    registration.reconcile_and_sync(registry, plural, run, interval=SYNC_INTERVAL, has_work=has_work)

    @kopf.timer(GROUP, VERSION, plural, registry=registry, id="served-by", interval=SERVED_BY_INTERVAL)
    def _served_by(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        if not body.metadata.get("deletionTimestamp"):
            refresh_served_by(cluster, body, patch)

    @kopf.on.delete(GROUP, VERSION, plural, registry=registry, id="in-use-protection")
    def _delete(body: kopf.Body, retry: int, **_: Any) -> None:
        release_or_hold(cluster, body, retry, kopf.event)
