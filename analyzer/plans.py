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
    f"/* pgarchitect */ DEALLOCATE {_PREPARED}",
)
register_own(*_SETUP)


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
