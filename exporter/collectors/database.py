"""pg_stat_database: per-database counters (the shared-objects row, datname NULL, skipped)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import asyncpg

from exporter.collectors.base import DATABASE, Collector, Context, Out, Spec
from pgarchitect.db import mark

DATABASES = mark("""
SELECT datname, blks_hit, blks_read, xact_commit, xact_rollback, deadlocks, temp_bytes,
       conflicts
FROM pg_stat_database
WHERE datname IS NOT NULL""")

SPECS = {
    "pg_stat_database_blks_hit_total": Spec("counter", DATABASE, "Buffer cache hits."),
    "pg_stat_database_blks_read_total": Spec(
        "counter", DATABASE, "Blocks read from disk or OS cache."),
    "pg_stat_database_xact_commit_total": Spec("counter", DATABASE, "Committed transactions."),
    "pg_stat_database_xact_rollback_total": Spec(
        "counter", DATABASE, "Rolled back transactions."),
    "pg_stat_database_deadlocks_total": Spec("counter", DATABASE, "Deadlocks detected."),
    "pg_stat_database_temp_bytes_total": Spec(
        "counter", DATABASE, "Bytes written to temp files."),
    "pg_stat_database_conflicts_total": Spec(
        "counter", DATABASE, "Queries cancelled by recovery conflicts (standbys)."),
}


@dataclass(frozen=True)
class DatabaseRow:
    """pg_stat_database counters of one database."""

    datname: str
    blks_hit: int
    blks_read: int
    xact_commit: int
    xact_rollback: int
    deadlocks: int
    temp_bytes: int
    conflicts: int


_COUNTERS = [f.name for f in fields(DatabaseRow) if f.name != "datname"]


async def fetch(conn: asyncpg.Connection, context: Context) -> list[DatabaseRow]:
    """Commits, rollbacks, block hits and reads, temp bytes, deadlocks, conflicts."""
    return [DatabaseRow(**dict(r)) for r in await conn.fetch(DATABASES)]


def emit(out: Out, target: str, rows: list[DatabaseRow]) -> None:
    """One `pg_stat_database_<column>_total` sample per database and column."""
    for d in rows:
        for column in _COUNTERS:
            out.add(f"pg_stat_database_{column}_total", (target, d.datname), getattr(d, column))


COLLECTOR = Collector("database", SPECS, fetch, emit)
