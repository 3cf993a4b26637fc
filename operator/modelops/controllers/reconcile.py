"""From an object as the API server sent it to the status and events the operator writes back.

Pure functions only: the kopf handlers call `reconcile` and apply what it returns, so everything the
operator decides about an object can be tested with plain dicts and no server.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import pydantic

from modelops import status

SpecT = TypeVar("SpecT", bound=pydantic.BaseModel)

INVALID_SPEC = "InvalidSpec"
# Enough to name every broken field of a realistic spec without flooding `kubectl describe`.
_MAX_REPORTED_ERRORS = 5

_HINTS = {
    "extra_forbidden": "unknown field: remove it or fix its spelling",
    "missing": "required field is missing: add it",
}


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object (type Normal or Warning)."""

    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the handler must do: merge `status_patch` into the status (if not empty), post `event`."""

    conclusion: status.Conclusion
    status_patch: dict[str, Any]
    event: Event | None

    @property
    def result(self) -> str:
        """The `result` label of the reconcile metrics: ready, progressing or stalled."""
        return self.conclusion.state.value.lower()


@dataclasses.dataclass(frozen=True)
class KindLogic(Generic[SpecT]):
    """The per-kind part of reconciling: how to read the spec and what to conclude from it."""

    kind: str
    spec_model: type[SpecT]
    decide: Callable[[SpecT], status.Conclusion]


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def describe_validation_error(kind: str, error: pydantic.ValidationError) -> str:
    """A message naming each bad field and what to do about it.

    Input values are left out on purpose: a spec may carry credentials in env values, and events and
    conditions are readable by anyone who can read the object.
    """
    problems = []
    errors = error.errors(include_url=False, include_input=False)
    for item in errors[:_MAX_REPORTED_ERRORS]:
        hint = _HINTS.get(item["type"], item["msg"])
        problems.append(f"{_field_path(tuple(item['loc']))}: {hint}")
    if len(errors) > _MAX_REPORTED_ERRORS:
        problems.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return (
        f"The {kind} spec cannot be used: {'; '.join(problems)}. Fix the spec and apply it again "
        f"(`kubectl explain {kind.lower()}.spec` lists the fields); this operator version may also be older "
        "than the CRD installed in the cluster."
    )


def conclude(logic: KindLogic[Any], spec: Mapping[str, Any] | None) -> status.Conclusion:
    """Parse the spec and let the kind decide; a spec we cannot parse stalls the object, never raises."""
    try:
        parsed = logic.spec_model.model_validate(dict(spec or {}))
    except pydantic.ValidationError as error:
        return status.stalled(INVALID_SPEC, describe_validation_error(logic.kind, error), phase="Failed")
    return logic.decide(parsed)


def _signature(st: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What makes a status a different state for a human: phase and Ready/Stalled with their reasons."""
    if not st or not st.get("conditions"):
        return None
    conditions = st.get("conditions")
    parts: list[Any] = [st.get("phase")]
    for type_ in (status.READY, status.RECONCILING, status.STALLED):
        condition = status.get_condition(conditions, type_) or {}
        parts += [condition.get("status"), condition.get("reason")]
    return tuple(parts)


def reconcile(logic: KindLogic[Any], body: Mapping[str, Any], *, now: datetime.datetime) -> Outcome:
    """The status patch and event for one object, given its current body."""
    conclusion = conclude(logic, body.get("spec"))
    current = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    desired = status.summarize(
        conclusion, generation=generation, conditions=current.get("conditions"), now=now
    )
    patch = status.status_changes(current, desired)
    event = None
    if _signature(current) != _signature(desired):
        event_type = "Warning" if conclusion.state is status.State.STALLED else "Normal"
        event = Event(event_type, conclusion.reason, conclusion.message)
    return Outcome(conclusion, patch, event)
