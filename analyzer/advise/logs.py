"""Statements from a PostgreSQL server log: jsonlog, csvlog or stderr (any log_line_prefix).

A statement is a `statement: ...` message (log_statement, or with `duration: X ms` in front:
log_min_duration_statement) or an `execute NAME: ...` one (the extended protocol; its `parse`
and `bind` lines are left out, as they repeat the same text). Its bind parameters come from
the `Parameters: $1 = '…', $2 = …` detail that follows, read by the recommend engine's one
parser of it (`parameters.bind_values`; a value cut by log_parameter_max_length makes them
unknown): they are the values the statement ran with, its representative parameters. The
tool's own statements (the `/* pgarchitect */` marker) are left out.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

from analyzer.recommend.parameters import bind_values
from pgarchitect.db import MARKER

_MESSAGE = re.compile(r"^(?:duration: [0-9.]+ ms\s+)?(?:statement|execute [^:]*): (.*)$",
                      re.DOTALL)
_STDERR = re.compile(r"\b(LOG|DETAIL|ERROR|STATEMENT|HINT|CONTEXT|WARNING|NOTICE|FATAL|"
                     r"PANIC|INFO|DEBUG\d?):  (.*)$")
_PID = re.compile(r"\[(\d+)\]")
# csvlog columns (PostgreSQL 13+; later versions append columns after these)
_CSV_SEVERITY, _CSV_MESSAGE, _CSV_DETAIL, _CSV_PID = 11, 13, 14, 3


class LogFormatError(ValueError):
    """The log is in none of the formats read here."""


@dataclass
class LoggedStatement:
    """One statement as the server logged it, with the parameters it was bound to."""

    text: str
    values: tuple[str | None, ...] = ()  # $1 first; None is NULL; () when none were logged


def _values(detail: str | None) -> tuple[str | None, ...]:
    return bind_values(detail) or ()


def _statement(message: str | None) -> str | None:
    m = _MESSAGE.match((message or "").strip())
    if m is None:
        return None
    text = m.group(1).strip()
    return None if not text or MARKER in text else text


def _json(text: str) -> list[LoggedStatement]:
    out: list[LoggedStatement] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise LogFormatError(f"line {n} is not JSON") from None
        if not isinstance(record, dict):
            raise LogFormatError(f"line {n} is not a JSON object")
        if record.get("error_severity") != "LOG":
            continue
        stmt = _statement(record.get("message"))
        if stmt is not None:
            out.append(LoggedStatement(stmt, _values(record.get("detail"))))
    return out


def _csv(text: str) -> list[LoggedStatement]:
    out: list[LoggedStatement] = []
    for row in csv.reader(io.StringIO(text)):
        if len(row) <= _CSV_DETAIL:
            raise LogFormatError("a csvlog row has fewer columns than PostgreSQL writes")
        if row[_CSV_SEVERITY] != "LOG":
            continue
        stmt = _statement(row[_CSV_MESSAGE])
        if stmt is not None:
            out.append(LoggedStatement(stmt, _values(row[_CSV_DETAIL])))
    return out


def _stderr(text: str) -> list[LoggedStatement]:
    """Messages start at `LOG:  ` / `DETAIL:  ` after any prefix; continuation lines are
    indented. A DETAIL belongs to the last statement of the same process id."""
    out: list[LoggedStatement] = []
    last: dict[str, LoggedStatement] = {}
    current: tuple[str, str, list[str]] | None = None  # (level, pid, lines)

    def finish() -> None:
        if current is None:
            return
        level, pid, lines = current
        message = "\n".join(lines)
        if level == "LOG":
            stmt = _statement(message)
            if stmt is not None:
                last[pid] = LoggedStatement(stmt)
                out.append(last[pid])
            else:
                last.pop(pid, None)
        elif level == "DETAIL" and pid in last and not last[pid].values:
            last[pid].values = _values(message)

    seen = False
    for line in text.splitlines():
        m = _STDERR.search(line)
        if m is not None:
            finish()
            seen = True
            pid = _PID.search(line[:m.start()])
            current = (m.group(1), pid.group(1) if pid else "", [m.group(2)])
        elif current is not None and line[:1] in ("\t", " "):
            current[2].append(line.strip())
        elif line.strip():
            finish()
            current = None
    finish()
    if not seen and text.strip():
        raise LogFormatError("no `LOG:` or `DETAIL:` line")
    return out


def read_log(text: str) -> list[LoggedStatement]:
    """The statements of a server log, in order; the format is recognised from its start."""
    head = text.lstrip()[:1]
    if head == "{":
        return _json(text)
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if re.match(r'^\d{4}-\d\d-\d\d [0-9:.]+ [A-Z]+,', first):
        return _csv(text)
    return _stderr(text)
