"""Slot values read from a question: a time range, a target, a table, a status, a number.

Pure functions of the question, the time now (in the configured time zone: weeks begin on
Monday there) and the names that exist in the store. What is not in the question is None, and
the example's default applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

RECOMMENDATION_STATUSES = {
    "proposed": "proposed", "accepted": "accepted", "approved": "accepted",
    "rejected": "rejected", "declined": "rejected", "refused": "rejected",
    "applied": "applied", "verified": "verified", "ineffective": "ineffective",
    "reverted": "reverted", "undone": "reverted", "rolled back": "reverted",
}
AUDIT_STATUSES = {
    "succeeded": "succeeded", "successful": "succeeded", "success": "succeeded",
    "failed": "failed", "failing": "failed", "failure": "failed", "failures": "failed",
    "running": "running", "queued": "queued",
}
_WORD_NUMBERS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve"))}
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {"minute": timedelta(minutes=1), "min": timedelta(minutes=1),
          "hour": timedelta(hours=1), "h": timedelta(hours=1), "day": timedelta(days=1),
          "d": timedelta(days=1), "week": timedelta(weeks=1), "w": timedelta(weeks=1),
          "month": timedelta(days=30), "year": timedelta(days=365)}
_NUM = r"(\d+|" + "|".join(_WORD_NUMBERS) + r")"
_UNIT = r"(minutes?|mins?|hours?|h|days?|d|weeks?|w|months?|years?)"
_LAST_N = re.compile(rf"\b(?:last|past|previous|recent)\s+{_NUM}\s*{_UNIT}\b")
_N_AGO = re.compile(rf"\b(?:since|from)?\s*{_NUM}\s*{_UNIT}\s+ago\b")
_LAST_UNIT = re.compile(r"\b(?:last|past|previous)\s+(hour|day|24 hours|week|month|year)\b")
_THIS = re.compile(r"\b(today|yesterday|this week|this month|this year|last week|last month)\b")
_SINCE_DAY = re.compile(r"\bsince\s+(?:last\s+)?(" + "|".join(_DAYS) + r"|yesterday|today)\b")
_ISO = r"(\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2})?)?)"
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_ISO}\s+(?:and|to|until)\s+{_ISO}")
_SINCE_ISO = re.compile(rf"\b(?:since|after|from)\s+{_ISO}")
_ON_ISO = re.compile(rf"\bon\s+{_ISO}\b")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH = r"(" + "|".join([*_MONTHS, "sept", *(m[:3] for m in _MONTHS)]) + r")\.?(?![a-z])"
_SINCE_DATE = re.compile(rf"\b(?:since|after|from)\s+(?:the\s+)?(?:{_MONTH}\s+(\d{{1,2}})"
                         rf"|(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH})"
                         rf"(?:,?\s+(\d{{4}}))?\b")
_IN_MONTH = re.compile(rf"\b(in|during|for|since)\s+{_MONTH}(?:\s+(\d{{4}}))?\b")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|" + "|".join(_WORD_NUMBERS) + r")(?![\w.])")


@dataclass(frozen=True)
class Slots:
    """What a question says; None where it says nothing."""

    since: datetime | None = None
    until: datetime | None = None
    range_text: str | None = None
    target: str | None = None
    table: str | None = None
    status: str | None = None
    audit_status: str | None = None
    number: int | None = None


def _unit(word: str) -> timedelta:
    word = word.rstrip("s") if len(word) > 2 else word
    return _UNITS.get(word, _UNITS.get(word[:1], timedelta(days=1)))


def _count(word: str) -> int:
    return _WORD_NUMBERS[word] if word in _WORD_NUMBERS else int(word[:9])


def _month(word: str) -> int:
    return next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(word.rstrip(".")[:3]))


def _midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _iso(text: str, now: datetime) -> datetime:
    value = datetime.fromisoformat(text.replace("t", "T"))
    return value.replace(tzinfo=now.tzinfo) if value.tzinfo is None else value


def time_range(q: str, now: datetime) -> tuple[datetime | None, datetime | None, str | None]:
    """(since, until, the words that said it) for the first time range in a lowered question;
    a range that names no real time (2026-13-45, ten thousand centuries) is none."""
    try:
        return _time_range(q, now)
    except (ValueError, OverflowError):
        return None, None, None


def _time_range(q: str, now: datetime) -> tuple[datetime | None, datetime | None, str | None]:
    today = _midnight(now)
    week = today - timedelta(days=today.weekday())
    month = today.replace(day=1)
    if m := _BETWEEN.search(q):
        return _iso(m.group(1), now), _iso(m.group(2), now), m.group(0)
    if m := _LAST_N.search(q):
        return now - _count(m.group(1)) * _unit(m.group(2)), None, m.group(0)
    if m := _N_AGO.search(q):
        return now - _count(m.group(1)) * _unit(m.group(2)), None, m.group(0).strip()
    if m := _SINCE_DAY.search(q):
        word = m.group(1)
        if word in ("today", "yesterday"):
            return today - timedelta(days=word == "yesterday"), None, m.group(0)
        back = (today.weekday() - _DAYS.index(word)) % 7
        return today - timedelta(days=back), None, m.group(0)
    if m := _SINCE_ISO.search(q):
        return _iso(m.group(1), now), None, m.group(0)
    if m := _SINCE_DATE.search(q):
        named = _month(m.group(1) or m.group(4))
        day = int(m.group(2) or m.group(3))
        year = int(m.group(5)) if m.group(5) else now.year
        since = today.replace(year=year, month=named, day=day)
        if since > now and not m.group(5):
            since = since.replace(year=year - 1)
        return since, None, m.group(0)
    if m := _IN_MONTH.search(q):
        named = _month(m.group(2))
        year = int(m.group(3)) if m.group(3) else now.year
        first = today.replace(year=year, month=named, day=1)
        if first > now and not m.group(3):
            first = first.replace(year=year - 1)
        after = (first + timedelta(days=32)).replace(day=1)
        return first, None if m.group(1) == "since" else after, m.group(0)
    if m := _ON_ISO.search(q):
        start = _midnight(_iso(m.group(1), now))
        return start, start + timedelta(days=1), m.group(0)
    if m := _LAST_UNIT.search(q):
        unit = m.group(1)
        span = timedelta(days=1) if unit == "24 hours" else _unit(unit)
        if unit == "week" and m.group(0).startswith("last"):
            return week - timedelta(weeks=1), week, m.group(0)
        if unit == "month" and m.group(0).startswith("last"):
            first = (month - timedelta(days=1)).replace(day=1)
            return first, month, m.group(0)
        return now - span, None, m.group(0)
    if m := _THIS.search(q):
        word = m.group(1)
        if word == "today":
            return today, None, word
        if word == "yesterday":
            return today - timedelta(days=1), today, word
        if word == "this week":
            return week, None, word
        if word == "last week":
            return week - timedelta(weeks=1), week, word
        if word == "this month":
            return month, None, word
        if word == "last month":
            return (month - timedelta(days=1)).replace(day=1), month, word
        return today.replace(month=1, day=1), None, word
    return None, None, None


def _word_in(name: str, q: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name.lower())}(?![\w])", q) is not None


def find_name(q: str, names: Iterable[str]) -> str | None:
    """The longest of `names` the question mentions (schema.table also by its bare table)."""
    found: list[tuple[int, str]] = []
    for name in set(names):
        if not name.strip():
            continue  # an empty name (a table-less recommendation's) is in every question
        if _word_in(name, q):
            found.append((len(name) + 1000, name))
        bare = name.rpartition(".")[2]
        if bare != name and len(bare) >= 3 and _word_in(bare, q):
            found.append((len(bare), name))
    return max(found)[1] if found else None


def _status(q: str, table: dict[str, str]) -> str | None:
    hits = [(m.start(), value) for word, value in table.items()
            for m in re.finditer(rf"\b{re.escape(word)}\b", q)]
    return min(hits)[1] if hits else None


def extract(question: str, now: datetime, *, targets: Iterable[str] = (),
            tables: Iterable[str] = ()) -> Slots:
    """The slots of a question (names only as they exist in the store)."""
    q = " ".join(question.lower().split())
    since, until, said = time_range(q, now)
    rest = q.replace(said, " ") if said else q
    target = find_name(rest, targets)
    table = find_name(rest.replace(target.lower(), " ") if target else rest, tables)
    rest_for_numbers = rest
    for name in (target, table):
        if name:
            rest_for_numbers = rest_for_numbers.replace(name.lower(), " ")
    numbers = [m.group(1) for m in _NUMBER.finditer(rest_for_numbers)]
    number = next((_count(n) for n in numbers
                   if n.isdigit() or (n in _WORD_NUMBERS and n not in ("zero", "one"))), None)
    return Slots(since=since, until=until, range_text=said, target=target, table=table,
                 status=_status(q, RECOMMENDATION_STATUSES),
                 audit_status=_status(q, AUDIT_STATUSES), number=number)
