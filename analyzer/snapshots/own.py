"""Recognising pgarchitect's own statements among a target's pg_stat_statements entries.

An entry is the tool's own when it was run by the tool's session -- the role the analyzer
connects as (``own_role``; pg_stat_statements keeps no application_name or backend) -- *and*
its text looks like the tool's: it carries the ``/* pgarchitect */`` marker, or its parse-tree
fingerprint equals that of a statement the tool is known to send (registered here by the
modules that send them; PostgreSQL 18 trims a leading comment from the text it keeps). The
marker alone proves nothing: anyone can write it, and an application's entries that carry it
are analysed like any other (docs/security.md).
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import psycopg
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
    """True for texts that look like the tool's (marker in the text, or a known fingerprint).

    Only entries of the tool's own role with such a text are the tool's (`is_own_entry`).
    """
    return MARKER in query or fp in _own_fingerprints


OWN_ROLE = "/* pgarchitect */ SELECT oid FROM pg_roles WHERE rolname = current_user"
register_own(OWN_ROLE)


def own_role(conn: psycopg.Connection[Any]) -> int | None:
    """The oid of the role the tool's session on a target runs as (None if it cannot tell)."""
    try:
        row = conn.execute(OWN_ROLE.encode()).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else int(row[0])


def is_own_entry(userid: int, own_text: bool, role: int | None) -> bool:
    """Whether an entry (its userid, whether its text looks like ours) is the tool's own."""
    return own_text and userid == role
