"""Reading a target: pg_stat_statements without texts, texts only where asked for.

Every statement is marked with ``/* pgarchitect */`` and runs on a read-only session with
``application_name = pgarchitect-analyzer`` and statement / lock timeouts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from analyzer.snapshots.model import TargetReading
from analyzer.snapshots.own import register_own
from pgarchitect.config import AnalyzerSettings
from pgarchitect.db import connect_sync, first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import UserError

APPLICATION_NAME = "pgarchitect-analyzer"

PROBE = """/* pgarchitect */
SELECT current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS extversion,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_stat_statements') AS extschema,
       current_database() AS datname
"""

INFO = "/* pgarchitect */ SELECT dealloc, stats_reset FROM {schema}.pg_stat_statements_info"

# Column expressions per pg_stat_statements version: 1.9 added toplevel, 1.11 (PostgreSQL 17)
# renamed blk_read_time / blk_write_time and added stats_since.
_TIMING_OLD = ("coalesce(s.blk_read_time, 0) AS blk_read_time, "
               "coalesce(s.blk_write_time, 0) AS blk_write_time")
_TIMING_17 = (
    "coalesce(s.shared_blk_read_time + s.local_blk_read_time, 0) AS blk_read_time, "
    "coalesce(s.shared_blk_write_time + s.local_blk_write_time, 0) AS blk_write_time"
)

# The columns in STAT_COLUMNS order, exactly as the store keeps them (analyzer/snapshots/
# model.py: StatementCounters.as_row): the rows go from the driver to the comparison and to
# COPY without an object per statement. The mean is total / calls (float8 division, as
# Python's), not the view's running mean.
STATEMENTS = """/* pgarchitect */
SELECT s.dbid, d.datname::text, s.userid, r.rolname::text AS username, s.queryid,
       {toplevel} AS toplevel, s.calls, s.total_exec_time, s.min_exec_time, s.max_exec_time,
       s.total_exec_time / s.calls AS mean_exec_time,
       coalesce(s.stddev_exec_time, 0) AS stddev_exec_time, s.total_plan_time,
       coalesce(s.rows, 0) AS rows, coalesce(s.shared_blks_hit, 0) AS shared_blks_hit,
       coalesce(s.shared_blks_read, 0) AS shared_blks_read,
       coalesce(s.shared_blks_dirtied, 0) AS shared_blks_dirtied,
       coalesce(s.shared_blks_written, 0) AS shared_blks_written,
       coalesce(s.temp_blks_read, 0) AS temp_blks_read,
       coalesce(s.temp_blks_written, 0) AS temp_blks_written,
       {timing}, coalesce(s.wal_bytes::float8, 0) AS wal_bytes, {stats_since} AS stats_since
FROM {schema}.pg_stat_statements(showtext => false) s
LEFT JOIN pg_database d ON d.oid = s.dbid
LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE s.queryid IS NOT NULL AND s.calls > 0 {scope}
"""

# One text per (dbid, queryid). A queryid can have several entries (per user, top-level and
# nested); a nested one may carry the text of the statement around it -- for instance the
# tool's own EXPLAIN of an application statement -- so texts without the marker and
# top-level entries are preferred.
TEXTS = """/* pgarchitect */
SELECT DISTINCT ON (s.dbid, s.queryid) s.dbid, s.queryid, s.query
FROM {schema}.pg_stat_statements(showtext => true) s
WHERE s.queryid = ANY(%s) {scope}
ORDER BY s.dbid, s.queryid, strpos(s.query, '/* pgarchitect */') > 0, s.toplevel DESC
"""

register_own(PROBE)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def connect_target(dsn: Dsn, label: str, settings: AnalyzerSettings) -> psycopg.Connection[Any]:
    """A read-only, time-limited session on a target (the tool never writes to one)."""
    conn = connect_sync(dsn, label, application_name=APPLICATION_NAME,
                        connect_timeout=settings.connect_timeout)
    conn.autocommit = True
    for setup in (
        "/* pgarchitect */ SET default_transaction_read_only = on",
        "/* pgarchitect */ SET standard_conforming_strings = on",  # as pglast reads texts
        f"/* pgarchitect */ SET statement_timeout = {int(settings.statement_timeout * 1000)}",
        f"/* pgarchitect */ SET lock_timeout = {int(settings.lock_timeout * 1000)}",
    ):
        register_own(setup)
        conn.execute(setup.encode())
    return conn


class StatementSource:
    """Reads one target's pg_stat_statements through a connection it does not own."""

    def __init__(self, conn: psycopg.Connection[Any], all_databases: bool = False) -> None:
        self.conn = conn
        self.all_databases = all_databases
        self._probe: dict[str, Any] | None = None

    def probe(self) -> dict[str, Any]:
        """Server and extension versions; a missing extension is a one-line UserError."""
        if self._probe is None:
            with self.conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(PROBE).fetchone()
            assert row is not None
            if row["extversion"] is None:
                raise UserError(
                    f"pg_stat_statements is not installed in database {row['datname']!r} "
                    "(CREATE EXTENSION pg_stat_statements; it must also be in "
                    "shared_preload_libraries)"
                )
            self._probe = row
        return self._probe

    def _scope(self) -> str:
        if self.all_databases:
            return ""
        return "AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"

    def _schema(self) -> str:
        return pgsql.Identifier(str(self.probe()["extschema"])).as_string(self.conn)

    def read(self) -> TargetReading:
        """One reading of the view with showtext => false, plus pg_stat_statements_info."""
        info = self.probe()
        ext = _version_tuple(str(info["extversion"]))
        schema = self._schema()
        dealloc = stats_reset = None
        try:
            if ext >= (1, 9):
                info_sql = INFO.format(schema=schema)
                register_own(info_sql)
                row = self.conn.execute(info_sql.encode()).fetchone()
                if row is not None:
                    dealloc, stats_reset = row[0], row[1]
            sql = STATEMENTS.format(
                toplevel="s.toplevel" if ext >= (1, 9) else "true",
                timing=_TIMING_17 if ext >= (1, 11) else _TIMING_OLD,
                stats_since="s.stats_since" if ext >= (1, 11) else "NULL::timestamptz",
                schema=schema, scope=self._scope(),
            )
            register_own(sql)
            rows = self.conn.execute(sql.encode()).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise UserError(f"cannot read pg_stat_statements: {first_line(exc)} "
                            "(grant pg_read_all_stats to the monitoring role)") from None
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            raise UserError(f"cannot read pg_stat_statements: {first_line(exc)}") from None
        return TargetReading(
            server_version=str(info["server_version"]),
            server_version_num=int(info["server_version_num"]),
            extension_version=str(info["extversion"]),
            stats_reset=stats_reset,
            dealloc=None if dealloc is None else int(dealloc),
            rows=tuple(rows),
        )

    def texts(self, queryids: Iterable[int]) -> dict[tuple[int, int], str]:
        """Normalized texts of the given queryids, keyed by (dbid, queryid)."""
        ids = sorted(set(queryids))
        if not ids:
            return {}
        info = self.probe()
        sql = TEXTS.format(schema=self._schema(), scope=self._scope())
        if _version_tuple(str(info["extversion"])) < (1, 9):
            sql = sql.replace(", s.toplevel DESC", "")
        register_own(sql)
        rows = self.conn.execute(sql.encode(), (ids,)).fetchall()
        return {(int(r[0]), int(r[1])): str(r[2]) for r in rows if r[2] is not None}

