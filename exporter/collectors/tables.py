"""pg_stat_user_tables: the top tables of the connected database."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import TABLE, Collector, Context, Out, Spec
from pgarchitect.db import mark

# Ranked by whichever is highest of rows read by sequential scans, live rows and dead rows,
# so a big table, a seq-scanned one and a bloated one all make the list ($1 of them).
TABLES = mark("""
SELECT current_database() AS datname, schemaname, relname,
       coalesce(seq_scan, 0)::int8 AS seq_scan, coalesce(idx_scan, 0)::int8 AS idx_scan,
       n_live_tup, n_dead_tup
FROM (
  SELECT t.*,
         least(rank() OVER (ORDER BY coalesce(seq_tup_read, 0) DESC),
               rank() OVER (ORDER BY n_live_tup DESC),
               rank() OVER (ORDER BY n_dead_tup DESC)) AS best
  FROM pg_stat_user_tables t
) AS ranked
ORDER BY best, schemaname, relname
LIMIT $1""")

SPECS = {
    "pg_stat_user_tables_seq_scan_total": Spec("counter", TABLE, "Sequential scans (top tables)."),
    "pg_stat_user_tables_idx_scan_total": Spec("counter", TABLE, "Index scans (top tables)."),
    "pg_stat_user_tables_n_live_tup": Spec("gauge", TABLE, "Estimated live rows (top tables)."),
    "pg_stat_user_tables_n_dead_tup": Spec("gauge", TABLE, "Estimated dead rows (top tables)."),
}


@dataclass(frozen=True)
class TableRow:
    """pg_stat_user_tables figures of one table."""

    datname: str
    schemaname: str
    relname: str
    seq_scan: int
    idx_scan: int
    n_live_tup: int
    n_dead_tup: int


async def fetch(conn: asyncpg.Connection, context: Context) -> list[TableRow]:
    """Scans and live/dead tuples of the top tables."""
    return [TableRow(**dict(r)) for r in await conn.fetch(TABLES, context.settings.top_tables)]


def emit(out: Out, target: str, rows: list[TableRow]) -> None:
    """Scans and tuples per table."""
    for tb in rows:
        labels = (target, tb.datname, tb.schemaname, tb.relname)
        out.add("pg_stat_user_tables_seq_scan_total", labels, tb.seq_scan)
        out.add("pg_stat_user_tables_idx_scan_total", labels, tb.idx_scan)
        out.add("pg_stat_user_tables_n_live_tup", labels, tb.n_live_tup)
        out.add("pg_stat_user_tables_n_dead_tup", labels, tb.n_dead_tup)


COLLECTOR = Collector("tables", SPECS, fetch, emit, slow=True)
