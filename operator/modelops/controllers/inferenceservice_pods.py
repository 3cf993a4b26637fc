"""Serving pods as the InferenceService controller sees them: track, version, readiness, why not running.

A pod that cannot run says why in several places: the server's own JSON termination message (e.g.
`ArtifactDigestMismatch`), the container's waiting reason (CrashLoopBackOff, CreateContainerConfigError
for a missing Secret key), the pod's phase, or the scheduler's Unschedulable condition. `view` reads
them all into one (reason, message), which the status and the canary analysis report as is.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.serveconfig import (
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
)
from modelops.builders import inferenceservice as builders

# Reasons a serving pod gives for not starting that no restart can cure.
PERMANENT_REASONS = (REASON_ARTIFACT_DIGEST_MISMATCH, REASON_ARTIFACT_NOT_FOUND, REASON_ARTIFACT_LOAD_FAILED)
_CRASH_WAITING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")
# Reasons only a human can fix (a Secret or ConfigMap to create, a key to add): Stalled while no pod
# serves, and the object recovers by itself once the kubelet can start the pod.
REASON_SECRET_NOT_FOUND = "SecretNotFound"
REASON_FAILED_MOUNT = "FailedMount"
HUMAN_REASONS = (REASON_SECRET_NOT_FOUND, REASON_FAILED_MOUNT, "CreateContainerConfigError")
_SECRET_MISSING = re.compile(r'secrets? "([^"]+)" not found')


def refine(reason: str, message: str) -> tuple[str, str]:
    """A missing Secret, whatever the kubelet's wording (a volume or an env key), is SecretNotFound."""
    if _SECRET_MISSING.search(message):
        return REASON_SECRET_NOT_FOUND, message
    return reason, message


def mount_failures(events: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The latest FailedMount message of each pod, from the namespace's Events (kubelet's own words)."""
    latest: dict[str, tuple[str, str]] = {}
    for event in events:
        if event.get("reason") != REASON_FAILED_MOUNT:
            continue
        pod = str((event.get("involvedObject") or {}).get("name") or "")
        stamp = str(event.get("lastTimestamp") or event.get("eventTime") or "")
        if pod and (pod not in latest or stamp >= latest[pod][0]):
            latest[pod] = (stamp, str(event.get("message") or ""))
    return {pod: message for pod, (_, message) in latest.items()}


@dataclasses.dataclass(frozen=True)
class PodView:
    name: str
    track: str
    model_version: str
    ready: bool
    terminating: bool
    ip: str | None
    crash: tuple[str, str] | None  # (reason, message) of a pod that cannot run


def _termination(terminated: Mapping[str, Any]) -> tuple[str, str]:
    """The server's own reason from its termination message (JSON), else the container's."""
    text = str(terminated.get("message") or "")
    try:
        parsed = json.loads(text) if text.strip().startswith("{") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("reason"):
        return str(parsed["reason"]), str(parsed.get("message") or "")[:1024]
    reason = str(terminated.get("reason") or "Error")
    code = terminated.get("exitCode")
    tail = text.strip().splitlines()[-1][:512] if text.strip() else ""
    return reason, f"exited with code {code}" + (f": {tail}" if tail else "")


def view(pod: Mapping[str, Any], mounts: Mapping[str, str] | None = None) -> PodView:
    """The pod as the controller needs it; `mounts` are FailedMount messages by pod name."""
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    lbl = meta.get("labels") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or ())
    crash: tuple[str, str] | None = None
    for cs in st.get("containerStatuses") or ():
        if cs.get("name") != builders.CONTAINER:
            continue
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        waiting = state.get("waiting") or {}
        if state.get("terminated") and (state["terminated"].get("exitCode") or 0) != 0:
            crash = _termination(state["terminated"])
        elif waiting.get("reason") in _CRASH_WAITING:
            crash = (
                _termination(last) if last else (str(waiting["reason"]), str(waiting.get("message") or ""))
            )
        elif last and int(cs.get("restartCount") or 0) > 0 and not cs.get("ready"):
            crash = _termination(last)
    if st.get("phase") == "Failed" and crash is None:
        crash = (str(st.get("reason") or "PodFailed"), str(st.get("message") or ""))
    for c in st.get("conditions") or ():
        if (
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ):
            crash = ("Unschedulable", str(c.get("message") or "no node fits the pod"))
    name = str(meta.get("name"))
    started = any((cs.get("state") or {}).get("running") for cs in st.get("containerStatuses") or ())
    if crash is None and not ready and not started and name in (mounts or {}):
        crash = (REASON_FAILED_MOUNT, (mounts or {})[name])
    if crash is not None:
        crash = refine(*crash)
    return PodView(
        name=name,
        track=str(lbl.get(builders.LABEL_TRACK) or ""),
        model_version=str(lbl.get(builders.LABEL_MODELVERSION) or ""),
        ready=ready and not meta.get("deletionTimestamp"),
        terminating=bool(meta.get("deletionTimestamp")),
        ip=st.get("podIP"),
        crash=crash,
    )
