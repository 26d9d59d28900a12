"""Plan shapes of statements on a target, always in a rolled-back, time-limited transaction.

PostgreSQL 16+ explains a parameterised text directly with ``EXPLAIN (GENERIC_PLAN)``. Before
that the text is prepared and ``EXPLAIN EXECUTE``d with NULL parameters under
``plan_cache_mode = force_generic_plan``. Texts whose parameter types cannot be inferred, or
that fail for any other reason, simply have no plan.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg

from analyzer.analysis.features import StatementShape, plan_shape
from analyzer.snapshots.own import register_own
from pgarchitect.db import MARKER, first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.plans")

# The marker also goes inside: PostgreSQL 18 drops a leading comment from the text it keeps,
# and these statements must still be recognisable as the tool's own in pg_stat_statements.
_EXPLAIN = MARKER + " EXPLAIN " + MARKER + " (GENERIC_PLAN, FORMAT JSON, VERBOSE) "
_PREPARED = "pgarchitect_explain"
_SETUP = (
    "/* pgarchitect */ SET LOCAL statement_timeout = 1000",
    "/* pgarchitect */ SET LOCAL lock_timeout = 1000",
    "/* pgarchitect */ SET LOCAL plan_cache_mode = force_generic_plan",
    "/* pgarchitect */ SET LOCAL pg_stat_statements.track = 'none'",
    f"/* pgarchitect */ DEALLOCATE {_PREPARED}",
)
register_own(*_SETUP)


def _untracked(conn: psycopg.Connection[Any]) -> None:
    """Keep this transaction's statements out of pg_stat_statements where we may.

    With ``track = all`` the statement inside an EXPLAIN (or a PREPARE) is recorded as a
    nested entry under the application statement's queryid. Only a superuser may change the
    setting; for other roles the snapshot's text choice keeps such entries apart instead.
    """
    try:
        with conn.transaction():
            conn.execute("/* pgarchitect */ SET LOCAL pg_stat_statements.track = 'none'")
    except psycopg.Error:
        pass


def explain_generic(
    conn: psycopg.Connection[Any],
    query: str,
    shape: StatementShape,
    server_version_num: int,
    statement_timeout: float,
    lock_timeout: float,
) -> dict[str, Any] | None:
    """The plan shape of a normalized statement text, or None when it cannot be had."""
    if not shape.explainable or MARKER in query:
        return None
    prepared = False
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(
                f"/* pgarchitect */ SET LOCAL statement_timeout = {int(statement_timeout * 1000)}"
            )
            conn.execute(f"/* pgarchitect */ SET LOCAL lock_timeout = {int(lock_timeout * 1000)}")
            _untracked(conn)
            if server_version_num >= 160000:
                row = conn.execute((_EXPLAIN + query).encode()).fetchone()
            else:
                conn.execute("/* pgarchitect */ SET LOCAL plan_cache_mode = force_generic_plan")
                conn.execute(f"{MARKER} PREPARE {_PREPARED} {MARKER} AS {query}".encode())
                prepared = True
                args = ", ".join(["NULL"] * shape.parameters)
                execute = f"EXECUTE {_PREPARED}({args})" if args else f"EXECUTE {_PREPARED}"
                row = conn.execute(
                    f"{MARKER} EXPLAIN {MARKER} (FORMAT JSON, VERBOSE) {execute}".encode()
                ).fetchone()
    except psycopg.Error as exc:
        log.debug(event("plan.unavailable", reason=first_line(exc)))
        return None
    finally:
        # PREPARE is not transactional: the prepared statement outlives the rollback.
        if prepared and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"/* pgarchitect */ DEALLOCATE {_PREPARED}".encode())
    if row is None:
        return None
    return plan_shape(row[0])


RESOLVE = """/* pgarchitect */
SELECT k.name, n.nspname || '.' || c.relname
FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(name, nsp, rel)
JOIN pg_class c ON c.oid = to_regclass(CASE WHEN k.nsp IS NULL THEN quote_ident(k.rel)
                                            ELSE quote_ident(k.nsp) || '.' || quote_ident(k.rel)
                                       END)
JOIN pg_namespace n ON n.oid = c.relnamespace
"""
register_own(RESOLVE)


def resolve_tables(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, str]:
    """Table names as written -> schema-qualified names, as the target's search_path finds them."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    nsp: list[str | None] = []
    rel: list[str] = []
    for name in wanted:
        schema, _, table = name.rpartition(".")
        nsp.append(schema or None)
        rel.append(table)
    try:
        rows = conn.execute(RESOLVE, (wanted, nsp, rel)).fetchall()
    except psycopg.Error as exc:
        log.warning(event("plan.resolve_failed", reason=first_line(exc)))
        return {}
    return {str(r[0]): str(r[1]) for r in rows}


LEADING_COLUMNS = """/* pgarchitect */
SELECT n.nspname || '.' || c.relname || '.' || a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indisvalid AND i.indrelid = ANY(
    SELECT to_regclass(t) FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL)
"""
register_own(LEADING_COLUMNS)


def leading_index_columns(conn: psycopg.Connection[Any], tables: list[str]) -> set[str]:
    """'schema.table.column' for every column that leads a valid index on these tables."""
    if not tables:
        return set()
    quoted = [".".join('"' + p.replace('"', '""') + '"' for p in t.split(".", 1))
              for t in sorted(set(tables))]
    try:
        return {str(r[0]) for r in conn.execute(LEADING_COLUMNS, (quoted,)).fetchall()}
    except psycopg.Error as exc:
        log.warning(event("plan.indexes_failed", reason=first_line(exc)))
        return set()


# Columns with fewer distinct values than this rarely gain from an index of their own.
SELECTIVE_DISTINCT = 100

SELECTIVE_COLUMNS = """/* pgarchitect */
SELECT s.schemaname || '.' || s.tablename || '.' || s.attname,
       CASE WHEN s.n_distinct >= 0 THEN s.n_distinct
            ELSE -s.n_distinct * greatest(c.reltuples, 0) END >= %s
FROM pg_stats s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
WHERE s.schemaname || '.' || s.tablename = ANY(%s::text[])
"""
register_own(SELECTIVE_COLUMNS)


def column_selectivity(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, bool]:
    """'schema.table.column' -> whether it has enough distinct values to be worth an index.

    Columns pg_stats does not show (no ANALYZE yet, or no SELECT privilege) are absent.
    """
    if not tables:
        return {}
    try:
        rows = conn.execute(SELECTIVE_COLUMNS, (SELECTIVE_DISTINCT, sorted(set(tables))))
        return {str(r[0]): bool(r[1]) for r in rows.fetchall()}
    except psycopg.Error as exc:
        log.warning(event("plan.stats_failed", reason=first_line(exc)))
        return {}
