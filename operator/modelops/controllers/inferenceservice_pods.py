"""Serving pods as the InferenceService controller sees them: track, version, readiness, why not running.

A pod that cannot run says why in several places: the server's own JSON termination message (e.g.
`ArtifactDigestMismatch`), the container's waiting reason (CrashLoopBackOff, CreateContainerConfigError
for a missing Secret key), the pod's phase, or the scheduler's Unschedulable condition. `view` reads
them all into one (reason, message), which the status and the canary analysis report as is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.serveconfig import (
    REASON_ARTIFACT_DIGEST_MISMATCH,
    REASON_ARTIFACT_LOAD_FAILED,
    REASON_ARTIFACT_NOT_FOUND,
    REASON_DEVICE_UNAVAILABLE,
    REASON_INVALID_SERVE_CONFIG,
)
from modelops.builders import inferenceservice as builders
from modelops.builders import llm
from modelops.builders.modelstore import FETCH_CONTAINER
from modelops.controllers import children

# Reasons a serving pod gives for not starting that no restart can cure, with what to do.
PERMANENT_REASONS = {
    REASON_ARTIFACT_DIGEST_MISMATCH: "The artifact does not match its ModelVersion; re-verify or re-register it.",
    REASON_ARTIFACT_NOT_FOUND: "The artifact is gone from the model store (or its claim); re-verify the "
    "ModelVersion (annotation modelops.dev/reverify) to publish it again, or re-register it.",
    REASON_ARTIFACT_LOAD_FAILED: "The artifact does not load as its format; re-verify or re-register it.",
    REASON_DEVICE_UNAVAILABLE: "The pod has no usable GPU: check the node's device plugin and the image's "
    "CUDA build, or set resources.gpus to 0.",
    REASON_INVALID_SERVE_CONFIG: "The server refused its configuration (e.g. the auth tokens file is "
    "empty): fix spec.auth's Secret or report the message.",
    **llm.PERMANENT_REASONS,
}
_CRASH_WAITING = ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")
# Reasons only a human can fix (a Secret or claim to create, a key to add, an image): Stalled while no
# pod serves; the object recovers by itself once the kubelet can start the pod (controllers/children).
HUMAN_REASONS = (
    children.REASON_SECRET_NOT_FOUND,
    children.REASON_CLAIM_NOT_FOUND,
    "FailedMount",
    *children.KUBELET_WAITING,
)


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


def view(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> PodView:
    """The pod as the controller needs it; `events` are the namespace's FailedMount events."""
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    lbl = meta.get("labels") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or ())
    crash: tuple[str, str] | None = None
    # The init container that fetches the artifact from the model store says why it refused the same way.
    statuses = [
        *(cs for cs in st.get("initContainerStatuses") or () if cs.get("name") == FETCH_CONTAINER),
        *(cs for cs in st.get("containerStatuses") or () if cs.get("name") == builders.CONTAINER),
    ]
    for cs in statuses:
        if crash is not None:
            break
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
    problem = children.pod_problem(pod, events)
    if problem is not None and (crash is None or crash[0] in children.KUBELET_WAITING):
        # The kubelet's own words: a missing Secret is SecretNotFound, a missing claim ClaimNotFound.
        crash = (problem.reason, problem.message)
    name = str(meta.get("name"))
    return PodView(
        name=name,
        track=str(lbl.get(builders.LABEL_TRACK) or ""),
        model_version=str(lbl.get(builders.LABEL_MODELVERSION) or ""),
        ready=ready and not meta.get("deletionTimestamp"),
        terminating=bool(meta.get("deletionTimestamp")),
        ip=st.get("podIP"),
        crash=crash,
    )
