"""Why a child cannot exist or cannot run, as a condition a human can act on, never as a hung state.

Three kinds of blockage, one mechanism for every kind of object:

- **The API server refuses a child** (400 Bad Request, 403 Forbidden, 422 Invalid: a ResourceQuota,
  the namespace's Pod Security level, an admission webhook, a missing ServiceAccount, a field the
  server validates and we do not). `Cluster.create`, `create_at` and `apply` raise such a refusal as a
  typed `ChildRejected` (still an `ApiException`, with the same status) carrying the child's kind and
  name and the server's own message; `creating(kind, name)` does the same around any other call. The
  kind's handler catches it and reports `rejected_conclusion(...)`: Stalled=True, reason
  `ChildRejected`. Nothing is retried in a loop with tracebacks: the kind's sync timer tries the
  create again on its next look, so when an admin raises the quota the object proceeds by itself.
- **A dependency the pods need does not exist**: a PersistentVolumeClaim (`pod_claims`, checked with a
  GET before the pods are created, so the answer comes within one reconcile, not after a pod sits in
  ContainerCreating) -> `ClaimNotFound`.
- **The kubelet cannot start a pod**: `pod_problem` reads what the kubelet reports on the pod
  (waiting reasons CreateContainerConfigError, CreateContainerError, ErrImagePull, ImagePullBackOff,
  InvalidImageName) and in its events (FailedMount, FailedToRetrieveImagePullSecret), with the
  kubelet's message. A missing Secret (env `secretKeyRef`, a secret volume, an `imagePullSecrets`
  entry behind a failing pull) shows as `SecretNotFound`, a missing claim as `ClaimNotFound`.
  Secrets are never read by the operator (no RBAC on Secrets): the kubelet is the one who knows.

Every blockage is `Stalled=True` (only a human can fix it) and clears itself on the next look once
the human did: the handlers look again on their sync timer without any change to the object.
`ChildRejected` is logged as one line (the transition's event), never as a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import kubernetes

from modelops import status

REASON_CHILD_REJECTED = "ChildRejected"
REASON_CLAIM_NOT_FOUND = "ClaimNotFound"
REASON_SECRET_NOT_FOUND = "SecretNotFound"
REASON_SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
_MISSING_REASONS = {
    "PersistentVolumeClaim": REASON_CLAIM_NOT_FOUND,
    "Secret": REASON_SECRET_NOT_FOUND,
    "VolumeSnapshot": REASON_SNAPSHOT_NOT_FOUND,
}

# HTTP statuses of a refusal a retry cannot fix (unlike 409 Conflict, 429 or a 5xx).
REFUSALS = {400: "BadRequest", 403: "Forbidden", 422: "Invalid"}
# Messages are shown in conditions and events: enough for the server's reason, never a whole object.
_MAX_MESSAGE = 1024

# Container waiting reasons of the kubelet that need a human (a Secret, an image, a config).
KUBELET_WAITING = (
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
)
# Warning events of the kubelet about a pod that say what a human must fix.
KUBELET_EVENTS = ("FailedMount", "FailedToRetrieveImagePullSecret")
_IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff")
_SECRET_RE = re.compile(r'secrets? "([^"]+)" not found')
_CLAIM_RE = re.compile(r'persistentvolumeclaims? "([^"]+)" not found')


class ChildRejected(kubernetes.client.ApiException):
    """The API server refused to create or change a child; `message` is the server's own.

    An `ApiException` still (same `status`), so code that looks at API errors keeps working.
    """

    def __init__(self, kind: str, name: str, code: int, reason: str, message: str) -> None:
        super().__init__(status=code, reason=reason)
        self.kind, self.name, self.code, self.message = kind, name, code, message
        self.reason = reason
        self.body = json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message})

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.code} {self.reason}: {self.message}"


def server_message(error: kubernetes.client.ApiException) -> tuple[str, str]:
    """(reason, message) of the API server's Status answer, or the HTTP reason when it sent none."""
    reason = REFUSALS.get(int(error.status or 0), str(error.reason or "Error"))
    message = str(error.reason or "")
    try:
        answer = json.loads(error.body or b"{}")
    except (TypeError, ValueError):
        answer = None
    if isinstance(answer, dict):
        reason = str(answer.get("reason") or reason)
        message = str(answer.get("message") or message)
    return reason, message[:_MAX_MESSAGE]


def refusal(error: BaseException, kind: str, name: str) -> ChildRejected | None:
    """The typed refusal of an API error, or None when it is not one (conflict, server error ...)."""
    if isinstance(error, ChildRejected):
        return error
    if not isinstance(error, kubernetes.client.ApiException) or error.status not in REFUSALS:
        return None
    reason, message = server_message(error)
    return ChildRejected(kind, name, int(error.status), reason, message)


@contextlib.contextmanager
def creating(kind: str, name: str) -> Iterator[None]:
    """Run a create/apply of child `kind`/`name`; a refusal by the API server raises `ChildRejected`."""
    try:
        yield
    except kubernetes.client.ApiException as error:
        rejected = refusal(error, kind, name)
        if rejected is None:
            raise
        raise rejected from None


def rejected_conclusion(error: ChildRejected, *, phase: str) -> status.Conclusion:
    """Stalled/ChildRejected with the API server's message and what typically causes it."""
    hint = {
        403: "a ResourceQuota or LimitRange, the namespace's Pod Security level, a missing ServiceAccount "
        "or an admission webhook",
        422: "a field the API server validates (see its message)",
    }.get(error.code, "the request")
    return status.stalled(
        REASON_CHILD_REJECTED,
        f"The API server refused {error.kind} {error.name} ({error.code} {error.reason}): "
        f"{_sentence(error.message)} Fix {hint}; the operator tries again by itself.",
        phase=phase,
    )


@dataclasses.dataclass(frozen=True)
class Missing:
    """A dependency of the pods that does not exist; `field` is where the spec names it."""

    kind: str
    name: str
    field: str


def missing_conclusion(missing: Sequence[Missing], *, phase: str) -> status.Conclusion | None:
    """Stalled/ClaimNotFound (SecretNotFound, SnapshotNotFound: by the first) naming every missing object,
    or None when none is."""
    if not missing:
        return None
    reason = _MISSING_REASONS.get(missing[0].kind, f"{missing[0].kind}NotFound")
    named = "; ".join(f'{m.kind} "{m.name}" ({m.field})' for m in missing)
    return status.stalled(
        reason,
        f"Not found in this namespace: {named}. Create it (or fix the name in the spec); the job "
        "proceeds by itself once it exists.",
        phase=phase,
    )


def pod_claims(pod: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(claim name, volume name) of every PersistentVolumeClaim volume of a pod manifest."""
    out = []
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            out.append((str(claim), str(volume.get("name"))))
    return out


@dataclasses.dataclass(frozen=True)
class PodProblem:
    """Why the kubelet cannot start a pod, in its own words."""

    pod: str
    reason: str
    message: str

    def conclusion(self, *, phase: str) -> status.Conclusion:
        return status.stalled(
            self.reason,
            f"Pod {self.pod} cannot start: {_sentence(self.message)} Fix it (create the missing object, "
            "fix the image or its pull secret); the pod starts by itself once it is fixed.",
            phase=phase,
        )


def _classify(kubelet_reason: str, message: str) -> str:
    if _SECRET_RE.search(message):
        return REASON_SECRET_NOT_FOUND
    if _CLAIM_RE.search(message):
        return REASON_CLAIM_NOT_FOUND
    return kubelet_reason


def pod_problem(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> PodProblem | None:
    """What keeps a pending pod from starting, from its status and its Warning events (newest wins).

    None for a pod that runs, finished, or is only on its way (pulling, ContainerCreating with no
    FailedMount yet): those are progress, not a problem.
    """
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    name = str(meta.get("name"))
    if st.get("phase") not in (None, "Pending") or meta.get("deletionTimestamp"):
        return None
    uid = meta.get("uid")
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("name") == name
        and (uid is None or (e.get("involvedObject") or {}).get("uid") in (None, uid))
    ]
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in st.get(key) or ():
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in KUBELET_WAITING:
                message = str(waiting.get("message") or reason)[:_MAX_MESSAGE]
                pull_secret = _latest(mine, "FailedToRetrieveImagePullSecret")
                if reason in _IMAGE_PULL and pull_secret is not None:
                    # A private image whose imagePullSecrets do not exist: the pull fails for that.
                    said = str(pull_secret.get("message") or "")[:_MAX_MESSAGE]
                    return PodProblem(name, REASON_SECRET_NOT_FOUND, f"{reason}: {message}; {said}")
                return PodProblem(name, _classify(reason, message), f"{reason}: {message}")
    for c in st.get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            message = str(c.get("message") or "")
            if _CLAIM_RE.search(message):
                return PodProblem(name, REASON_CLAIM_NOT_FOUND, f"Unschedulable: {message}"[:_MAX_MESSAGE])
    mount = _latest(mine, "FailedMount")
    if mount is not None:
        message = str(mount.get("message") or "")[:_MAX_MESSAGE]
        return PodProblem(name, _classify("FailedMount", message), f"FailedMount: {message}")
    return None


def _latest(events: Sequence[Mapping[str, Any]], reason: str) -> Mapping[str, Any] | None:
    found = [e for e in events if e.get("reason") == reason]
    return (
        max(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")) if found else None
    )


def first_problem(
    pods: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()
) -> PodProblem | None:
    """The first pod (by name) the kubelet cannot start, if any."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        problem = pod_problem(pod, events)
        if problem is not None:
            return problem
    return None


def has_pending(pods: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any pod waits to start (only then are its events worth a list call)."""
    return any((p.get("status") or {}).get("phase") in (None, "Pending") for p in pods)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."
