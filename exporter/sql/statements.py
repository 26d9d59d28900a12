"""pg_stat_statements: column variants for extension versions 1.8 (PG13) to 1.12 (PG18).

One plain read of `pg_stat_statements(false)` (no texts, no joins, no aggregation): the same
query the benchmark uses as its bare-fetch baseline. Choosing the top statements and summing
the rest is done by the exporter (`exporter.selection`): measured on PostgreSQL 18 with 5,000
statements, the server-side version of that selection (a materialized CTE, per-database
`ORDER BY … LIMIT` lists, joins and two aggregations) took about twice as long as this read,
while the selection over the records in Python costs a few milliseconds.
"""

from __future__ import annotations

from pgarchitect.db import MARKER

# Oldest supported: 1.8 (PostgreSQL 13) renamed total_time to total_exec_time.
MIN_VERSION = (1, 8)
HAS_INFO = (1, 9)

# Result columns, in order: the key, then the counters (summed into `other`).
COLUMNS = ("dbid", "userid", "queryid", "calls", "exec_ms", "plan_ms", "rows",
           "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied", "shared_blks_written",
           "temp_blks_written", "blk_read_ms", "blk_write_ms", "wal_bytes", "sumsq_ms2")


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
    return (f"{MARKER} SELECT {columns} FROM {function(schema)}(false) "
            "WHERE queryid IS NOT NULL")


def select_names() -> str:
    """Names of the given database ($1) and role ($2) oids: (kind 'd' | 'r', oid, name)."""
    return f"""{MARKER}
SELECT 'd' AS kind, oid::int8 AS oid, datname::text AS name FROM pg_database WHERE oid = ANY($1)
UNION ALL
SELECT 'r', oid::int8, rolname::text FROM pg_roles WHERE oid = ANY($2)"""


def select_texts(schema: str) -> str:
    """Normalized texts of the given queryids ($1), cut to $2 characters."""
    return f"""{MARKER}
SELECT queryid, left(min(query), $2) AS query
FROM {function(schema)}(true)
WHERE queryid = ANY($1::int8[])
GROUP BY queryid"""


def select_info(schema: str) -> str:
    """pg_stat_statements_info (extension 1.9+, PostgreSQL 14+)."""
    return f"""{MARKER}
SELECT dealloc, extract(epoch FROM stats_reset)::float8 AS stats_reset
FROM {_ident(schema)}.pg_stat_statements_info"""

