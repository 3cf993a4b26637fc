"""Status conventions: what kubectl wait, kstatus and Argo CD will read from our objects."""

from __future__ import annotations

import datetime

import pytest

from modelops import status

T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def test_new_condition_gets_transition_time_in_rfc3339_utc() -> None:
    conditions = status.set_condition(
        [], "Ready", "False", "Pending", "waiting", observed_generation=3, now=T0
    )
    assert conditions == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": "waiting",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "observedGeneration": 3,
        }
    ]


def test_transition_time_kept_when_status_unchanged_even_if_reason_changes() -> None:
    first = status.set_condition([], "Ready", "False", "Pending", "a", observed_generation=1, now=T0)
    second = status.set_condition(first, "Ready", "False", "Training", "b", observed_generation=2, now=T1)
    assert second[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == (
        "Training",
        "b",
        2,
    )


def test_transition_time_moves_when_status_flips() -> None:
    first = status.set_condition([], "Ready", "False", "Pending", "a", observed_generation=1, now=T0)
    second = status.set_condition(first, "Ready", "True", "Serving", "b", observed_generation=1, now=T1)
    assert second[0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_set_condition_does_not_mutate_input_and_keeps_other_types_sorted() -> None:
    original = [
        {
            "type": "Stalled",
            "status": "False",
            "reason": "NotStalled",
            "message": "",
            "lastTransitionTime": "x",
        }
    ]
    result = status.set_condition(original, "Ready", "True", "Done", "ok", observed_generation=None, now=T0)
    assert [c["type"] for c in result] == ["Ready", "Stalled"]
    assert len(original) == 1
    assert "observedGeneration" not in result[0]
    # Order of setting does not change the result, so equal statuses compare equal.
    a = status.set_condition([], "B", "True", "X", "", observed_generation=1, now=T0)
    a = status.set_condition(a, "A", "True", "X", "", observed_generation=1, now=T0)
    b = status.set_condition([], "A", "True", "X", "", observed_generation=1, now=T0)
    b = status.set_condition(b, "B", "True", "X", "", observed_generation=1, now=T0)
    assert a == b


@pytest.mark.parametrize("reason", ["", "invalid spec", "1Bad", "Trailing,", "Bad-Dash"])
def test_reason_must_be_camel_case(reason: str) -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        status.set_condition([], "Ready", "False", reason, "m", observed_generation=1, now=T0)


def test_status_must_be_a_kubernetes_condition_status() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        status.set_condition([], "Ready", "yes", "R", "m", observed_generation=1, now=T0)  # type: ignore[arg-type]


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        status.set_condition(
            [], "Ready", "True", "R", "m", observed_generation=1, now=datetime.datetime(2026, 1, 1)
        )


def test_get_condition() -> None:
    conditions = status.set_condition([], "Ready", "True", "R", "m", observed_generation=1, now=T0)
    assert status.get_condition(conditions, "Ready") == conditions[0]
    assert status.get_condition(conditions, "Stalled") is None
    assert status.get_condition(None, "Ready") is None


def _by_type(s: dict[str, object]) -> dict[str, dict[str, object]]:
    conditions = s["conditions"]
    assert isinstance(conditions, list)
    return {c["type"]: c for c in conditions}


def test_progressing_is_in_progress_for_kstatus_and_not_ready() -> None:
    s = status.summarize(status.progressing("Pending", "accepted"), generation=2, conditions=None, now=T0)
    c = _by_type(s)
    assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == (
        "False",
        "True",
        "False",
    )
    assert c["Reconciling"]["reason"] == "Pending"
    assert s["observedGeneration"] == 2 and s["phase"] == "Pending"
    assert status.kstatus(s, 2) == "InProgress"


def test_stalled_is_failed_for_kstatus_and_names_the_reason() -> None:
    s = status.summarize(
        status.stalled("InvalidSpec", "spec.replicas: fix it"), generation=1, conditions=None, now=T0
    )
    c = _by_type(s)
    assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == (
        "False",
        "False",
        "True",
    )
    assert c["Stalled"]["reason"] == c["Ready"]["reason"] == "InvalidSpec"
    assert status.kstatus(s, 1) == "Failed"


def test_ready_is_current_for_kstatus() -> None:
    s = status.summarize(status.ready("Serving", "ok"), generation=4, conditions=None, now=T0)
    assert _by_type(s)["Ready"]["status"] == "True"
    assert status.kstatus(s, 4) == "Current"


def test_new_generation_not_yet_observed_is_in_progress() -> None:
    s = status.summarize(status.ready("Serving", "ok"), generation=4, conditions=None, now=T0)
    assert status.kstatus(s, 5) == "InProgress"


def test_summarize_twice_is_identical_so_no_status_write_is_needed() -> None:
    first = status.summarize(status.progressing("Pending", "a"), generation=1, conditions=None, now=T0)
    second = status.summarize(
        status.progressing("Pending", "a"), generation=1, conditions=first["conditions"], now=T1
    )
    assert second == first
    assert status.status_changes(first, second) == {}


def test_summarize_keeps_foreign_conditions() -> None:
    extra = status.set_condition(
        [], "ArtifactVerified", "True", "DigestMatches", "ok", observed_generation=1, now=T0
    )
    s = status.summarize(status.progressing("Pending", "a"), generation=1, conditions=extra, now=T1)
    assert "ArtifactVerified" in _by_type(s)


def test_recovery_from_stalled_moves_only_the_flipped_transition_times() -> None:
    s1 = status.summarize(status.stalled("InvalidSpec", "bad"), generation=1, conditions=None, now=T0)
    s2 = status.summarize(
        status.progressing("Pending", "ok"), generation=2, conditions=s1["conditions"], now=T1
    )
    c = _by_type(s2)
    assert c["Stalled"]["status"] == "False" and c["Stalled"]["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert c["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # False before and after
    assert status.kstatus(s2, 2) == "InProgress"


def test_status_changes_returns_only_differing_fields() -> None:
    current = {"phase": "Pending", "observedGeneration": 1, "conditions": [], "foreign": "kept"}
    desired = {"phase": "Pending", "observedGeneration": 2, "conditions": []}
    assert status.status_changes(current, desired) == {"observedGeneration": 2}
    assert status.status_changes(None, desired) == desired


def test_conclusion_refuses_non_camel_case_reason() -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        status.progressing("not camel", "m")


def _obj(generation: int, st: dict[str, object] | None) -> dict[str, object]:
    obj: dict[str, object] = {"metadata": {"generation": generation}}
    if st is not None:
        obj["status"] = st
    return obj


def test_argocd_sees_pending_as_progressing_stalled_as_degraded_ready_as_healthy() -> None:
    pending = status.summarize(
        status.progressing("Pending", "accepted"), generation=1, conditions=None, now=T0
    )
    broken = status.summarize(
        status.stalled("InvalidSpec", "spec.x: fix"), generation=1, conditions=None, now=T0
    )
    done = status.summarize(status.ready("Serving", "serving v3"), generation=1, conditions=None, now=T0)
    assert status.argocd_health(_obj(1, None))[0] == "Progressing"
    assert status.argocd_health(_obj(1, pending)) == ("Progressing", "Pending: accepted")
    assert status.argocd_health(_obj(1, broken)) == ("Degraded", "InvalidSpec: spec.x: fix")
    assert status.argocd_health(_obj(1, done)) == ("Healthy", "serving v3")
    # A Ready status written for an older spec is not healthy yet.
    assert status.argocd_health(_obj(2, done))[0] == "Progressing"
