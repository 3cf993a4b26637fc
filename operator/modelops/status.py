"""Kubernetes-convention status for every modelops resource, as pure functions.

Users judge our objects with tools we do not control: `kubectl wait --for=condition=Ready`, kstatus
(kpt, Flux, `kubectl apply --wait`-style tooling) and Argo CD health checks. They all read the same
few fields, so every controller builds its status here instead of by hand:

- `observedGeneration` equal to `metadata.generation` says the controller has seen the latest spec;
  kstatus reports `InProgress` until it matches.
- `Ready` is the normal-true summary condition that `kubectl wait` and Argo CD look at.
- `Reconciling` and `Stalled` are the kstatus abnormal-true conditions: `Reconciling=True` means
  work is under way (kstatus `InProgress`), `Stalled=True` means the controller cannot make progress
  without a human (kstatus `Failed`). They are kept present with status "False" when they do not
  apply, so `kubectl get -o yaml` always shows all three.
- `phase` is for humans and printer columns only; no tool should branch on it.

A controller decides a `Conclusion` (ready, progressing or stalled, with a reason and a message) and
`summarize` turns it into the status fields. Applying the same conclusion twice gives identical
output (lastTransitionTime only moves when a condition's status flips), so callers can compare and
skip writes that would change nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# metav1.Condition validation: the API server rejects other reasons on built-in types, and tools
# match on them, so we hold ourselves to the same rule.
_REASON_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_MAX_REASON = 1024
_MAX_MESSAGE = 32768
_STATUSES: frozenset[str] = frozenset({"True", "False", "Unknown"})


def format_time(now: datetime.datetime) -> str:
    """RFC 3339 in UTC with second precision, the wire format of metav1.Time."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (use datetime.now(datetime.UTC))")
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_condition_args(type_: str, status: str, reason: str, message: str) -> None:
    if not type_:
        raise ValueError("condition type must not be empty")
    if status not in _STATUSES:
        raise ValueError(f"condition {type_}: status must be True, False or Unknown, got {status!r}")
    if len(reason) > _MAX_REASON or not _REASON_RE.match(reason):
        raise ValueError(
            f"condition {type_}: reason {reason!r} must be CamelCase (letters, digits, '_', ',' or ':', "
            "starting with a letter), e.g. 'InvalidSpec'"
        )
    if len(message) > _MAX_MESSAGE:
        raise ValueError(
            f"condition {type_}: message is {len(message)} characters, the limit is {_MAX_MESSAGE}"
        )


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    """The condition of this type, or None when it is absent."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return dict(condition)
    return None


def is_condition_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    condition = get_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    observed_generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """A new list of conditions with this one set; the input is not modified.

    lastTransitionTime is kept when the status does not change (a new reason or message is not a
    transition), which is what makes repeated reconciles idempotent. The result is sorted by type so
    two equal sets of conditions always compare equal, whatever order they were set in.
    """
    _check_condition_args(type_, status, reason, message)
    previous = get_condition(conditions, type_)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = str(previous["lastTransitionTime"])
    else:
        transition = format_time(now)
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    others = [dict(c) for c in conditions or () if c.get("type") != type_]
    return sorted([*others, condition], key=lambda c: str(c.get("type", "")))


class State(enum.Enum):
    """What a controller concluded about one object, in kstatus terms."""

    READY = "Ready"  # kstatus Current: nothing left to do.
    PROGRESSING = "Progressing"  # kstatus InProgress: work under way or waiting for something.
    STALLED = "Stalled"  # kstatus Failed: stuck until a human changes something.
    # kstatus Current, but not Ready: at rest because the user asked for it (a suspended job), so
    # `kubectl wait`, Flux and kstatus-based tools do not wait on it forever.
    SUSPENDED = "Suspended"


@dataclasses.dataclass(frozen=True)
class Conclusion:
    """A controller's verdict on one object: the input of `summarize`.

    `reason` is CamelCase and machine-matchable; `message` is a sentence for a human, naming the
    field and the fix when the user has to act.
    """

    state: State
    reason: str
    message: str
    phase: str

    def __post_init__(self) -> None:
        _check_condition_args("Conclusion", "True", self.reason, self.message)
        if not self.phase:
            raise ValueError("phase must not be empty")


def ready(reason: str, message: str, *, phase: str = "Ready") -> Conclusion:
    return Conclusion(State.READY, reason, message, phase)


def progressing(reason: str, message: str, *, phase: str = "Pending") -> Conclusion:
    return Conclusion(State.PROGRESSING, reason, message, phase)


def suspended(reason: str, message: str, *, phase: str = "Suspended") -> Conclusion:
    return Conclusion(State.SUSPENDED, reason, message, phase)


def stalled(reason: str, message: str, *, phase: str = "Failed") -> Conclusion:
    return Conclusion(State.STALLED, reason, message, phase)


def summarize(
    conclusion: Conclusion,
    *,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status fields (observedGeneration, phase, conditions) that express a conclusion.

    Other conditions already present (set by later, kind-specific logic) are kept as they are.
    """
    state = conclusion.state
    reason, message = conclusion.reason, conclusion.message
    is_ready: ConditionStatus = "True" if state is State.READY else "False"
    is_reconciling: ConditionStatus = "True" if state is State.PROGRESSING else "False"
    is_stalled: ConditionStatus = "True" if state is State.STALLED else "False"

    result: list[dict[str, Any]] = [dict(c) for c in conditions or ()]
    result = set_condition(result, READY, is_ready, reason, message, observed_generation=generation, now=now)
    # The abnormal-true conditions carry the real reason only while true; when false, a fixed reason
    # keeps them from churning with every change of the Ready reason.
    result = set_condition(
        result,
        RECONCILING,
        is_reconciling,
        reason if is_reconciling == "True" else "Reconciled",
        message if is_reconciling == "True" else "The controller has no pending work for this generation.",
        observed_generation=generation,
        now=now,
    )
    result = set_condition(
        result,
        STALLED,
        is_stalled,
        reason if is_stalled == "True" else "NotStalled",
        message if is_stalled == "True" else "The controller is able to make progress.",
        observed_generation=generation,
        now=now,
    )
    status: dict[str, Any] = {"phase": conclusion.phase, "conditions": result}
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def status_changes(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields of `desired` that differ from `current` (empty: nothing to write).

    Returned as a JSON merge patch of the status: fields we do not manage are left alone.
    """
    current = current or {}
    return {key: value for key, value in desired.items() if current.get(key) != value}


def kstatus(status: Mapping[str, Any] | None, generation: int | None) -> str:
    """How kstatus judges an object with this status: Current, InProgress or Failed.

    A small re-statement of the kstatus generic rules, used by tests to check that what we write is
    read the way we mean it.
    """
    status = status or {}
    if generation is not None and status.get("observedGeneration") != generation:
        return "InProgress"
    conditions = status.get("conditions") or []
    if is_condition_true(conditions, RECONCILING):
        return "InProgress"
    if is_condition_true(conditions, STALLED):
        return "Failed"
    return "Current"


def argocd_health(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(health, message) as the Lua health checks in docs/argocd.md compute them for a live object.

    Argo CD has no health check for unknown CRDs; users put the docs' Lua into `argocd-cm`. This is the
    same rule in Python (Healthy, Progressing or Degraded), the oracle tests/unit/test_argocd_health.py
    runs the docs' Lua against with the real lua5.4.
    """
    st = obj.get("status")
    if st is None:
        return "Progressing", "Waiting for the modelops operator to report status"
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and st.get("observedGeneration") != generation:
        return "Progressing", "The modelops operator has not observed the latest spec yet"
    conditions = st.get("conditions")
    stalled_c = get_condition(conditions, STALLED)
    if stalled_c is not None and stalled_c.get("status") == "True":
        return "Degraded", f"{stalled_c.get('reason')}: {stalled_c.get('message') or ''}"
    ready_c = get_condition(conditions, READY)
    if ready_c is not None and ready_c.get("status") == "True":
        return "Healthy", str(ready_c.get("message") or "")
    if ready_c is not None:
        return "Progressing", f"{ready_c.get('reason')}: {ready_c.get('message') or ''}"
    return "Progressing", "Waiting for the modelops operator to report status"
