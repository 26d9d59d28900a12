"""The one way a target's statement text goes back to a target: explained, as data, never run.

Texts come from ``pg_stat_statements``, which anyone who can connect to the target can fill.
PostgreSQL up to 15 keeps utility statements' literals there verbatim, so a text written under
``standard_conforming_strings = off`` can read, in a session where the setting is on, as
several statements (``SELECT 'a\\'; COMMIT; BEGIN READ WRITE; ALTER ROLE …``). Every path that
plans such a text goes through this module, which holds four lines (docs/security.md):

1. **One explainable statement.** pglast (PostgreSQL's parser, which reads strings as a
   session with ``standard_conforming_strings = on`` does) must find exactly one statement,
   and it must be a SELECT (without INTO), VALUES, INSERT, UPDATE, DELETE or MERGE. Anything
   else -- utility statements, transaction control, several statements -- is refused unsent.
2. **The extended protocol.** The text is sent in a Parse message (psycopg's
   ``execute(..., binary=True)`` with no parameters), which the server refuses for more than
   one command: a text the two parsers read differently still cannot become two statements.
3. **A read-only transaction it cannot end.** Everything runs in a transaction (or, inside a
   caller's transaction, a savepoint) that is rolled back, with ``transaction_read_only``,
   ``standard_conforming_strings = on``, ``statement_timeout`` and ``lock_timeout`` set
   locally, before the text is sent (all of it queued in one pipeline: one round trip).
   EXPLAIN without ANALYZE executes nothing; functions the planner folds run read-only and
   can end neither the transaction nor the timeouts.
4. **Nothing left behind.** The statement prepared for EXPLAIN EXECUTE is deallocated
   whatever happened.

``generic_plan`` gives the plan that does not depend on parameter values (``PREPARE`` +
``EXPLAIN EXECUTE`` with NULLs under ``force_generic_plan``, on every version: through the
extended protocol ``EXPLAIN (GENERIC_PLAN)``'s ``$n`` become the Bind message's parameters,
which it then requires); ``custom_plan`` the plan for given parameter values (``EXPLAIN
EXECUTE`` under ``force_custom_plan``). Both return EXPLAIN's JSON document (``plan_shape``
reads it), None for a refused text, and raise ``psycopg.Error`` when the server cannot plan it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.parser import ParseError, parse_sql_json
from psycopg import sql

from analyzer.snapshots.own import register_own

PREPARED = "pgarchitect_plan"
_UNTRACK = "/* pgarchitect */ SET LOCAL pg_stat_statements.track = 'none'"
_DEALLOCATE = f"/* pgarchitect */ DEALLOCATE {PREPARED}"
_PREPARED_LEFT = (f"/* pgarchitect */ SELECT 1 FROM pg_prepared_statements"
                  f" WHERE name = '{PREPARED}'")
_SAVEPOINT = "pgarchitect_plan"
# (start, undo) of the planning transaction: its own, or a savepoint inside the caller's.
_TOP = ("/* pgarchitect */ BEGIN", ("/* pgarchitect */ ROLLBACK",))
_NESTED = (f"/* pgarchitect */ SAVEPOINT {_SAVEPOINT}",
           (f"/* pgarchitect */ ROLLBACK TO SAVEPOINT {_SAVEPOINT}",
            f"/* pgarchitect */ RELEASE SAVEPOINT {_SAVEPOINT}"))
register_own(_UNTRACK, _DEALLOCATE, _PREPARED_LEFT, _TOP[0], *_TOP[1], _NESTED[0],
             *_NESTED[1])

_EXPLAINABLE = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
_PARAM = re.compile(r'"ParamRef":\{"number":(\d+)')
# Whether SET LOCAL pg_stat_statements.track is allowed, per session (superusers only).
_untrack_allowed: weakref.WeakKeyDictionary[psycopg.Connection[Any], bool] = (
    weakref.WeakKeyDictionary())


@dataclass(frozen=True)
class Explainable:
    """A statement text that passed the parse check, and its number of parameters ($n)."""

    text: str
    parameters: int


@functools.lru_cache(maxsize=4096)
def explainable(text: str) -> Explainable | None:
    """`text` if pglast reads it as exactly one explainable statement, else None.

    Cached: a validation plans the same texts once before and once with each candidate.
    """
    if "\0" in text:
        return None
    try:
        stmts = parse_sql(text)
        tree = parse_sql_json(text)
    except (ParseError, ValueError):
        return None
    if len(stmts) != 1:
        return None
    stmt = stmts[0].stmt
    if not isinstance(stmt, _EXPLAINABLE):
        return None
    if isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None:
        return None
    params = max((int(n) for n in _PARAM.findall(tree)), default=0)
    return Explainable(text, params)


def _setup(conn: psycopg.Connection[Any], statement_timeout: float, lock_timeout: float,
           plan_cache_mode: str) -> str:
    """The settings of the planning transaction as one statement of our own (set_config with
    is_local: SET LOCAL), so that the pipeline carries one command for all of them."""
    values = [("transaction_read_only", "on"), ("standard_conforming_strings", "on"),
              ("statement_timeout", str(_ms(statement_timeout))),
              ("lock_timeout", str(_ms(lock_timeout))), ("plan_cache_mode", plan_cache_mode)]
    if _may_untrack(conn):
        values.append(("pg_stat_statements.track", "none"))
    return _settings(values)


def _settings(values: Sequence[tuple[str, str]]) -> str:
    calls = ", ".join(f"set_config('{k}', '{v}', true)" for k, v in values)
    return f"/* pgarchitect */ SELECT /* pgarchitect */ {calls}"


# Recognisable in pg_stat_statements with and without the tracking setting (5 or 6 calls).
register_own(*(_settings([("a", "b")] * n) for n in (5, 6)))


def _may_untrack(conn: psycopg.Connection[Any]) -> bool:
    """Whether this session may keep its statements out of pg_stat_statements.

    Only a superuser (or a role granted SET on it) may change the setting; for other roles the
    snapshot's choice of texts keeps the nested entries apart instead. Tried once per session.
    """
    known = _untrack_allowed.get(conn)
    if known is None:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(_UNTRACK.encode(), prepare=False)
            known = True
        except psycopg.Error:
            known = False
        _untrack_allowed[conn] = known
    return known


def _send(conn: psycopg.Connection[Any], query: bytes) -> Any:
    """`query` through the extended protocol (one command only); its first value, if any."""
    cur = conn.cursor().execute(query, binary=True, prepare=False)
    row = cur.fetchone() if cur.description else None
    return None if row is None else row[0]


def execute_one(conn: psycopg.Connection[Any], statement: str) -> None:
    """Run one statement of the tool's own making (a validation's CREATE INDEX, ANALYZE)
    through the extended protocol: should it ever carry a second command, the server refuses
    it instead of running it."""
    _send(conn, statement.encode())


def generic_plan(conn: psycopg.Connection[Any], text: str, statement_timeout: float,
                 lock_timeout: float) -> dict[str, Any] | None:
    """EXPLAIN's JSON of the generic plan of `text`; None when `text` is refused.

    Raises psycopg.Error when the server cannot plan it (unknown table, no privilege, a
    parameter type it cannot infer, a timeout).
    """
    stmt = explainable(text)
    if stmt is None:
        return None
    return _explain_prepared(conn, stmt, [None] * stmt.parameters, "force_generic_plan",
                             statement_timeout, lock_timeout)


def custom_plan(conn: psycopg.Connection[Any], text: str, values: Sequence[object],
                statement_timeout: float, lock_timeout: float) -> dict[str, Any] | None:
    """EXPLAIN's JSON of `text`'s plan for these parameter values ($1 = values[0], …).

    Values are sent as quoted literals (None as NULL): strings are typed by the parameter they
    stand for, as a client's text parameters are. None when `text` is refused or the number of
    values is not its number of parameters; psycopg.Error when the server cannot plan it.
    """
    stmt = explainable(text)
    if stmt is None or len(values) != stmt.parameters:
        return None
    return _explain_prepared(conn, stmt, values, "force_custom_plan",
                             statement_timeout, lock_timeout)


def _explain_prepared(conn: psycopg.Connection[Any], stmt: Explainable,
                      values: Sequence[object], plan_cache_mode: str,
                      statement_timeout: float, lock_timeout: float) -> dict[str, Any] | None:
    """PREPARE, EXPLAIN EXECUTE, roll back, DEALLOCATE: queued in one pipeline (one round
    trip), every command in its own Parse message, the transaction read-only before the
    target's text comes."""
    args = sql.SQL(", ").join(sql.SQL("NULL") if v is None else sql.Literal(v) for v in values)
    execute = sql.SQL("EXECUTE {}").format(sql.Identifier(PREPARED))
    if values:
        execute = sql.SQL("{}({})").format(execute, args)
    explain = sql.SQL("/* pgarchitect */ EXPLAIN /* pgarchitect */ (FORMAT JSON, VERBOSE) {}"
                      ).format(execute).as_bytes(conn)
    prepare = (f"/* pgarchitect */ PREPARE {PREPARED} /* pgarchitect */ AS ".encode()
               + stmt.text.encode())
    setup = _setup(conn, statement_timeout, lock_timeout, plan_cache_mode)
    # Our own transaction control, not psycopg's: after an error inside a pipeline the server
    # skips everything up to the sync, a queued rollback included, so it is sent again after.
    nested = not conn.autocommit or (
        conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)
    begin, undo = (_NESTED if nested else _TOP)
    try:
        with conn.pipeline():
            conn.execute(begin.encode(), prepare=False)
            conn.execute(setup.encode(), prepare=False)
            conn.cursor().execute(prepare, binary=True, prepare=False)
            cur = conn.cursor()
            cur.execute(explain, binary=True, prepare=False)
            for command in undo:
                conn.execute(command.encode(), prepare=False)
            # PREPARE is not transactional: the prepared statement outlives the rollback.
            conn.execute(_DEALLOCATE.encode(), prepare=False)
    except psycopg.Error:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                    for command in undo:
                        conn.execute(command.encode(), prepare=False)
                # Left when the error came after the PREPARE; DEALLOCATE of a statement that
                # is not there would fail the caller's transaction.
                if conn.execute(_PREPARED_LEFT.encode(), prepare=False).fetchone():
                    conn.execute(_DEALLOCATE.encode(), prepare=False)
        raise
    row = cur.fetchone() if cur.description else None
    return None if row is None else _document(row[0])


def _document(value: Any) -> dict[str, Any] | None:
    """EXPLAIN (FORMAT JSON)'s one-element list -> its document."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return value if isinstance(value, dict) else None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
