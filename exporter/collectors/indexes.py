"""pg_stat_user_indexes: the most used indexes and the largest never-used ones."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import TABLE, Collector, Context, Out, Spec
from pgarchitect.db import mark

# The $1 most used indexes and up to $1 never-used ones (largest first).
INDEXES = mark("""
(SELECT current_database() AS datname, schemaname, relname, indexrelname,
        idx_scan::int8 AS idx_scan
 FROM pg_stat_user_indexes
 WHERE idx_scan > 0
 ORDER BY idx_scan DESC, schemaname, indexrelname
 LIMIT $1)
UNION ALL
(SELECT current_database(), schemaname, relname, indexrelname, 0::int8
 FROM pg_stat_user_indexes
 WHERE idx_scan = 0
 ORDER BY pg_relation_size(indexrelid) DESC, schemaname, indexrelname
 LIMIT $1)""")

SPECS = {
    "pg_stat_user_indexes_idx_scan_total": Spec(
        "counter", (*TABLE, "indexrelname"),
        "Index scans (most used indexes and never-used ones)."),
}


@dataclass(frozen=True)
class IndexRow:
    """pg_stat_user_indexes figures of one index."""

    datname: str
    schemaname: str
    relname: str
    indexrelname: str
    idx_scan: int


async def fetch(conn: asyncpg.Connection, context: Context) -> list[IndexRow]:
    """The most used indexes and the largest never-used ones."""
    return [IndexRow(**dict(r))
            for r in await conn.fetch(INDEXES, context.settings.top_indexes)]


def emit(out: Out, target: str, rows: list[IndexRow]) -> None:
    """Index scans per index."""
    for ix in rows:
        out.add("pg_stat_user_indexes_idx_scan_total",
                (target, ix.datname, ix.schemaname, ix.relname, ix.indexrelname), ix.idx_scan)


COLLECTOR = Collector("indexes", SPECS, fetch, emit, slow=True)
