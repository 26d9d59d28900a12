"""Cron schedules (`analyzer.schedule`): validation and the next run, through croniter.

croniter does the parsing and the calendar; this module adds what pgarchitect promises on
top of it: five fields or an @alias only (croniter also takes seconds and year columns), an
error that names the bad field, and runs computed as wall-clock times in the configured time
zone with Vixie cron's behaviour across a DST change (docs/configuration.md): a time skipped
in spring runs when the clock jumps, and a time that happens twice in autumn runs once unless
the hour field is `*`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class CronError(ValueError):
    """The cron expression is malformed or never fires; the message says why, in one line."""


def _reason(exc: CroniterError, expression: str) -> str:
    # croniter says "[expression] is not acceptable, out of range" or "[expression] step '0'
    # in field 0 is not acceptable"; our message names the expression and the field itself.
    text = re.sub(r" in field \d+", "", str(exc).replace(f"[{expression}] ", "")).strip()
    return text.removeprefix("is not acceptable, ").removeprefix("is ") or "not acceptable"


def check_cron(expression: str) -> str:
    """The expression, stripped, when croniter accepts it and it fires at all; else CronError."""
    text = expression.strip()
    fields = text.split()
    if not (len(fields) == 1 and text.lower() in ALIASES) and len(fields) != len(FIELDS):
        raise CronError(f"expected {len(FIELDS)} fields ({' '.join(FIELDS)}) or one of "
                        f"{', '.join(ALIASES)}")
    try:
        it = croniter(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CroniterError as exc:
        raise CronError(_field_error(fields) or _reason(exc, text)) from None
    try:
        it.get_next(datetime)
    except CroniterBadDateError:
        raise CronError("it never fires (no such date)") from None
    return text


def _field_error(fields: list[str]) -> str | None:
    """'hour field: 25 (out of range)', found by checking one field at a time."""
    if len(fields) != len(FIELDS):
        return None
    for i, name in enumerate(FIELDS):
        alone = " ".join(f if j == i else "*" for j, f in enumerate(fields))
        try:
            croniter(alone)
        except CroniterError as exc:
            return f"{name} field: {fields[i]} ({_reason(exc, alone)})"
    return None


def next_run(expression: str, after: datetime, timezone: str | ZoneInfo) -> datetime:
    """The first run strictly after `after` (aware), as a wall-clock time in `timezone`."""
    if after.tzinfo is None:
        raise ValueError("`after` must be an aware datetime")
    tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    text = check_cron(expression)
    fields = text.split()
    every_hour = text.lower() == "@hourly" or (len(fields) == len(FIELDS) and fields[1] == "*")
    it = croniter(text, after.astimezone(tz))
    while True:
        candidate: datetime = it.get_next(datetime)
        if every_hour or not _repeated(candidate, tz):
            return candidate


def _repeated(moment: datetime, tz: ZoneInfo) -> bool:
    """True for the second occurrence of a wall-clock time the autumn change repeats."""
    first = moment.replace(tzinfo=None).replace(tzinfo=tz, fold=0)
    return moment.astimezone(UTC) > first.astimezone(UTC)
