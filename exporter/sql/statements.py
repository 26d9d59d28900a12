"""pg_stat_statements: column variants for extension versions 1.8 (PG13) to 1.12 (PG18).

The selection runs where the data is: the server aggregates the two toplevel rows of a
statement, takes the top $1 per database by total time, calls, blocks read and temp blocks
written, keeps the union of the top lists plus the keys the exporter still holds (hysteresis,
passed as arrays), and sums every other statement into one row per database and user (queryid
NULL). Only a few hundred rows cross the wire, however large the view.
"""

from __future__ import annotations

from pgarchitect.db import MARKER

# Oldest supported: 1.8 (PostgreSQL 13) renamed total_time to total_exec_time.
MIN_VERSION = (1, 8)


def version_tuple(text: str) -> tuple[int, ...]:
    """'1.10' -> (1, 10)."""
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _columns(version: tuple[int, ...]) -> dict[str, tuple[str, str]]:
    """Aggregate name -> (per-row expression, SQL type)."""
    if version >= (1, 11):  # PostgreSQL 17 split block timing into shared and local
        read = "shared_blk_read_time + local_blk_read_time"
        write = "shared_blk_write_time + local_blk_write_time"
    else:
        read, write = "blk_read_time", "blk_write_time"
    return {
        "calls": ("calls", "int8"),
        "exec_ms": ("total_exec_time", "float8"),
        "plan_ms": ("total_plan_time", "float8"),
        "rows": ("rows", "int8"),
        "shared_blks_hit": ("shared_blks_hit", "int8"),
        "shared_blks_read": ("shared_blks_read", "int8"),
        "shared_blks_dirtied": ("shared_blks_dirtied", "int8"),
        "shared_blks_written": ("shared_blks_written", "int8"),
        "temp_blks_written": ("temp_blks_written", "int8"),
        "blk_read_ms": (read, "float8"),
        "blk_write_ms": (write, "float8"),
        "wal_bytes": ("wal_bytes", "float8"),
        "sumsq_ms2": ("calls * (stddev_exec_time ^ 2 + mean_exec_time ^ 2)", "float8"),
    }


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def function(schema: str) -> str:
    """The schema-qualified pg_stat_statements function."""
    return f"{_ident(schema)}.pg_stat_statements"


def raw_columns(ext_version: str) -> str:
    """The per-row column list (for the bare-fetch baseline of the benchmark)."""
    cols = _columns(version_tuple(ext_version))
    return ", ".join(["dbid", "userid", "queryid"] + [f"{e} AS {n}" for n, (e, _) in cols.items()])


def select_statements(ext_version: str, schema: str) -> str:
    """Top statements per database plus `other`; $1 = N, $2/$3/$4 = kept dbid/userid/queryid."""
    cols = _columns(version_tuple(ext_version))
    # Sums in float8: sum(int8) would be numeric, several times slower over thousands of rows.
    # Counters stay exact up to 2^53.
    inner = ",\n         ".join(f"sum(({e})::float8) AS {n}" for n, (e, _) in cols.items())
    outer = ",\n         ".join(f"sum(s.{n})::{t} AS {n}" for n, (_, t) in cols.items())
    names = ", ".join(f"g.{n}" for n in cols)
    lists = "\n    UNION\n".join(
        f"    (SELECT s.dbid, s.userid, s.queryid FROM s WHERE s.dbid = dbs.dbid{cond}\n"
        f"     ORDER BY s.{col} DESC, s.queryid LIMIT $1)"
        for col, cond in (("exec_ms", ""), ("calls", ""),
                          ("shared_blks_read", " AND s.shared_blks_read > 0"),
                          ("temp_blks_written", " AND s.temp_blks_written > 0")))
    # Top-N per list and database with LIMIT (a bounded heap sort) rather than window
    # functions over every row: the ranking costs a fraction of reading the view.
    return f"""{MARKER}
WITH s AS MATERIALIZED (
  SELECT dbid, userid, queryid,
         {inner}
  FROM {function(schema)}(false)
  WHERE queryid IS NOT NULL
  GROUP BY dbid, userid, queryid
), top AS (
  SELECT t.dbid, t.userid, t.queryid
  FROM (SELECT DISTINCT dbid FROM s) AS dbs, LATERAL (
{lists}
  ) AS t
), k AS (
  SELECT DISTINCT * FROM unnest($2::oid[], $3::oid[], $4::int8[]) AS k(dbid, userid, queryid)
)
SELECT coalesce(d.datname, g.dbid::text) AS datname,
       coalesce(u.rolname, g.userid::text) AS username,
       g.dbid::int8 AS dbid, g.userid::int8 AS userid, g.queryid, g.top, {names}
FROM (
  SELECT s.dbid, s.userid,
         CASE WHEN top.queryid IS NOT NULL OR k.queryid IS NOT NULL THEN s.queryid END
           AS queryid,
         bool_or(top.queryid IS NOT NULL) AS top,
         {outer}
  FROM s
  LEFT JOIN top ON top.dbid = s.dbid AND top.userid = s.userid AND top.queryid = s.queryid
  LEFT JOIN k ON k.dbid = s.dbid AND k.userid = s.userid AND k.queryid = s.queryid
  GROUP BY 1, 2, 3
) AS g
LEFT JOIN pg_database d ON d.oid = g.dbid
LEFT JOIN pg_roles u ON u.oid = g.userid"""


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


HAS_INFO = (1, 9)
