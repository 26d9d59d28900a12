"""pg_stat_statements: top statements per database, `other`, texts of new queryids, info.

SQL variants: extension versions 1.8 (PG13) to 1.12 (PG18).

Two reads of `pg_stat_statements(false)` (never texts):
- `select_statements`: every row, the collector's columns, nothing else (the benchmark's
  bare-fetch baseline). Used for the first scrape and whenever the candidate thresholds are
  not known; the exporter chooses the top lists over the rows (`exporter.selection`).
- `select_candidates`: one pass with a hash aggregate that returns only the statements that
  can be in this scrape's top lists (above the last scrape's thresholds, or held) and one
  summed row per database and user for the rest, so a few hundred rows cross the wire
  instead of every statement.
Measured with 5,000 statements on PostgreSQL 18, an earlier server-side selection (a
materialized CTE, per-database `ORDER BY … LIMIT` lists, joins, two aggregations) took about
twice the plain read; the candidate query takes less than the plain read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import NamedTuple, cast

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec
from exporter.errors import CollectorError, Reason
from exporter.model import ServerInfo
from exporter.selection import COLUMNS, NameCache, Raw, Selection, TextCache
from pgarchitect.config import ExporterSettings
from pgarchitect.db import mark

OTHER_QUERYID = "other"
STATEMENT = ("target", "user", "datname", "queryid")

# Oldest supported: 1.8 (PostgreSQL 13) renamed total_time to total_exec_time.
MIN_VERSION = (1, 8)
HAS_INFO = (1, 9)


def version_tuple(text: str) -> tuple[int, ...]:
    """'1.10' -> (1, 10)."""
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _expressions(version: tuple[int, ...]) -> dict[str, str]:
    """Column name -> expression over one row of the view."""
    if version >= (1, 11):  # PostgreSQL 17 split block timing into shared and local
        read = "shared_blk_read_time + local_blk_read_time"
        write = "shared_blk_write_time + local_blk_write_time"
    else:
        read, write = "blk_read_time", "blk_write_time"
    return {
        "dbid": "dbid", "userid": "userid", "queryid": "queryid",
        "calls": "calls", "exec_ms": "total_exec_time", "plan_ms": "total_plan_time",
        "rows": "rows", "shared_blks_hit": "shared_blks_hit",
        "shared_blks_read": "shared_blks_read", "shared_blks_dirtied": "shared_blks_dirtied",
        "shared_blks_written": "shared_blks_written", "temp_blks_written": "temp_blks_written",
        "blk_read_ms": read, "blk_write_ms": write,
        # numeric in the view: float8 decodes several times faster than Decimal
        "wal_bytes": "wal_bytes::float8",
        # sum of squared execution times (ms^2), so that `other` gets a pooled stddev
        "sumsq_ms2": "calls * (stddev_exec_time ^ 2 + mean_exec_time ^ 2)",
    }


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def function(schema: str) -> str:
    """The schema-qualified pg_stat_statements function."""
    return f"{_ident(schema)}.pg_stat_statements"


def select_statements(ext_version: str, schema: str) -> str:
    """Every statement of the view without its text, COLUMNS in order."""
    exprs = _expressions(version_tuple(ext_version))
    columns = ", ".join(e if e == n else f"{e} AS {n}" for n, e in exprs.items())
    return mark(f"SELECT {columns} FROM {function(schema)}(false) WHERE queryid IS NOT NULL")


# Per-row expressions with their SQL type, for the sums of select_candidates.
_INTEGER = {"calls", "rows", "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied",
            "shared_blks_written", "temp_blks_written"}


def select_candidates(ext_version: str, schema: str) -> str:
    """The candidate statements one per key, the rest summed per database and user.

    $1..$5: per database, the thresholds of the last scrape's top lists (dbid, total time ms,
    calls, shared blocks read, temp blocks written); $6: the queryids the exporter still
    holds. A row above any threshold of its database, held, or of a database without
    thresholds is a candidate (grouped by dbid, userid, queryid: both toplevel rows of a
    statement become one row); every other row goes into the (dbid, userid, NULL) group.
    Counters only grow, so the last scrape's n-th largest value is a lower bound of this
    one's and no statement of this scrape's top lists is left out (exporter.selection).
    Sums in float8: sum(int8) would be numeric, several times slower; exact up to 2^53.
    From extension 1.9 on, one last row (dbid NULL) carries pg_stat_statements_info.
    """
    version = version_tuple(ext_version)
    exprs = _expressions(version)
    sums = ", ".join(
        f"sum(({e})::float8)" + ("::int8" if n in _INTEGER else "") + f" AS {n}"
        for n, e in exprs.items() if n not in ("dbid", "userid", "queryid"))
    return mark(f"""
SELECT dbid, userid,
       CASE WHEN t_dbid IS NULL OR k_queryid IS NOT NULL OR total_exec_time > t_exec_ms
                 OR calls > t_calls OR shared_blks_read > t_blks_read
                 OR temp_blks_written > t_temp_blks THEN queryid END AS queryid,
       {sums}
FROM {function(schema)}(false)
LEFT JOIN unnest($1::oid[], $2::float8[], $3::int8[], $4::int8[], $5::int8[])
  AS t(t_dbid, t_exec_ms, t_calls, t_blks_read, t_temp_blks) ON t_dbid = dbid
LEFT JOIN (SELECT DISTINCT k FROM unnest($6::int8[]) AS k) AS k(k_queryid) ON k_queryid = queryid
WHERE queryid IS NOT NULL
GROUP BY 1, 2, 3{_info_row(version, schema)}""")


def _info_row(version: tuple[int, ...], schema: str) -> str:
    """pg_stat_statements_info as one more row of select_candidates (saves a round trip):
    dbid NULL, dealloc in `calls`, stats_reset (epoch seconds) in `exec_ms`."""
    if version < HAS_INFO:
        return ""
    rest = ", ".join(["NULL"] * (len(COLUMNS) - 5))
    return f"""
UNION ALL
SELECT NULL, NULL, NULL, dealloc, extract(epoch FROM stats_reset)::float8, {rest}
FROM {_ident(schema)}.pg_stat_statements_info"""


def select_names() -> str:
    """Names of the given database ($1) and role ($2) oids: (kind 'd' | 'r', oid, name)."""
    return mark("""
SELECT 'd' AS kind, oid::int8 AS oid, datname::text AS name FROM pg_database WHERE oid = ANY($1)
UNION ALL
SELECT 'r', oid::int8, rolname::text FROM pg_roles WHERE oid = ANY($2)""")


def select_texts(schema: str) -> str:
    """Normalized texts of the given queryids ($1), cut to $2 characters."""
    return mark(f"""
SELECT queryid, left(min(query), $2) AS query
FROM {function(schema)}(true)
WHERE queryid = ANY($1::int8[])
GROUP BY queryid""")


def select_info(schema: str) -> str:
    """pg_stat_statements_info (extension 1.9+, PostgreSQL 14+)."""
    return mark(f"""
SELECT dealloc, extract(epoch FROM stats_reset)::float8 AS stats_reset
FROM {_ident(schema)}.pg_stat_statements_info""")


class StatementRow(NamedTuple):
    """One exported statement series (queryid None: the `other` remainder of a db/user).

    A NamedTuple rather than a frozen dataclass: hundreds are made every scrape, and a frozen
    dataclass of 19 fields takes several times longer to build.
    """

    datname: str
    user: str
    dbid: int
    userid: int
    queryid: int | None
    top: bool
    calls: int
    exec_seconds: float
    plan_seconds: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    shared_blks_dirtied: int
    shared_blks_written: int
    temp_blks_written: int
    blk_read_seconds: float
    blk_write_seconds: float
    wal_bytes: float
    sum_squares: float  # sum of squared execution times (s^2): pooled stddev across rows

    @property
    def key(self) -> tuple[int, int, int | None]:
        """(dbid, userid, queryid): one series per key."""
        return (self.dbid, self.userid, self.queryid)

    @property
    def mean_seconds(self) -> float:
        """Mean execution time since the statistics were reset."""
        return self.exec_seconds / self.calls if self.calls else 0.0

    @property
    def stddev_seconds(self) -> float:
        """Population standard deviation of execution time, pooled over merged rows."""
        if not self.calls:
            return 0.0
        mean = self.mean_seconds
        return float(max(self.sum_squares / self.calls - mean * mean, 0.0) ** 0.5)


@dataclass(frozen=True)
class StatementsInfo:
    """pg_stat_statements_info (PG14+): evictions and the last reset."""

    dealloc: int
    stats_reset: float | None


Sample = tuple[tuple[str, ...], float]


class SampleMemo:
    """The samples of the last exposition's statement rows, by row: a row that is the same
    object again (the statement did not run since, `RowMemo`) gets the very sample tuples
    it had, so the exposition writer keeps its lines instead of writing them again
    (`exposition.render`). Holds only the rows of the last emit (and so keeps them alive:
    an id found is the id of that very row)."""

    def __init__(self) -> None:
        self._target = ""
        self._last: dict[int, tuple[Sample, ...]] = {}
        self._rows: Sequence[StatementRow] = ()

    def samples(self, target: str, rows: Sequence[StatementRow],
                texts: dict[int, str]) -> list[tuple[Sample, ...]]:
        """Per row: one sample per family of STATEMENT_VALUES, then its query_info (if any)."""
        if target != self._target:
            self._target, self._last = target, {}
        ids = list(map(id, rows))
        out: list[tuple[Sample, ...] | None] = list(map(self._last.get, ids))
        for i in [i for i, hit in enumerate(out) if hit is None]:
            row = rows[i]
            labels = (target, row.user, row.datname,
                      OTHER_QUERYID if row.queryid is None else str(row.queryid))
            made: tuple[Sample, ...] = tuple(
                (labels, value(row)) for _, _, value in STATEMENT_VALUES.values())
            text = None if row.queryid is None else texts.get(row.queryid)
            if text is not None:
                made += (((*labels, text), 1.0),)
            out[i] = made
        done = cast(list[tuple[Sample, ...]], out)
        self._last = dict(zip(ids, done, strict=True))
        self._rows = rows  # the ids above stay theirs while they are remembered
        return done


class RowMemo:
    """The last scrape's rows by key: a statement whose counters, place (on top or not) and
    names are what they were keeps its StatementRow object (`SampleMemo`)."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, int, int | None], tuple[Raw, bool, StatementRow]] = {}

    def rows(self, chosen: Sequence[tuple[Raw, bool]], names: NameCache) -> list[StatementRow]:
        """StatementRows of `chosen`, the unchanged ones from the last scrape."""
        last, now = self._last, {}
        out = []
        for raw, top in chosen:
            key = (raw[0], raw[1], raw[2])
            hit = last.get(key)
            if hit is not None and hit[1] == top and tuple(hit[0]) == tuple(raw):
                row = hit[2]
                if row.datname is not names.databases[row.dbid] or (
                        row.user is not names.roles[row.userid]):
                    row = to_row(raw, top, names)
            else:
                row = to_row(raw, top, names)
            now[key] = (raw, top, row)
            out.append(row)
        self._last = now
        return out


@dataclass(frozen=True)
class Statements:
    """What the statements collector returns (`memo`: see SampleMemo)."""

    rows: tuple[StatementRow, ...]
    texts: dict[int, str]
    info: StatementsInfo | None
    texts_fetched: int = 0
    memo: SampleMemo = field(default_factory=SampleMemo, compare=False, repr=False)


# Statement families: name -> (kind, help, value of a row).
STATEMENT_VALUES: dict[str, tuple[str, str, Callable[[StatementRow], float]]] = {
    "pg_stat_statements_calls_total": (
        "counter", "Times the statement was executed.", attrgetter("calls")),
    "pg_stat_statements_seconds_total": (
        "counter", "Total execution time of the statement.", attrgetter("exec_seconds")),
    "pg_stat_statements_rows_total": (
        "counter", "Rows retrieved or affected by the statement.", attrgetter("rows")),
    "pg_stat_statements_block_read_seconds_total": (
        "counter", "Time spent reading blocks (shared and local).", attrgetter("blk_read_seconds")),
    "pg_stat_statements_block_write_seconds_total": (
        "counter", "Time spent writing blocks (shared and local).",
        attrgetter("blk_write_seconds")),
    "pg_stat_statements_plan_seconds_total": (
        "counter", "Total planning time of the statement (pg_stat_statements.track_planning).",
        attrgetter("plan_seconds")),
    "pg_stat_statements_shared_blocks_hit_total": (
        "counter", "Shared buffer hits.", attrgetter("shared_blks_hit")),
    "pg_stat_statements_shared_blocks_read_total": (
        "counter", "Shared blocks read from outside shared buffers.",
        attrgetter("shared_blks_read")),
    "pg_stat_statements_shared_blocks_dirtied_total": (
        "counter", "Shared blocks dirtied.", attrgetter("shared_blks_dirtied")),
    "pg_stat_statements_shared_blocks_written_total": (
        "counter", "Shared blocks written.", attrgetter("shared_blks_written")),
    "pg_stat_statements_temp_blocks_written_total": (
        "counter", "Temp blocks written (spills to disk).", attrgetter("temp_blks_written")),
    "pg_stat_statements_wal_bytes_total": (
        "counter", "WAL generated by the statement.", attrgetter("wal_bytes")),
    "pg_stat_statements_mean_seconds": (
        "gauge", "Mean execution time since the statistics were reset.",
        attrgetter("mean_seconds")),
    "pg_stat_statements_stddev_seconds": (
        "gauge", "Standard deviation of the execution time since the statistics were reset.",
        attrgetter("stddev_seconds")),
}


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


def to_row(raw: Raw, top: bool, names: NameCache) -> StatementRow:
    """A row of the view (or an `other` sum) as a StatementRow in base units, with names."""
    (dbid, userid, queryid, calls, exec_ms, plan_ms, rows, shared_blks_hit, shared_blks_read,
     shared_blks_dirtied, shared_blks_written, temp_blks_written, blk_read_ms, blk_write_ms,
     wal_bytes, sumsq_ms2) = raw  # COLUMNS order
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
        records = await conn.fetch(select_statements(version, schema))
        if version_tuple(version) >= HAS_INFO:
            r = await conn.fetchrow(select_info(schema))
            info = _info(r["dealloc"], r["stats_reset"])
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
            info = _info(r[3], r[4])
    return statements, summed, info


@dataclass
class Memory:
    """Per-target state kept across scrapes: which statements are held, names and texts."""

    selection: Selection
    texts: TextCache
    names: NameCache
    rows: RowMemo = field(default_factory=RowMemo)
    samples: SampleMemo = field(default_factory=SampleMemo)


# Database and role names are looked up again this often (seconds), so renames show up.
NAMES_TTL = 300.0


def new_memory(settings: ExporterSettings) -> Memory:
    """A target's statement memory."""
    return Memory(Selection(settings.statements_top_n, settings.statements_keep_scrapes,
                            settings.statements_max_series),
                  TextCache(settings.text_cache_size), NameCache(NAMES_TTL))


async def fetch(conn: asyncpg.Connection, context: Context) -> Statements:
    """Read the view without texts, choose the series, look up names and unseen texts."""
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
    if missing:
        found = {r["queryid"]: r["query"] or "" for r in await conn.fetch(
            select_texts(schema), missing, context.settings.query_text_length)}
        for qid in missing:
            texts.put(qid, " ".join(found.get(qid, "").split()))
    by_id = {q: t for q in exported if (t := texts.get(q))}
    return Statements(rows=tuple(rows), texts=by_id, info=info, texts_fetched=len(missing),
                      memo=memory.samples)


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
COLLECTOR = Collector("statements", SPECS, fetch, emit, new_memory=new_memory)
