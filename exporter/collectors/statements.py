"""pg_stat_statements: top statements per database, `other`, texts of new queryids, info."""

from __future__ import annotations

import asyncpg

from exporter.errors import CollectorError, Reason
from exporter.model import ServerInfo, StatementRow, Statements, StatementsInfo
from exporter.selection import Selection, TextCache
from exporter.sql import statements as sql
from pgarchitect.config import ExporterSettings


def check_usable(server: ServerInfo) -> tuple[str, str]:
    """(extension version, schema), or a CollectorError saying why the view cannot be read."""
    if server.pgss_version is None or server.pgss_schema is None:
        raise CollectorError(
            Reason.MISSING_EXTENSION,
            f"extension pg_stat_statements is not installed in database {server.datname} "
            "(CREATE EXTENSION pg_stat_statements)")
    if sql.version_tuple(server.pgss_version) < sql.MIN_VERSION:
        raise CollectorError(
            Reason.MISSING_EXTENSION,
            f"pg_stat_statements {server.pgss_version} is older than 1.8 (PostgreSQL 13); "
            "run ALTER EXTENSION pg_stat_statements UPDATE")
    if not server.read_all_stats:
        # Without the role, other users' rows come back with NULL queryids: the sums would
        # silently miss them, so the collector reports the problem instead of partial data.
        raise CollectorError(
            Reason.PERMISSION,
            "the exporter's role is not a member of pg_read_all_stats "
            "(GRANT pg_read_all_stats TO <role>)")
    return server.pgss_version, server.pgss_schema


def _row(r: asyncpg.Record) -> StatementRow:
    return StatementRow(
        datname=r["datname"], user=r["username"], dbid=r["dbid"], userid=r["userid"],
        queryid=r["queryid"], top=r["top"], calls=r["calls"],
        exec_seconds=r["exec_ms"] / 1000.0, plan_seconds=r["plan_ms"] / 1000.0,
        rows=r["rows"], shared_blks_hit=r["shared_blks_hit"],
        shared_blks_read=r["shared_blks_read"], shared_blks_dirtied=r["shared_blks_dirtied"],
        shared_blks_written=r["shared_blks_written"], temp_blks_written=r["temp_blks_written"],
        blk_read_seconds=r["blk_read_ms"] / 1000.0, blk_write_seconds=r["blk_write_ms"] / 1000.0,
        wal_bytes=r["wal_bytes"], sum_squares=r["sumsq_ms2"] / 1e6,
    )


async def fetch(
    conn: asyncpg.Connection,
    server: ServerInfo,
    settings: ExporterSettings,
    selection: Selection,
    texts: TextCache,
) -> Statements:
    """Read the view without texts, select the series, fetch texts of unseen queryids."""
    version, schema = check_usable(server)
    dbids, userids, queryids = selection.kept_keys()
    records = await conn.fetch(sql.select_statements(version, schema),
                               settings.statements_top_n, dbids, userids, queryids)
    rows = selection.apply([_row(r) for r in records])
    exported = [r.queryid for r in rows if r.queryid is not None]
    missing = texts.missing(exported)
    if missing:
        found = {r["queryid"]: r["query"] or "" for r in await conn.fetch(
            sql.select_texts(schema), missing, settings.query_text_length)}
        for qid in missing:
            texts.put(qid, " ".join(found.get(qid, "").split()))
    info = None
    if sql.version_tuple(version) >= sql.HAS_INFO:
        r = await conn.fetchrow(sql.select_info(schema))
        info = StatementsInfo(dealloc=r["dealloc"], stats_reset=r["stats_reset"])
    by_id = {q: t for q in exported if (t := texts.get(q))}
    return Statements(rows=tuple(rows), texts=by_id, info=info, texts_fetched=len(missing))
