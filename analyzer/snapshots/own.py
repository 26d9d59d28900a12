"""Recognising pgarchitect's own statements among a target's pg_stat_statements entries.

Every statement the tool sends starts with the ``/* pgarchitect */`` marker. PostgreSQL up to
17 keeps that leading comment in the normalized text; PostgreSQL 18 trims it (the text starts
at the statement's first token). So a text counts as the tool's own when it carries the marker
anywhere, or when its parse-tree fingerprint equals the fingerprint of a statement the tool is
known to send (registered here by the modules that send them).
"""

from __future__ import annotations

import functools

from pglast.parser import ParseError, fingerprint

from pgarchitect.db import MARKER

_own_fingerprints: set[str] = set()


def statement_fingerprint(query: str, queryid: int) -> str:
    """pglast fingerprint of a statement; texts that do not parse get one of their own."""
    try:
        return str(fingerprint(query))
    except (ParseError, ValueError):
        return f"queryid:{queryid}"


@functools.cache
def _fingerprint_of_own(sql: str) -> str | None:
    try:
        return str(fingerprint(sql.replace("%s", "$1")))
    except (ParseError, ValueError):  # pragma: no cover - our own SQL parses
        return None


def register_own(*statements: str) -> None:
    """Remember the fingerprints of SQL the tool itself sends to targets."""
    for sql in statements:
        fp = _fingerprint_of_own(sql)
        if fp is not None:
            _own_fingerprints.add(fp)


def is_own(query: str, fp: str) -> bool:
    """True for statements pgarchitect sent (marker in the text, or a known fingerprint)."""
    return MARKER in query or fp in _own_fingerprints
