"""Recognising pgarchitect's own statements among a target's pg_stat_statements entries.

Every statement the tool sends starts with the ``/* pgarchitect */`` marker. PostgreSQL up to
17 keeps that leading comment in the normalized text; PostgreSQL 18 trims it (the text starts
at the statement's first token). So a text counts as the tool's own when it carries the marker
anywhere, or when its parse-tree fingerprint equals the fingerprint of a statement the tool is
known to send (registered here by the modules that send them).
"""

from __future__ import annotations

import functools
import hashlib
import re

from pglast.parser import ParseError, fingerprint, parse_sql_json

from pgarchitect.db import MARKER

_own_fingerprints: set[str] = set()


_RELATION = re.compile(r'"(?:schemaname|relname)":"((?:[^"\\]|\\.)*)"')


def statement_fingerprint(query: str, queryid: int) -> str:
    """The statement group of a text: its pglast fingerprint plus the relations it names.

    libpg_query's fingerprint ignores constants, parameter types and comments -- what groups
    an ORM's int2/int4/int8 bindings -- but it also folds relation names that differ only in
    trailing digits (``events_2024_01`` and ``events_2024_02``, or ``t12`` and ``t17``), which
    would merge different tables' statements; the exact names are therefore added as a short
    hash. Texts that do not parse get a group of their own.
    """
    try:
        fp = str(fingerprint(query))
        names = sorted(set(_RELATION.findall(parse_sql_json(query))))
    except (ParseError, ValueError):
        return f"queryid:{queryid}"
    if not names:
        return fp
    return fp + "-" + hashlib.blake2s("\0".join(names).encode(), digest_size=4).hexdigest()


@functools.cache
def _fingerprint_of_own(sql: str) -> str | None:
    fp = statement_fingerprint(sql.replace("%s", "$1"), 0)
    return None if fp.startswith("queryid:") else fp


def register_own(*statements: str) -> None:
    """Remember the fingerprints of SQL the tool itself sends to targets."""
    for sql in statements:
        fp = _fingerprint_of_own(sql)
        if fp is not None:
            _own_fingerprints.add(fp)


def is_own(query: str, fp: str) -> bool:
    """True for statements pgarchitect sent (marker in the text, or a known fingerprint)."""
    return MARKER in query or fp in _own_fingerprints
