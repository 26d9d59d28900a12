"""Connections as the tool makes them: marked, time-limited, with one-line errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pgarchitect.dsn import Dsn, mask_dsn
from pgarchitect.errors import ConnectError

if TYPE_CHECKING:
    import psycopg

MARKER = "/* pgarchitect */"
_FIRST_WORD = re.compile(r"^\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.S)


def mark(sql: str) -> str:
    """`sql` starting with the marker, and carrying it after its first keyword as well.

    PostgreSQL 18's pg_stat_statements drops a leading comment from the text it keeps, so the
    second copy is what lets the analyzer recognise the tool's own statements there.
    """
    body = sql.strip()
    if body.startswith(MARKER):
        body = body[len(MARKER):].lstrip()
    m = _FIRST_WORD.match(body)
    if m is None:
        return f"{MARKER} {body}"
    return f"{MARKER} {body[: m.end()]} {MARKER}{body[m.end():]}"


def is_own(query: str) -> bool:
    """True for statement text the tool itself sent (marker anywhere, see `mark`)."""
    return MARKER in query


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a driver error, password-masked."""
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[0]
    if line.startswith("connection failed") and "failed: " in line[len("connection failed"):]:
        # libpq: 'connection failed: connection to server at "h", port p failed: <why>'
        line = line.rsplit("failed: ", 1)[1]
    return mask_dsn(line)


def connect_sync(
    dsn: Dsn,
    label: str,
    application_name: str = "pgarchitect",
    connect_timeout: float = 5.0,
    statement_timeout: float | None = None,
) -> psycopg.Connection[tuple[object, ...]]:
    """Open a psycopg connection or raise ConnectError naming `label` and the masked DSN."""
    # psycopg comes with the analyzer extra: the exporter imports this module without it.
    import psycopg

    options = None
    if statement_timeout is not None:
        options = f"-c statement_timeout={int(statement_timeout * 1000)}"
    try:
        return psycopg.connect(
            dsn.reveal(),
            application_name=application_name,
            connect_timeout=max(1, round(connect_timeout)),
            options=options,
        )
    except psycopg.Error as exc:
        raise ConnectError(f"cannot connect to {label} {dsn.masked}: {first_line(exc)}") from None
