"""The guard every generated statement passes before it runs, whoever generated it.

1. `check(sql)`: parsed by PostgreSQL's own grammar (pglast); exactly one `SELECT` (no
   data-modifying CTE, no `SELECT ... INTO`, no `FOR UPDATE` / `FOR SHARE`); no function of
   the deny list; no catalog that holds secrets. Pure: nothing is sent anywhere.
2. `run(conn, sql, ...)`: only a checked statement, in a `READ ONLY` transaction that is
   rolled back, with `statement_timeout`, as the read-only role (`SET LOCAL ROLE` on the
   store; on a target the connection already is the monitoring role); `EXPLAIN` first and
   refused above the cost cap; then at most `max_rows` rows through a server-side cursor.
   psycopg sends every statement with the extended protocol, so a text that slipped a second
   statement past the parser would still be one statement or an error, never two.

A refusal is a `Refused` with one line saying why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pglast
import psycopg
from pglast import ast
from pglast.visitors import Visitor
from psycopg import sql

from pgarchitect.db import first_line

READER_ROLE = "pgarchitect_reader"

# Functions a question never needs: sleeping, files and large objects, other connections,
# settings and sessions, locks, replication and WAL control, statistics resets, and the
# functions that run a query given as text (which the parser cannot see into).
_DENIED_NAMES = frozenset({
    "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
    "pg_rotate_logfile", "pg_switch_wal", "pg_switch_xlog", "pg_promote", "pg_notify",
    "pg_current_logfile", "pg_stat_file", "pg_export_snapshot", "pg_backup_start",
    "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_create_restore_point",
    "pg_log_backend_memory_contexts", "pg_stat_get_activity", "pg_blocking_pids",
    "nextval", "setval", "txid_current", "pg_current_xact_id", "loread", "lowrite",
    "ts_stat", "ts_rewrite", "xpath_table", "query_to_xml", "query_to_xml_and_xmlschema",
    "query_to_xmlschema", "pg_import_system_collations",
})
_DENIED_PREFIXES = (
    "pg_sleep", "pg_read_", "pg_ls_", "pg_file_", "lo_", "dblink", "pg_advisory",
    "pg_try_advisory", "pg_stat_reset", "pg_logical_", "pg_replication_", "pg_create_",
    "pg_drop_", "pg_wal_", "pg_walfile", "table_to_xml", "cursor_to_xml", "schema_to_xml",
    "database_to_xml", "pg_copy_", "pg_truncate_", "pg_stat_get_backend",
)
# Every extension's statistics reset (pg_stat_statements', pg_qualstats', ...) ends so.
_DENIED_SUFFIXES = ("_reset",)
# Catalogs that hold secrets (password hashes, connection strings with passwords, large
# object data, sampled column values, configuration files, other sessions' statements).
SECRET_RELATIONS = frozenset({
    "pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "user_mapping_options",
    "user_mappings", "pg_subscription", "pg_largeobject", "pg_largeobject_metadata",
    "pg_statistic", "pg_statistic_ext_data", "pg_hba_file_rules", "pg_ident_file_mappings",
    "pg_file_settings", "pg_db_role_setting", "pg_stat_activity", "pg_config",
})
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class Refused(Exception):
    """A statement the guard does not let through; the message is the one-line reason."""


def denied_function(name: str) -> bool:
    """Whether a function name (without schema) is on the deny list."""
    lowered = name.lower()
    return (lowered in _DENIED_NAMES or lowered.startswith(_DENIED_PREFIXES)
            or lowered.endswith(_DENIED_SUFFIXES))


class _Inspect(Visitor):
    """Collects the first reason to refuse, walking every node of the statement."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def _refuse(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def visit(self, ancestors: object, node: ast.Node) -> None:
        if isinstance(node, _WRITES):
            self._refuse(f"it writes ({type(node).__name__.removesuffix('Stmt').upper()}"
                         " inside the query); only reading is allowed")
        elif isinstance(node, ast.SelectStmt):
            if node.intoClause is not None:
                self._refuse("SELECT ... INTO creates a table; only reading is allowed")
            if node.lockingClause:
                self._refuse("a locking clause (FOR UPDATE / FOR SHARE) takes row locks")
        elif isinstance(node, ast.FuncCall):
            name = node.funcname[-1].sval if node.funcname else ""
            if denied_function(name):
                self._refuse(f"function {name}() is not allowed (deny list: sleeping, files,"
                             " large objects, other connections, settings, locks)")
        elif isinstance(node, ast.RangeVar):
            if (node.relname or "").lower() in SECRET_RELATIONS:
                self._refuse(f"{node.relname} holds secrets and is never read")
        elif isinstance(node, ast.ColumnRef):
            # pg_authid.rolpassword-style references to a secret catalog's row type
            first = node.fields[0] if node.fields else None
            if isinstance(first, ast.String) and (first.sval or "").lower() in SECRET_RELATIONS:
                self._refuse(f"{first.sval} holds secrets and is never read")


def check(sql: str) -> str:
    """The statement, stripped, if it may run; else `Refused` with the reason."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise Refused("there is no statement")
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise Refused(f"not valid SQL: {exc}") from None
    if len(statements) != 1:
        raise Refused(f"{len(statements)} statements; exactly one SELECT is allowed")
    stmt = statements[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        kind = type(stmt).__name__.removesuffix("Stmt")
        raise Refused(f"a {kind.upper()} statement; only a SELECT is allowed")
    inspect = _Inspect()
    inspect(statements[0])
    if inspect.reason is not None:
        raise Refused(inspect.reason)
    return text


@dataclass(frozen=True)
class Limits:
    """What a checked statement may cost when it runs."""

    max_rows: int
    max_cost: float
    statement_timeout: float  # seconds


@dataclass(frozen=True)
class Result:
    """What a statement returned (at most `max_rows` rows; `truncated` if there were more)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool
    cost: float


_CURSOR = "pgarchitect_ask"
MARK = "/* pgarchitect */ "  # the tool's own traffic, recognised as such on a target


def run(conn: psycopg.Connection[Any], statement: str, limits: Limits, *,
        role: str | None = READER_ROLE) -> Result:
    """Check, EXPLAIN and run `statement` read-only; raises `Refused` when it must not run.

    `role`: the role to run as (`SET LOCAL ROLE`), None to stay the connection's own (a
    target's monitoring role). The transaction is always rolled back.
    """
    text = check(statement)
    timeout_ms = max(1, int(limits.statement_timeout * 1000))
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise Refused("the connection is inside a transaction; answers run on their own")
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("/* pgarchitect */ BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ")
        try:
            return _run(conn, text, limits, role, timeout_ms)
        finally:
            conn.execute("/* pgarchitect */ ROLLBACK")
    finally:
        conn.autocommit = autocommit


def _run(conn: psycopg.Connection[Any], text: str, limits: Limits, role: str | None,
         timeout_ms: int) -> Result:
    if role is not None:
        member = conn.execute("/* pgarchitect */ SELECT CASE WHEN to_regrole(%s) IS NULL"
                              " THEN false ELSE pg_has_role(current_user, %s, 'MEMBER') END",
                              (role, role)).fetchone()
        if member is None or not member[0]:
            raise Refused(f"this session cannot SET ROLE {role} (the store's read-only role;"
                          " docs/ask.md says how to create it)")
        conn.execute(sql.SQL("/* pgarchitect */ SET LOCAL ROLE {}").format(
            sql.Identifier(role)))
    # Strings read as pglast read them when it checked the text (a target may set this off).
    conn.execute("/* pgarchitect */ SELECT set_config('statement_timeout', %s, true),"
                 " set_config('lock_timeout', %s, true),"
                 " set_config('standard_conforming_strings', 'on', true),"
                 " set_config('idle_in_transaction_session_timeout', %s, true)",
                 (f"{timeout_ms}ms", f"{timeout_ms}ms", f"{timeout_ms * 4}ms"))
    try:
        # The extended protocol (binary results; the cursor's DECLARE is too): one command
        # only, as analyzer/explain.py sends a target's texts, whatever the parsers disagree on.
        plan = conn.execute((MARK + "EXPLAIN (FORMAT JSON) " + text).encode(), binary=True,
                            prepare=False).fetchone()
        assert plan is not None
        document = plan[0] if not isinstance(plan[0], str) else json.loads(plan[0])
        cost = float(document[0]["Plan"]["Total Cost"])
        if cost > limits.max_cost:
            raise Refused(f"estimated cost {cost:,.0f} is above the cap {limits.max_cost:,.0f}"
                          " (analyzer.ask.max_cost)")
        with conn.cursor(name=_CURSOR) as cur:
            cur.execute(MARK + text)
            rows = cur.fetchmany(limits.max_rows + 1)
            columns = tuple(d.name for d in cur.description or ())
    except psycopg.errors.QueryCanceled:
        raise Refused(f"stopped after the statement timeout ({timeout_ms} ms)") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Refused(f"not allowed for the read-only role: {first_line(exc)}") from None
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise Refused(f"it would write: {first_line(exc)}") from None
    except psycopg.Error as exc:
        if exc.sqlstate is None or exc.sqlstate[:2] in ("08", "57", "53", "58", "XX"):
            raise  # the server or the connection is in trouble: not the statement's fault
        raise Refused(f"the statement failed: {first_line(exc)}") from None
    truncated = len(rows) > limits.max_rows
    return Result(columns, tuple(tuple(r) for r in rows[:limits.max_rows]), truncated, cost)


def first_sql_block(text: str) -> str | None:
    """The SQL of a model's answer: its first ```sql block (else its first fenced block)."""
    blocks = re.findall(r"```([A-Za-z]*)[ \t]*\n?(.*?)```", text, re.DOTALL)
    for lang, body in blocks:
        if lang.lower() in ("sql", "postgresql", "postgres", "psql"):
            return str(body).strip()
    return str(blocks[0][1]).strip() if blocks else None
