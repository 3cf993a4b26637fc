"""The admission rules agree with the code that acts on what they admit.

Backup schedules: the CRD's CEL rule (run by `modelops_local.schema`, the engine of the local API server)
and the operator's strict parser give the same verdict on a corpus of valid and invalid schedules,
hand-written and generated. Name limits: the longest name each CRD admits is the longest name whose
children the builders can really create.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from modelops import cron
from modelops.api import KINDS, TRAININGJOB
from modelops.api.common import NAME_LIMITS
from modelops.api.crdgen import crd
from modelops.builders import names
from modelops_local.schema import validate_custom_resource

SCHEMA: dict[str, Any] = crd(TRAININGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def admitted(schedule: str) -> bool:
    """Whether the TrainingJob CRD admits a backup policy with this schedule (its CEL rule, for real)."""
    obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "model": {"architecture": "mlp"},
            "dataset": {"builtin": "digits"},
            "backup": {"schedule": schedule, "destination": {"claimName": "b"}},
        },
    }
    errors = [str(e) for e in validate_custom_resource(SCHEMA, obj).errors]
    assert all(e.startswith("spec.backup.schedule") for e in errors), errors
    return not errors


def parsed(schedule: str) -> bool:
    try:
        cron.parse(schedule, "Etc/UTC", strict=True)
    except cron.ScheduleError:
        return False
    return True


VALID = [
    "* * * * *",
    "*/1 * * * *",
    "0 */6 * * *",
    "59 23 31 12 6",
    "0 0 1 1 0",
    "00 08 * * *",
    "5/15 * * * *",
    "5-10/2 * * * *",
    "0-59 0-23 1-31 1-12 0-6",
    "1,2,3-5,*/7 * * * *",
    "0 9 * * MON-FRI",
    "0 9 * * mon-fri",
    "0 0 1 JAN,jul *",
    "0 0 1 jan-DEC/3 *",
    "0 0 ? * ?",
    "0 0 1-mar * *".replace("1-mar", "1"),
    "0 0 * 1-MAR *",
    "0 0 * * sun-sat",
    "0  0  *  *  *",
    "*/59 * * * *",
    "*/100 * * * *",
    "0 0 30 2 *",  # never fires, but a CronJob accepts it too
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@every 20s",
    "@every 1h30m",
    "@every 500ms",
    "@every 1.5h",
]
INVALID = [
    "",
    " ",
    "not a cron",
    "61 * * * *",
    "*/0 * * * *",
    "* * * *",
    "* * * * * *",
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * 32 * *",
    "* * * 0 *",
    "* * * 13 *",
    "* * * * 7",  # robfig/cron, so a CronJob, reads day-of-week as 0-6
    "* * * * 0-7",
    "5-1 * * * *",
    "* * * dec-jan *",
    "* * * * fri-mon",
    "1,61 * * * *",
    "1-70 * * * *",
    "1,,2 * * * *",
    "1- * * * *",
    "-1 * * * *",
    "1-2-3 * * * *",
    "*/ * * * *",
    "*/-1 * * * *",
    "*/1/2 * * * *",
    "*-5 * * * *",
    "L * * * *",
    "0 0 L * *",
    "0 0 * * 5#3",
    "0 0 mon * *",
    "+5 * * * *",
    "٣ * * * *",  # an Arabic-Indic digit: isdigit() but not a cron number
    " 0 * * * *",
    "0 * * * * ",
    "0\t* * * *",
    "TZ=UTC 0 * * * *",
    "CRON_TZ=Europe/Berlin 0 * * * *",
    "@HOURLY",
    "@hourly ",
    "@reboot",
    "@every",
    "@every 0s",
    "@every 1d",
    "@every soon",
    "@every1h",
    "@every 1h 2m",
    "*/1000000000 * * * *",
]


@pytest.mark.parametrize("schedule", VALID)
def test_valid_schedules_are_admitted_and_parsed(schedule: str) -> None:
    assert admitted(schedule), f"{schedule!r} refused by the CRD"
    assert parsed(schedule), f"{schedule!r} refused by the operator's parser"


@pytest.mark.parametrize("schedule", INVALID)
def test_invalid_schedules_are_refused_by_both(schedule: str) -> None:
    assert not admitted(schedule), f"{schedule!r} admitted by the CRD"
    assert not parsed(schedule), f"{schedule!r} accepted by the operator's parser"


# Per field: the bounds, one past them, a middle value, a leading zero, names (right and wrong field).
_FIELD_TOKENS = [
    ["0", "59", "60", "30", "07"],
    ["0", "23", "24", "12", "09"],
    ["1", "31", "0", "32", "15", "01"],
    ["1", "12", "0", "13", "6", "jan", "DEC", "Jun", "mon"],
    ["0", "6", "7", "3", "sun", "SAT", "Wed", "jan"],
]


def _field(rng: random.Random, index: int) -> str:
    tokens = _FIELD_TOKENS[min(index, 4)]
    items = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        item = rng.choice([*tokens, "*", "?"]) if rng.random() < 0.97 else rng.choice(["x", "", "-1", "L"])
        if rng.random() < 0.3 and item not in ("*", "?"):
            item += "-" + rng.choice(tokens)
        if rng.random() < 0.3:
            item += "/" + rng.choice(["1", "2", "15", "60", "0", "", "x"])
        items.append(item)
    return ",".join(items)


def test_generated_schedules_get_one_verdict() -> None:
    """Random schedules near the edges (values at and past each bound, names, ranges, steps)."""
    rng = random.Random(20261207)
    corpus = [" ".join(_field(rng, i) for i in range(rng.choice([4, 5, 5, 5, 5, 6]))) for _ in range(3000)]
    disagree = [s for s in corpus if cron.admits(s) != parsed(s)]
    assert disagree == []
    valid = sum(map(parsed, corpus))
    assert 50 < valid < 2950, f"the corpus must hold both valid and invalid schedules ({valid} valid)"
    # The rule as the API server runs it (CEL via the local plane's engine), on a sample.
    sample = rng.sample(corpus, 150)
    assert [s for s in sample if admitted(s) != parsed(s)] == []


def test_the_admitted_schedule_is_the_one_the_operator_runs() -> None:
    schedule = cron.parse("0 9 * * mon-fri", strict=True)
    assert schedule.weekdays == frozenset(range(1, 6)) and schedule.hours == {9}
    assert cron.parse("5/1 * * * *", strict=True).minutes == frozenset(range(5, 60))


@pytest.mark.parametrize("kind", sorted(NAME_LIMITS))
def test_name_limit_is_what_the_builders_need(kind: str) -> None:
    """A builder that lengthens a suffix fails here until NAME_LIMITS follows (and the CRD with it)."""
    limit = NAME_LIMITS[kind]
    children = getattr(names, f"{kind.lower()}_children")
    longest = names.LONGEST_NAME[kind]()
    assert limit.longest == longest, (
        f"{kind}: the builders allow names up to {longest} characters, the CRD {limit.longest}: "
        f"set NAME_LIMITS[{kind!r}] to {longest} and run `make crds`"
    )
    assert names.name_problems(children, "a" * (longest + 1)), "one more character must break a child"
    if limit.starts_with_letter:
        assert names.name_problems(children, "1abc"), "a leading digit must break a child"
    else:
        assert not names.name_problems(children, "1abc")


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_every_kind_limits_its_name_at_admission(info: Any) -> None:
    """Every CRD refuses names its children cannot carry (through NAME_LIMITS, or a rule of its own)."""
    root = crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = [r["rule"] for r in root.get("x-kubernetes-validations", [])]
    assert any(r.startswith("size(self.metadata.name) <= ") for r in rules), rules
    if info.kind in NAME_LIMITS:
        assert f"size(self.metadata.name) <= {NAME_LIMITS[info.kind].longest}" in rules
