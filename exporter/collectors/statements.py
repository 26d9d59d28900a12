"""pg_stat_statements: top statements per database, `other`, texts of new queryids, info."""

from __future__ import annotations

import time

import asyncpg

from exporter.errors import CollectorError, Reason
from exporter.model import ServerInfo, StatementRow, Statements, StatementsInfo
from exporter.selection import NameCache, Raw, Selection, TextCache
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


def to_row(raw: Raw, top: bool, names: NameCache) -> StatementRow:
    """A row of the view (or an `other` sum) as a StatementRow in base units, with names."""
    (dbid, userid, queryid, calls, exec_ms, plan_ms, rows, shared_blks_hit, shared_blks_read,
     shared_blks_dirtied, shared_blks_written, temp_blks_written, blk_read_ms, blk_write_ms,
     wal_bytes, sumsq_ms2) = raw  # sql.COLUMNS order
    return StatementRow(
        datname=names.databases[dbid], user=names.roles[userid], dbid=dbid, userid=userid,
        queryid=queryid, top=top, calls=calls, exec_seconds=exec_ms / 1000.0,
        plan_seconds=plan_ms / 1000.0, rows=rows, shared_blks_hit=shared_blks_hit,
        shared_blks_read=shared_blks_read, shared_blks_dirtied=shared_blks_dirtied,
        shared_blks_written=shared_blks_written, temp_blks_written=temp_blks_written,
        blk_read_seconds=blk_read_ms / 1000.0, blk_write_seconds=blk_write_ms / 1000.0,
        wal_bytes=wal_bytes, sum_squares=sumsq_ms2 / 1e6,
    )


def _info(dealloc: int, stats_reset: float | None) -> StatementsInfo:
    return StatementsInfo(dealloc=dealloc, stats_reset=stats_reset)


async def read_view(conn: asyncpg.Connection, version: str, schema: str,
                    selection: Selection) -> tuple[list[Raw], list[Raw], StatementsInfo | None]:
    """(statements, rows summed per database and user, pg_stat_statements_info): only the
    candidates for the top lists when the last scrape left thresholds, else every statement.
    The info comes with the candidates (extension 1.9+), else from a query of its own."""
    info = None
    if not selection.thresholds:
        records = await conn.fetch(sql.select_statements(version, schema))
        if sql.version_tuple(version) >= sql.HAS_INFO:
            r = await conn.fetchrow(sql.select_info(schema))
            info = _info(r["dealloc"], r["stats_reset"])
        return records, [], info
    dbids = list(selection.thresholds)
    columns = list(zip(*selection.thresholds.values(), strict=True))
    records = await conn.fetch(sql.select_candidates(version, schema), dbids, *columns,
                               selection.held())
    statements, summed = [], []
    for r in records:
        if r[2] is not None:
            statements.append(r)
        elif r[0] is not None:
            summed.append(r)
        else:  # the pg_stat_statements_info row (sql.select_candidates)
            info = _info(r[3], r[4])
    return statements, summed, info


async def fetch(
    conn: asyncpg.Connection,
    server: ServerInfo,
    settings: ExporterSettings,
    selection: Selection,
    caches: tuple[TextCache, NameCache],
) -> Statements:
    """Read the view without texts, choose the series, look up names and unseen texts."""
    version, schema = check_usable(server)
    texts, names = caches
    statements, summed, info = await read_view(conn, version, schema, selection)
    chosen = selection.choose(statements, summed)
    raws = [raw for raw, _ in chosen.rows] + chosen.others
    dbids, userids = {r[0] for r in raws}, {r[1] for r in raws}
    missing_dbs, missing_roles = names.missing(dbids, userids, time.monotonic())
    if missing_dbs or missing_roles:
        found = await conn.fetch(sql.select_names(), missing_dbs, missing_roles)
        names.put(missing_dbs, missing_roles, [tuple(r) for r in found])
    rows = [to_row(raw, top, names) for raw, top in chosen.rows]
    rows += [to_row(raw, False, names) for raw in chosen.others]
    exported = [r.queryid for r in rows if r.queryid is not None]
    missing = texts.missing(exported)
    if missing:
        found = {r["queryid"]: r["query"] or "" for r in await conn.fetch(
            sql.select_texts(schema), missing, settings.query_text_length)}
        for qid in missing:
            texts.put(qid, " ".join(found.get(qid, "").split()))
    by_id = {q: t for q in exported if (t := texts.get(q))}
    return Statements(rows=tuple(rows), texts=by_id, info=info, texts_fetched=len(missing))
