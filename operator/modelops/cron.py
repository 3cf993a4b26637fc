"""Cron schedules as CronJobs read them (the robfig/cron "standard" parser Kubernetes uses).

Five fields (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges, steps and
JAN-DEC/SUN-SAT names; the descriptors @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly and
`@every <duration>`; a `CRON_TZ=`/`TZ=` prefix. As in cron, when both day fields are restricted a day
matching either one fires; when one of them is `*` both must match.
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
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


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
    text: str, name: str, lo: int, hi: int, names: dict[str, int]
) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = text.startswith(("*", "?"))

    def number(token: str) -> int:
        token = token.upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise ScheduleError(f"{name} field: {token!r} is not a number or a name")
        return int(token)

    for part in text.split(","):
        step = 1
        if "/" in part:
            part, _, step_text = part.partition("/")
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{name} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = lo, hi
        elif "-" in part:
            a, _, b = part.partition("-")
            start, end = number(a), number(b)
        else:
            start = number(part)
            end = hi if step > 1 else start
        if name == "day-of-week" and end == 7:
            # Cron allows 7 for Sunday as well as 0.
            values.add(0)
            start, end = (0, 0) if start == 7 else (start, 6)
        if start < lo or end > hi or start > end:
            raise ScheduleError(f"{name} field: {part!r} is outside {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def parse(expr: str, time_zone: str | None = None) -> Schedule:
    """Parse a CronJob `schedule` (and optional `timeZone`); errors say what to fix."""
    text = expr.strip()
    tz_name = time_zone
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")
        tz_name = prefix.split("=", 1)[1]
        text = text.strip()
    try:
        tz: dt.tzinfo = ZoneInfo(tz_name) if tz_name else dt.UTC
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"unknown time zone {tz_name!r}: use an IANA name such as Europe/Berlin") from e
    if text.startswith("@every"):
        total = 0.0
        rest = text[len("@every") :].strip()
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
        _parse_field(f, name, lo, hi, names)
        for f, (name, lo, hi, names) in zip(fields[:4], _FIELDS, strict=True)
    ]
    weekdays, weekdays_star = _parse_field(fields[4], "day-of-week", 0, 6, _DAYS)
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
