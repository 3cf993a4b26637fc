"""What the backup controller decides for one TrainingJob or ModelVersion: pure, from observed state.

Inputs are the object and what exists for it (the copy CronJob, the pods of its runs, its
VolumeSnapshots, the restore pods); the output is a `Plan`: children to create, apply or delete, the
whole `status.backup`, the `BackupHealthy` condition and the events to post. `backup_handlers` only
reads the cluster and applies the plan.

Status comes from what the runs reported, never from guesses: a copy run's result is the JSON of its
termination message (`modelops-worker backup`), a snapshot counts once `readyToUse` is true.
Retention of copies is the worker's (it sees the files); retention of snapshots is ours, with the same
rule: beyond `keepLast` and older than `maxAge` go, oldest first, never the newest ready one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

# The cron grammar of CronJobs, shared with the local plane's CronJob controller (pure, no I/O).
from modelops import cron, status
from modelops.api.backup import BackupPolicy, RestoreSource
from modelops.builders import backup as builders
from modelops.builders import trainingjob as tj_builders

CONDITION = "BackupHealthy"
# How often each object's schedule, runs and snapshots are looked at (2-3 reads per object), unless
# MODELOPS_BACKUP_SYNC_SECONDS says otherwise. Cron granularity is a minute, so status lags a run by at
# most this much.
SYNC_INTERVAL = 30.0
ENV_SYNC_INTERVAL = "MODELOPS_BACKUP_SYNC_SECONDS"

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclasses.dataclass
class Plan:
    """What the handler carries out, in order: deletes, creates, applies, then the status."""

    apply: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    create: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    delete: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # apiVersion, plural, name
    backup_status: dict[str, Any] | None = None
    condition: tuple[str, str, str] | None = None  # status, reason, message; None removes it
    events: list[Event] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Observed:
    """What exists in the cluster for one object."""

    cronjob: Mapping[str, Any] | None = None
    copy_pods: Sequence[Mapping[str, Any]] = ()
    snapshots: Sequence[Mapping[str, Any]] | None = ()  # None: the VolumeSnapshot CRD is not installed
    restore_pods: Sequence[Mapping[str, Any]] = ()
    restore_claim: Mapping[str, Any] | None = None


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_duration(text: str) -> dt.timedelta:
    total, number = 0, ""
    for ch in text:
        if ch.isdigit():
            number += ch
        else:
            total += int(number) * _DURATION_UNITS[ch]
            number = ""
    return dt.timedelta(seconds=total)


def owner_of(kind: str, body: Mapping[str, Any]) -> builders.Owner:
    meta = body.get("metadata") or {}
    return builders.Owner(kind, str(meta.get("name")), str(meta.get("namespace")), str(meta.get("uid")))


def source_of(kind: str, body: Mapping[str, Any]) -> builders.Source | str:
    """The claim (and path) to back up, or why there is none yet."""
    spec, st = body.get("spec") or {}, body.get("status") or {}
    if kind == tj_builders.KIND:
        storage = (spec.get("checkpoint") or {}).get("storage") or {}
        return builders.Source(
            storage.get("existingClaim") or f"{(body.get('metadata') or {}).get('name')}-checkpoints"
        )
    uri = str(((st.get("artifact") or {}).get("uri")) or (spec.get("source") or {}).get("uri") or "")
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        return builders.Source(claim, path)
    if uri:
        return f"the artifact is at {uri.split('/')[0]}//...: only artifacts on a PersistentVolumeClaim are backed up"
    return "waiting for the artifact to be verified (status.artifact.uri)"


def _terminated(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    st = pod.get("status") or {}
    for cs in [*(st.get("containerStatuses") or ()), *(st.get("initContainerStatuses") or ())]:
        if cs.get("name") == container:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated:
                return dict(terminated)
    return None


def run_result(pod: Mapping[str, Any], container: str) -> tuple[dt.datetime, dict[str, Any]] | None:
    """(when it ended, the worker's result) of a finished backup or restore pod; None while it runs.

    A pod that ended without a result (it could not mount a claim, it was killed) still reports a
    failure, with what the kubelet said.
    """
    terminated = _terminated(pod, container)
    st = pod.get("status") or {}
    if terminated is None:
        if st.get("phase") != "Failed":
            return None
        at = parse_time(st.get("startTime")) or dt.datetime.now(dt.UTC)
        message = str(st.get("message") or st.get("reason") or "the pod failed before the container ran")
        return at, {"status": "Failed", "reason": "BackupPodFailed", "message": message}
    at = parse_time(terminated.get("finishedAt")) or dt.datetime.now(dt.UTC)
    try:
        result = json.loads(str(terminated.get("message") or ""))
        if not isinstance(result, dict) or "status" not in result:
            raise ValueError
    except ValueError:
        code = terminated.get("exitCode")
        tail = str(terminated.get("message") or "").strip()[-300:]
        result = {
            "status": "Succeeded" if code == 0 else "Failed",
            "reason": "BackupFailed",
            "message": f"exit code {code} without a result" + (f": {tail}" if tail else ""),
        }
    return at, result


def to_prune(
    items: Sequence[tuple[dt.datetime, str]],
    *,
    keep_last: int,
    max_age: dt.timedelta | None,
    now: dt.datetime,
) -> list[str]:
    """Names retention removes from (time, name) pairs of complete backups: oldest first, never the newest."""
    ordered = sorted(items)
    if not ordered:
        return []
    doomed = {name for _, name in ordered[: max(0, len(ordered) - keep_last)]}
    if max_age is not None:
        doomed |= {name for at, name in ordered if now - at > max_age}
    doomed.discard(ordered[-1][1])
    return [name for _, name in ordered if name in doomed]


def _fmt(at: dt.datetime | None) -> str | None:
    return None if at is None else status.format_time(at)


def _copy_state(
    policy: BackupPolicy, owner: builders.Owner, pods: Sequence[Mapping[str, Any]], current: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """(status fields, copy records, the failure of the newest run if it failed)."""
    results = sorted(
        (r for p in pods if (r := run_result(p, builders.CONTAINER)) is not None), key=lambda r: r[0]
    )
    fields: dict[str, Any] = {}
    prefix = builders.destination_prefix(owner, policy)
    claim = policy.destination.claim_name if policy.destination else None
    in_store = builders.destination_uri(owner, policy) is not None
    records = [r for r in current.get("backups") or [] if r.get("method") == "copy"]
    successes = [(at, r) for at, r in results if r.get("status") == "Succeeded"]
    if successes:
        at, newest = successes[-1]
        taken = newest.get("backup") or {}
        fields["copyKept"] = int(newest.get("kept") or 0)
        fields["lastCopyTime"] = taken.get("time") or _fmt(at)
        records = [
            {
                "method": "copy",
                "name": str(r["name"]),
                "time": r.get("time"),
                "claimName": claim,
                # An object storage backup is named by its URI (restoreFrom.backup.uri takes it).
                **({"uri": f"{prefix}/{r['name']}"} if in_store else {"path": f"{prefix}/{r['name']}"}),
                "manifestSha256": r.get("manifestSha256"),
                "files": r.get("files"),
                "sizeBytes": r.get("sizeBytes"),
            }
            for r in newest.get("backups") or []
        ]
    failure = None
    if results:
        newest_at, last = results[-1]
        if last.get("status") != "Succeeded":
            failure = {
                "time": _fmt(newest_at),
                "reason": str(last.get("reason") or "BackupFailed"),
                "message": str(last.get("message") or ""),
            }
    return fields, records, failure


def _snapshot_time(snap: Mapping[str, Any]) -> dt.datetime:
    st = snap.get("status") or {}
    return (
        parse_time(st.get("creationTime"))
        or parse_time((snap.get("metadata") or {}).get("creationTimestamp"))
        or dt.datetime.now(dt.UTC)
    )


def _restore_request(source: RestoreSource) -> str:
    if source.backup is not None and source.backup.uri is not None:
        return f"backup {source.backup.uri}"
    if source.backup is not None:
        return f"backup {source.backup.claim_name}/{source.backup.path}"
    assert source.volume_snapshot is not None
    return f"volumeSnapshot {source.volume_snapshot.name}"


def restore_token(source: RestoreSource) -> str:
    return hashlib.sha256(_restore_request(source).encode()).hexdigest()[:8]


def _restore_status(
    kind: str,
    owner: builders.Owner,
    body: Mapping[str, Any],
    source: RestoreSource | None,
    observed: Observed,
    plan: Plan,
    now: dt.datetime,
) -> dict[str, Any] | None:
    """The restore's status (and, for a ModelVersion, the Job and claim it needs)."""
    if source is None:
        return None
    st = body.get("status") or {}
    current = (st.get("backup") or {}).get("restore") or {}
    request = _restore_request(source)
    if kind == tj_builders.KIND:
        # Done by the rank-0 pod's init container; its result is the restore's status.
        where = source_of(kind, body)
        claim = None if isinstance(where, str) else where.claim
        for pod in observed.restore_pods:
            result = run_result(pod, builders.RESTORE_CONTAINER)
            if result is not None:
                at, out = result
                ok = out.get("status") == "Succeeded"
                return {
                    "phase": "Succeeded" if ok else "Failed",
                    "source": request,
                    "claimName": claim,
                    "message": str(out.get("message") or ""),
                    "completionTime": _fmt(at),
                    **({"sha256": out["sha256"]} if ok and out.get("sha256") else {}),
                }
        if source.volume_snapshot is not None:
            return {
                "phase": "Succeeded",
                "source": request,
                "message": "the checkpoint claim was provisioned from the VolumeSnapshot; each checkpoint's "
                "sha256 manifest is verified before it is loaded",
            }
        return current or {"phase": "Pending", "source": request}
    if current.get("source") == request and current.get("phase") in ("Succeeded", "Failed"):
        return dict(current)
    artifact = st.get("artifact") or {}
    sha = artifact.get("sha256") or (body.get("spec") or {}).get("sha256")
    where = source_of(kind, body)
    if not sha or isinstance(where, str):
        return {
            "phase": "Failed",
            "source": request,
            "message": "the artifact was never verified, so there is no sha256 to check a restore against: "
            "restore into a new ModelVersion with spec.sha256 set instead",
            "completionTime": _fmt(now),
        }
    token = restore_token(source)
    job_name = builders.restore_job_name(owner, token)
    directory, filename = posixpath.split(where.path)
    for pod in observed.restore_pods:
        if (pod.get("metadata") or {}).get("labels", {}).get("job-name") != job_name:
            continue
        result = run_result(pod, builders.RESTORE_CONTAINER)
        if result is None:
            return {"phase": "Running", "source": request}
        at, out = result
        ok = out.get("status") == "Succeeded"
        claim = where.claim if source.backup is not None else builders.restore_claim_name(owner)
        return {
            "phase": "Succeeded" if ok else "Failed",
            "source": request,
            "claimName": claim,
            "message": str(out.get("message") or ""),
            "completionTime": _fmt(at),
            **({"sha256": sha} if ok else {}),
        }
    if source.backup is not None:
        plan.create.append(
            builders.restore_job(
                owner,
                token=token,
                target_claim=where.claim,
                target_path=directory,
                expect={filename: sha},
                backup=source.backup,
            )
        )
    else:
        assert source.volume_snapshot is not None
        snapshot = next(
            (
                s
                for s in observed.snapshots or ()
                if (s.get("metadata") or {}).get("name") == source.volume_snapshot.name
            ),
            None,
        )
        size = str(((snapshot or {}).get("status") or {}).get("restoreSize") or "1Gi")
        if observed.restore_claim is None:
            plan.create.append(builders.claim_from_snapshot(owner, source.volume_snapshot.name, size=size))
        plan.create.append(
            builders.restore_job(
                owner,
                token=token,
                target_claim=builders.restore_claim_name(owner),
                target_path=directory,
                expect={filename: sha},
            )
        )
    return {"phase": "Pending", "source": request}


def plan(kind: str, body: Mapping[str, Any], observed: Observed, *, now: dt.datetime) -> Plan:
    """Everything the backup controller does for one object at `now`."""
    from modelops.api.modelversion import ModelVersionSpec
    from modelops.api.trainingjob import TrainingJobSpec

    out = Plan()
    owner = owner_of(kind, body)
    raw_spec = dict(body.get("spec") or {})
    try:
        spec_model: Any = (TrainingJobSpec if kind == tj_builders.KIND else ModelVersionSpec).model_validate(
            raw_spec
        )
    except ValueError:
        return out  # the kind's own reconcile reports the invalid spec
    policy: BackupPolicy | None = spec_model.backup
    restore_source: RestoreSource | None = (
        spec_model.checkpoint.restore_from if kind == tj_builders.KIND else spec_model.restore_from
    )
    current = dict((body.get("status") or {}).get("backup") or {})
    desired: dict[str, Any] = {}
    restore = _restore_status(kind, owner, body, restore_source, observed, out, now)
    if restore is not None:
        desired["restore"] = restore
        if (
            restore.get("phase") in ("Succeeded", "Failed")
            and (current.get("restore") or {}).get("phase") != restore["phase"]
        ):
            ok = restore["phase"] == "Succeeded"
            out.events.append(
                Event(
                    "Normal" if ok else "Warning",
                    "RestoreSucceeded" if ok else "RestoreFailed",
                    restore.get("message") or "",
                )
            )

    if policy is None:
        if observed.cronjob is not None:
            out.delete.append(("batch/v1", "cronjobs", builders.cronjob_name(owner)))
        out.backup_status = desired or None
        out.condition = None
        return out

    try:
        schedule = cron.parse(policy.schedule, "Etc/UTC", strict=True)
    except cron.ScheduleError as error:
        desired.update(kept=0)
        out.backup_status = desired
        out.condition = ("False", "InvalidBackupSchedule", f"spec.backup.schedule: {error}")
        return out

    where = source_of(kind, body)
    problems: list[tuple[str, str]] = []
    if isinstance(where, str):
        problems.append(("BackupSourceNotReady", where))
    elif (
        policy.destination is not None
        and policy.destination.claim_name == where.claim
        and "copy" in policy.methods
    ):
        problems.append(
            (
                "InvalidBackupDestination",
                f"spec.backup.destination.claimName is {where.claim!r}, the claim being backed up: a backup "
                "must live on another claim",
            )
        )
    max_age = parse_duration(policy.retention.max_age) if policy.retention.max_age else None

    # copy: the CronJob exists exactly when the method is asked for (and the source is known).
    copy_fields: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    copy_failure: dict[str, Any] | None = None
    if "copy" in policy.methods and not problems and not isinstance(where, str):
        claim = builders.destination_claim(owner, policy)
        if claim is not None and observed.cronjob is None:
            out.create.append(claim)  # once, before the CronJob; it exists already is fine
        out.apply.append(builders.cronjob(owner, policy, where))
        copy_fields, records, copy_failure = _copy_state(policy, owner, observed.copy_pods, current)
    elif observed.cronjob is not None:
        out.delete.append(("batch/v1", "cronjobs", builders.cronjob_name(owner)))

    # volumeSnapshot: one per scheduled time, created by us; retention on the ready ones.
    last_schedule = parse_time(current.get("lastScheduleTime"))
    snap_failure = None
    snap_at = None
    if "volumeSnapshot" in policy.methods and not problems and not isinstance(where, str):
        if observed.snapshots is None:
            problems.append(
                (
                    "VolumeSnapshotCRDMissing",
                    "the cluster does not serve snapshot.storage.k8s.io/v1 VolumeSnapshots: install the "
                    "external-snapshotter CRDs and controller (or drop volumeSnapshot from spec.backup.methods)",
                )
            )
        else:
            created = parse_time((body.get("metadata") or {}).get("creationTimestamp")) or now
            due, _ = cron.missed_runs(schedule, last_schedule or created, now)
            if due is not None and not policy.suspend:
                out.create.append(
                    builders.volume_snapshot(
                        owner, policy, where.claim, at_compact=due.strftime("%Y%m%d%H%M%S")
                    )
                )
                last_schedule = due
            ready = []
            for snap in observed.snapshots:
                name = str((snap.get("metadata") or {}).get("name"))
                sst = snap.get("status") or {}
                at = _snapshot_time(snap)
                if sst.get("readyToUse") is True:
                    ready.append((at, name))
                    records.append(
                        {"method": "volumeSnapshot", "name": name, "time": _fmt(at), "readyToUse": True}
                    )
                    snap_at = max(snap_at or at, at)
                elif sst.get("error"):
                    err = sst.get("error") or {}
                    when = parse_time(err.get("time")) or at
                    if snap_failure is None or status.format_time(when) > str(snap_failure["time"]):
                        snap_failure = {
                            "time": _fmt(when),
                            "reason": "VolumeSnapshotFailed",
                            "message": f"VolumeSnapshot {name}: {err.get('message') or 'failed'}",
                        }
            for name in to_prune(ready, keep_last=policy.retention.keep_last, max_age=max_age, now=now):
                out.delete.append((builders.SNAPSHOT_API_VERSION, builders.SNAPSHOT_PLURAL, name))
                records = [r for r in records if not (r["method"] == "volumeSnapshot" and r["name"] == name)]
                ready = [r for r in ready if r[1] != name]
            copy_fields["snapshotKept"] = len(ready)

    # Status: what the runs reported, merged with what was known before (run history is trimmed).
    success_times = [
        t
        for t in (
            parse_time(current.get("lastSuccessTime")),
            parse_time(copy_fields.get("lastCopyTime")),
            snap_at,
        )
        if t is not None
    ]
    last_success = max(success_times, default=None)
    failures = [f for f in (copy_failure, snap_failure, current.get("lastFailure")) if f]
    last_failure = max(
        failures,
        key=lambda f: parse_time(f.get("time")) or dt.datetime.min.replace(tzinfo=dt.UTC),
        default=None,
    )
    kept = int(copy_fields.get("copyKept", sum(1 for r in records if r["method"] == "copy"))) + int(
        copy_fields.get("snapshotKept", 0)
    )
    desired.update(
        kept=kept,
        backups=sorted(records, key=lambda r: (str(r.get("time") or ""), r["name"])),
        nextRunTime=_fmt(schedule.next_after(now)) if not policy.suspend else None,
    )
    if last_success is not None:
        desired["lastSuccessTime"] = _fmt(last_success)
    if last_schedule is not None and "volumeSnapshot" in policy.methods:
        desired["lastScheduleTime"] = _fmt(last_schedule)
    if last_failure is not None:
        desired["lastFailure"] = dict(last_failure)
    out.backup_status = {k: v for k, v in desired.items() if v is not None}

    # Events: one per new success, one per new failure.
    if last_success is not None and _fmt(last_success) != current.get("lastSuccessTime"):
        out.events.append(
            Event("Normal", "BackupSucceeded", f"Backup taken at {_fmt(last_success)}; {kept} kept.")
        )
    if last_failure is not None and last_failure != current.get("lastFailure"):
        out.events.append(Event("Warning", str(last_failure["reason"]), str(last_failure["message"])))

    # The condition: a problem with the policy, else the newest attempt decides.
    if problems:
        reason, message = problems[0]
        out.condition = ("False", reason, message)
        before = status.get_condition((body.get("status") or {}).get("conditions"), CONDITION) or {}
        if before.get("reason") != reason:
            out.events.append(Event("Warning", reason, message))
    elif last_failure is not None and (
        last_success is None or (parse_time(last_failure.get("time")) or now) > last_success
    ):
        out.condition = ("False", str(last_failure["reason"]), str(last_failure["message"]))
    elif last_success is not None:
        out.condition = ("True", "BackupSucceeded", f"Last backup {_fmt(last_success)}; {kept} kept.")
    else:
        out.condition = (
            "Unknown",
            "NoBackupYet",
            f"First backup due {desired['nextRunTime'] or 'when resumed'}.",
        )
    return out


def backup_patch(current: Mapping[str, Any], desired: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The merge patch of status.backup from `current` to `desired`; None when nothing changes.

    A merge patch leaves out keys alone, so keys that must go (a restore no longer asked for, so the
    same restore can be asked for again) are sent as null.
    """
    if desired is None:
        return {} if current else None  # {}: the handler sends `backup: null`
    if dict(current) == dict(desired):
        return None
    return {**{k: None for k in current if k not in desired}, **desired}


def conditions_with(
    body: Mapping[str, Any], condition: tuple[str, str, str] | None, *, now: dt.datetime
) -> list[dict[str, Any]] | None:
    """The object's conditions with BackupHealthy set (or removed); None when nothing changes."""
    st = body.get("status") or {}
    current = list(st.get("conditions") or [])
    generation = (body.get("metadata") or {}).get("generation")
    if condition is None:
        if status.get_condition(current, CONDITION) is None:
            return None
        return [c for c in current if c.get("type") != CONDITION]
    state: status.ConditionStatus = (
        "True" if condition[0] == "True" else "False" if condition[0] == "False" else "Unknown"
    )
    new = status.set_condition(
        current, CONDITION, state, condition[1], condition[2][:32768], observed_generation=generation, now=now
    )
    old = status.get_condition(current, CONDITION)
    mine = status.get_condition(new, CONDITION)
    return None if old == mine else new
