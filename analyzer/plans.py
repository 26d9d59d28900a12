"""Plan shapes of statements on a target, and what the target's catalog says of their tables.

Plans come from analyzer/explain.py, the one way a target's statement text is sent back to a
target (parsed first, the extended protocol, a rolled-back read-only transaction with
timeouts). Texts it refuses, or that the server cannot plan, simply have no plan.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from analyzer.analysis.features import StatementShape, plan_shape
from analyzer.explain import generic_plan
from analyzer.names import qualified, split_qualified
from analyzer.snapshots.own import register_own
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.plans")


def explain_generic(
    conn: psycopg.Connection[Any],
    query: str,
    shape: StatementShape,
    server_version_num: int,
    statement_timeout: float,
    lock_timeout: float,
) -> dict[str, Any] | None:
    """The plan shape of a normalized statement text, or None when it cannot be had.

    `server_version_num` is kept for the callers; every version is planned the same way.
    """
    if not shape.explainable:
        return None
    try:
        plan = generic_plan(conn, query, statement_timeout, lock_timeout)
    except psycopg.Error as exc:
        log.debug(event("plan.unavailable", reason=first_line(exc)))
        return None
    return None if plan is None else plan_shape(plan)


RESOLVE = """/* pgarchitect */
SELECT k.name, n.nspname, c.relname
FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(name, nsp, rel)
JOIN pg_class c ON c.oid = to_regclass(CASE WHEN k.nsp IS NULL THEN quote_ident(k.rel)
                                            ELSE quote_ident(k.nsp) || '.' || quote_ident(k.rel)
                                       END)
JOIN pg_namespace n ON n.oid = c.relnamespace
"""
register_own(RESOLVE)


def resolve_tables(conn: psycopg.Connection[Any], names: list[str]) -> dict[str, str]:
    """Table names as written (printed) -> printed schema-qualified names, as the target's
    search_path finds them."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    nsp: list[str | None] = []
    rel: list[str] = []
    for name in wanted:
        schema, table = split_qualified(name)
        nsp.append(schema)
        rel.append(table)
    try:
        rows = conn.execute(RESOLVE, (wanted, nsp, rel)).fetchall()
    except psycopg.Error as exc:
        log.warning(event("plan.resolve_failed", reason=first_line(exc)))
        return {}
    return {str(r[0]): qualified(str(r[1]), str(r[2])) for r in rows}


LEADING_COLUMNS = """/* pgarchitect */
SELECT n.nspname, c.relname, a.attname
FROM unnest(%s::text[], %s::text[]) AS k(nsp, rel)
JOIN pg_namespace n ON n.nspname = k.nsp
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = k.rel
JOIN pg_index i ON i.indrelid = c.oid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indisvalid
"""
register_own(LEADING_COLUMNS)


def leading_index_columns(conn: psycopg.Connection[Any], tables: list[str]) -> set[str]:
    """'schema.table.column' (the table printed) for every column that leads a valid index on
    these (printed, qualified) tables."""
    if not tables:
        return set()
    nsp, rel = _pairs(tables)
    try:
        return {f"{qualified(r[0], r[1])}.{r[2]}"
                for r in conn.execute(LEADING_COLUMNS, (nsp, rel)).fetchall()}
    except psycopg.Error as exc:
        log.warning(event("plan.indexes_failed", reason=first_line(exc)))
        return set()


# Columns with fewer distinct values than this rarely gain from an index of their own.
SELECTIVE_DISTINCT = 100

SELECTIVE_COLUMNS = """/* pgarchitect */
SELECT s.schemaname, s.tablename, s.attname,
       CASE WHEN s.n_distinct >= 0 THEN s.n_distinct
            ELSE -s.n_distinct * greatest(c.reltuples, 0) END >= %s
FROM unnest(%s::text[], %s::text[]) AS k(nsp, rel)
JOIN pg_stats s ON s.schemaname = k.nsp AND s.tablename = k.rel
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
"""
register_own(SELECTIVE_COLUMNS)


def column_selectivity(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, bool]:
    """'schema.table.column' -> whether it has enough distinct values to be worth an index.

    Columns pg_stats does not show (no ANALYZE yet, or no SELECT privilege) are absent.
    """
    if not tables:
        return {}
    nsp, rel = _pairs(tables)
    try:
        rows = conn.execute(SELECTIVE_COLUMNS, (SELECTIVE_DISTINCT, nsp, rel))
        return {f"{qualified(r[0], r[1])}.{r[2]}": bool(r[3]) for r in rows.fetchall()}
    except psycopg.Error as exc:
        log.warning(event("plan.stats_failed", reason=first_line(exc)))
        return {}


def _pairs(tables: list[str]) -> tuple[list[str], list[str]]:
    """Printed qualified names -> parallel (schema, name) lists; unqualified ones are left out."""
    nsp: list[str] = []
    rel: list[str] = []
    for t in sorted(set(tables)):
        schema, name = split_qualified(t)
        if schema is not None:
            nsp.append(schema)
            rel.append(name)
    return nsp, rel
