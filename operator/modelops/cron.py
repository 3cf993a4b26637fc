"""Cron schedules as CronJobs read them (the robfig/cron "standard" parser Kubernetes uses).

Five fields (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges, steps and
JAN-DEC/SUN-SAT names; the descriptors @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly and
`@every <duration>`; a `CRON_TZ=`/`TZ=` prefix. As in cron, when both day fields are restricted a day
matching either one fires; when one of them is `*` both must match.

Backup policies use the strict form (`parse(..., strict=True)`), which is exactly what their CRDs
admit (`SCHEDULE_RULE`, a CEL rule built from the same field table): what a Kubernetes CronJob
accepts, minus a time-zone prefix (the API server refuses `TZ=` in a CronJob; backups run in UTC) and
minus 7 as Sunday (robfig/cron's day-of-week is 0-6, so the CronJob would be refused), with fields
separated by spaces only. A test runs a corpus of schedules through both and requires one verdict.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
)
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_NUMBER = re.compile(r"[0-9]+")
# A step is a positive int for robfig/cron (Go's Atoi): keep it well inside 64 bits.
_MAX_STEP = 10**9 - 1


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool
    tz: dt.tzinfo
    every: float | None = None

    def _day_matches(self, d: dt.date) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first activation strictly after `t` (returned in UTC)."""
        if self.every is not None:
            return (t + dt.timedelta(seconds=self.every)).astimezone(dt.UTC).replace(microsecond=0)
        local = t.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = local + dt.timedelta(days=366 * 5)
        while local < limit:
            if local.month not in self.months:
                year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
                local = dt.datetime(year, month, 1)
                continue
            if not self._day_matches(local.date()):
                local = dt.datetime(local.year, local.month, local.day) + dt.timedelta(days=1)
                continue
            if local.hour not in self.hours:
                local = local.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if local.minute not in self.minutes:
                local += dt.timedelta(minutes=1)
                continue
            return local.replace(tzinfo=self.tz).astimezone(dt.UTC)
        raise ScheduleError("the schedule never fires (no date matches its fields within five years)")


def _parse_field(
    text: str, name: str, lo: int, hi: int, names: dict[str, int], *, strict: bool = False
) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False

    def number(token: str) -> int:
        if token.upper() in names:
            return names[token.upper()]
        if not _NUMBER.fullmatch(token):
            raise ScheduleError(f"{name} field: {token!r} is not a number or a name")
        return int(token)

    for part in text.split(","):
        step, stepped = 1, "/" in part
        if stepped:
            part, _, step_text = part.partition("/")
            if not _NUMBER.fullmatch(step_text) or not 0 < int(step_text) <= _MAX_STEP:
                raise ScheduleError(f"{name} field: step {step_text!r} must be a number from 1")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = lo, hi
            # As robfig/cron: `*` (or `*/1`) leaves the day field unrestricted, `*/2` restricts it.
            star = star or step == 1
        elif "-" in part:
            a, _, b = part.partition("-")
            start, end = number(a), number(b)
        else:
            start = number(part)
            # "N/step" means N to the end of the field, whatever the step.
            end = hi if stepped else start
        if name == "day-of-week" and end == 7 and not strict:
            # Classic cron allows 7 for Sunday as well as 0 (robfig/cron, so a CronJob, does not).
            values.add(0)
            start, end = (0, 0) if start == 7 else (start, 6)
        if start < lo or end > hi:
            raise ScheduleError(f"{name} field: {part!r} is outside {lo}-{hi}")
        if start > end:
            raise ScheduleError(f"{name} field: range {part!r} runs backwards; write low-high")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def parse(expr: str, time_zone: str | None = None, *, strict: bool = False) -> Schedule:
    """Parse a CronJob `schedule` (and optional `timeZone`); errors say what to fix.

    `strict` is the form backup policies admit (see the module's docstring and `SCHEDULE_RULE`).
    """
    text = expr if strict else expr.strip()
    tz_name = time_zone
    if text.startswith(("CRON_TZ=", "TZ=")):
        if strict:
            raise ScheduleError("a time-zone prefix is not allowed: backup schedules run in UTC")
        prefix, _, text = text.partition(" ")
        tz_name = prefix.split("=", 1)[1]
        text = text.strip()
    if strict and (text != text.strip(" ") or any(c.isspace() and c != " " for c in text)):
        raise ScheduleError("separate the fields by spaces, with none before or after the schedule")
    try:
        tz: dt.tzinfo = ZoneInfo(tz_name) if tz_name else dt.UTC
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"unknown time zone {tz_name!r}: use an IANA name such as Europe/Berlin") from e
    if text.startswith("@every"):
        total = 0.0
        rest = text[len("@every") :]
        if strict and (not rest.startswith(" ") or " " in rest[1:]):
            raise ScheduleError(
                f"write @every and one duration after a space, like '@every 6h', got {text!r}"
            )
        rest = rest.strip()
        for amount, unit in _DURATION.findall(rest):
            total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        if total <= 0 or _DURATION.sub("", rest):
            raise ScheduleError(f"@every needs a duration like 90s or 1h30m, got {rest!r}")
        everything: frozenset[int] = frozenset()
        return Schedule(
            everything, everything, everything, everything, everything, True, True, tz, every=total
        )
    text = _DESCRIPTORS.get(text, text)
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"schedule {expr!r} has {len(fields)} fields; use five: minute hour day-of-month month day-of-week"
        )
    parsed = [
        _parse_field(f, name, lo, hi, names, strict=strict)
        for f, (name, lo, hi, names) in zip(fields[:4], _FIELDS, strict=True)
    ]
    weekdays, weekdays_star = _parse_field(fields[4], "day-of-week", 0, 6, _DAYS, strict=strict)
    return Schedule(
        parsed[0][0],
        parsed[1][0],
        parsed[2][0],
        parsed[3][0],
        weekdays,
        parsed[2][1],
        weekdays_star,
        tz,
    )


# --- the admission rule -------------------------------------------------------------------------------
# RE2 and Python's re agree on everything below (no backslashes, no look-around): the same text is the
# CRD's CEL rule and, in tests, the oracle the parser above is compared with.


def _numbers(lo: int, hi: int) -> str:
    """Decimal integers from lo to hi (at most 99), leading zeros allowed as robfig/cron allows them."""
    parts = []
    if lo <= 9:
        top = min(hi, 9)
        parts.append(str(lo) if lo == top else f"[{lo}-{top}]")
    for tens in range(max(1, lo // 10), hi // 10 + 1):
        first, last = max(lo, tens * 10) - tens * 10, min(hi, tens * 10 + 9) - tens * 10
        if first <= last:
            parts.append(f"{tens}{first}" if first == last else f"{tens}[{first}-{last}]")
    return "0*(" + "|".join(parts) + ")"


def _field_pattern(lo: int, hi: int, names: dict[str, int]) -> str:
    by_value: dict[int, list[str]] = {}
    for word, value in names.items():
        by_value.setdefault(value, []).append(word.lower())

    def values(a: int, b: int) -> str:
        words = [w for v in range(a, b + 1) for w in by_value.get(v, [])]
        return "|".join([_numbers(a, b), *words])

    ranges = "|".join(f"({values(a, a)})-({values(a, hi)})" for a in range(lo, hi + 1))
    item = f"([*?]|{ranges}|{values(lo, hi)})(/0*[1-9][0-9]{{0,8}})?"
    return f"({item})(,({item}))*"


def _schedule_pattern() -> str:
    fields = [(lo, hi, names) for _, lo, hi, names in _FIELDS] + [(0, 6, _DAYS)]
    return "^" + " +".join(_field_pattern(lo, hi, names) for lo, hi, names in fields) + "$"


_DURATION_PART = "[0-9]+([.][0-9]+)?(ms|h|m|s)"
_POSITIVE_DURATION_PART = "(0*[1-9][0-9]*([.][0-9]+)?|[0-9]+[.][0-9]*[1-9][0-9]*)(ms|h|m|s)"
DESCRIPTOR_PATTERN = (
    "^(@(" + "|".join(d[1:] for d in _DESCRIPTORS) + ")"
    f"|@every ({_DURATION_PART})*{_POSITIVE_DURATION_PART}({_DURATION_PART})*)$"
)
FIELDS_PATTERN = _schedule_pattern()
"""Five fields, matched against the lower-cased schedule (names are case-insensitive, descriptors not)."""

SCHEDULE_RULE = (
    f"self.startsWith('@') ? self.matches('{DESCRIPTOR_PATTERN}') : "
    f"self.lowerAscii().matches('{FIELDS_PATTERN}')"
)
SCHEDULE_MESSAGE = (
    "not a valid cron schedule: five fields separated by spaces, minute (0-59) hour (0-23) "
    "day-of-month (1-31) month (1-12 or JAN-DEC) day-of-week (0-6 or SUN-SAT), each '*', a value, a "
    "range low-high, a list a,b or a step */n with n >= 1, e.g. '0 */6 * * *' (every six hours); or "
    "@hourly, @daily, @weekly, @monthly, @yearly, '@every 6h'; no TZ= prefix (backups run in UTC)"
)


def admits(expr: str) -> bool:
    """What `SCHEDULE_RULE` answers, with Python's re instead of CEL (the tests compare the two)."""
    if expr.startswith("@"):
        return re.search(DESCRIPTOR_PATTERN, expr) is not None
    return re.search(FIELDS_PATTERN, expr.lower()) is not None


def missed_runs(
    schedule: Schedule, earliest: dt.datetime, now: dt.datetime, cap: int = 100
) -> tuple[dt.datetime | None, int]:
    """(the most recent activation in (earliest, now], how many there were, up to `cap`)."""
    latest: dt.datetime | None = None
    count = 0
    t = schedule.next_after(earliest)
    while t <= now:
        latest = t
        count += 1
        if count >= cap:
            # Far behind (say, a long-suspended CronJob): jump to the last activation before now.
            probe = (
                now - dt.timedelta(minutes=1)
                if schedule.every is None
                else now - dt.timedelta(seconds=schedule.every)
            )
            nxt = schedule.next_after(probe)
            if nxt <= now:
                latest = nxt
            break
        t = schedule.next_after(t)
    return latest, count
