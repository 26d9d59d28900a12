"""The statements collector's SQL: extension versions 1.8 (PG13) to 1.12 (PG18).

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
Texts come from `pg_stat_statements(true)` (`select_texts`), which reads the server's whole
text file whatever it is asked for: only for queryids whose text is not cached.
"""

from __future__ import annotations

from exporter.selection import COLUMNS
from pgarchitect.db import mark

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
