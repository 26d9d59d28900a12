"""pg_stat_statements: top statements per database, `other`, texts of new queryids, info.

The SQL is in `sql`, the rows and what they keep between scrapes in `rows`, the choice of the
series in `exporter.selection`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from operator import itemgetter

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec
from exporter.collectors.statements.rows import (
    STATEMENT,
    STATEMENT_VALUES,
    RowMemo,
    SampleMemo,
    Statements,
    StatementsInfo,
)
from exporter.collectors.statements.sql import (
    HAS_INFO,
    MIN_VERSION,
    select_candidates,
    select_info,
    select_names,
    select_statements,
    select_texts,
    version_tuple,
)
from exporter.errors import CollectorError, Reason
from exporter.model import ServerInfo
from exporter.selection import NameCache, Raw, Selection, TextCache
from pgarchitect.config import ExporterSettings


def check_usable(server: ServerInfo) -> tuple[str, str]:
    """(extension version, schema), or a CollectorError saying why the view cannot be read."""
    if server.pgss_version is None or server.pgss_schema is None:
        raise CollectorError(
            Reason.MISSING_EXTENSION,
            f"extension pg_stat_statements is not installed in database {server.datname} "
            "(CREATE EXTENSION pg_stat_statements)")
    if version_tuple(server.pgss_version) < MIN_VERSION:
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


async def read_view(conn: asyncpg.Connection, version: str, schema: str,
                    selection: Selection) -> tuple[list[Raw], list[Raw], StatementsInfo | None]:
    """(statements, rows summed per database and user, pg_stat_statements_info): only the
    candidates for the top lists when the last scrape left thresholds, else every statement.
    The info comes with the candidates (extension 1.9+), else from a query of its own."""
    info = None
    if not selection.thresholds:
        records = await conn.fetch(select_statements(version, schema))
        if version_tuple(version) >= HAS_INFO:
            r = await conn.fetchrow(select_info(schema))
            info = StatementsInfo(r["dealloc"], r["stats_reset"])
        return records, [], info
    dbids = list(selection.thresholds)
    columns = list(zip(*selection.thresholds.values(), strict=True))
    records = await conn.fetch(select_candidates(version, schema), dbids, *columns,
                               selection.held())
    statements, summed = [], []
    for r in records:
        if r[2] is not None:
            statements.append(r)
        elif r[0] is not None:
            summed.append(r)
        else:  # the pg_stat_statements_info row (select_candidates)
            info = StatementsInfo(r[3], r[4])
    return statements, summed, info


@dataclass
class Memory:
    """Per-target state kept across scrapes: which statements are held, names and texts.

    `pending`: exported queryids whose text is not cached yet, read after the round
    (`after`), off the scrape's path; `texts_read`: texts read so far, in a round or after."""

    selection: Selection
    texts: TextCache
    names: NameCache
    rows: RowMemo = field(default_factory=RowMemo)
    samples: SampleMemo = field(default_factory=SampleMemo)
    pending: set[int] = field(default_factory=set)
    texts_read: int = 0


# Database and role names are looked up again this often (seconds), so renames show up.
NAMES_TTL = 300.0


def new_memory(settings: ExporterSettings) -> Memory:
    """A target's statement memory."""
    return Memory(Selection(settings.statements_top_n, settings.statements_keep_scrapes,
                            settings.statements_max_series),
                  TextCache(settings.text_cache_size), NameCache(NAMES_TTL))


async def read_texts(conn: asyncpg.Connection, schema: str, memory: Memory, length: int,
                     queryids: list[int]) -> None:
    """Read and cache the texts of `queryids` (one read of the server's text file)."""
    found = {r["queryid"]: r["query"] or "" for r in await conn.fetch(
        select_texts(schema), queryids, length)}
    for qid in queryids:
        memory.texts.put(qid, " ".join(found.get(qid, "").split()))
    memory.texts_read += len(queryids)
    memory.pending.difference_update(queryids)


async def fetch(conn: asyncpg.Connection, context: Context) -> Statements:
    """Read the view without texts, choose the series, look up names; texts of queryids
    never exported before only in the first round (the rest: `after`)."""
    version, schema = check_usable(context.server)
    memory: Memory = context.memory
    selection, texts, names = memory.selection, memory.texts, memory.names
    statements, summed, info = await read_view(conn, version, schema, selection)
    chosen = selection.choose(statements, summed)
    raws = [raw for raw, _ in chosen.rows] + chosen.others
    dbids, userids = {r[0] for r in raws}, {r[1] for r in raws}
    missing_dbs, missing_roles = names.missing(dbids, userids, time.monotonic())
    if missing_dbs or missing_roles:
        found = await conn.fetch(select_names(), missing_dbs, missing_roles)
        names.put(missing_dbs, missing_roles, [tuple(r) for r in found])
    rows = memory.rows.rows([*chosen.rows, *((raw, False) for raw in chosen.others)], names)
    exported = [r.queryid for r in rows if r.queryid is not None]
    missing = texts.missing(exported)
    inline = missing if missing and not len(texts) else []
    if inline:  # the first round: every series would come without its text
        await read_texts(conn, schema, memory, context.settings.query_text_length, inline)
    else:
        memory.pending = set(missing)
    by_id = {q: t for q in exported if (t := texts.get(q))}
    return Statements(rows=tuple(rows), texts=by_id, info=info, texts_fetched=len(inline),
                      memo=memory.samples)


async def after(conn: asyncpg.Connection, context: Context) -> None:
    """After a round, off the scrape's path: the texts of statements new to the series.
    `pg_stat_statements(true)` reads the server's whole text file (tens of ms at 20,000
    statements), so a statement's `pg_stat_statements_query_info` comes with the next
    scrape instead of making this one wait for it."""
    memory: Memory = context.memory
    queryids = memory.texts.missing(memory.pending)
    if queryids:
        _, schema = check_usable(context.server)
        await read_texts(conn, schema, memory, context.settings.query_text_length, queryids)


SPECS: dict[str, Spec] = {
    **{name: Spec(kind, STATEMENT, text) for name, (kind, text, _) in STATEMENT_VALUES.items()},
    "pg_stat_statements_query_info": Spec(
        "gauge", (*STATEMENT, "query"), "Normalized statement text (cut), value 1."),
    "pg_stat_statements_dealloc_total": Spec(
        "counter", TARGET, "Times pg_stat_statements evicted its least-used entries (PG14+)."),
    "pg_stat_statements_stats_reset_timestamp_seconds": Spec(
        "gauge", TARGET, "When pg_stat_statements was last reset as a whole (PG14+)."),
}


def emit(out: Out, target: str, statements: Statements) -> None:
    """The statement families, column-wise; query texts; the view's info."""
    rows = statements.rows
    if rows:
        made = statements.memo.samples(target, rows, statements.texts)
        for i, name in enumerate(STATEMENT_VALUES):
            out.samples(name).extend(map(itemgetter(i), made))
        info = len(STATEMENT_VALUES)
        out.samples("pg_stat_statements_query_info").extend(
            m[info] for m in made if len(m) > info)
    stats = statements.info
    if stats is not None:
        out.add("pg_stat_statements_dealloc_total", (target,), stats.dealloc)
        if stats.stats_reset is not None:
            out.add("pg_stat_statements_stats_reset_timestamp_seconds", (target,),
                    stats.stats_reset)


# First in the registry: the largest read gets the first connection of the round.
COLLECTOR = Collector("statements", SPECS, fetch, emit, new_memory=new_memory, after=after)
