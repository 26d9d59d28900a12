"""pg_stat_database: per-database counters (the shared-objects row, datname NULL, skipped)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import DATABASE, Collector, Context, Out, Spec, compat
from pgarchitect.db import mark

DATABASES = mark("""
SELECT datid::int8 AS datid, datname, numbackends, blks_hit, blks_read, xact_commit,
       xact_rollback, deadlocks, temp_bytes, conflicts, tup_returned, tup_fetched,
       tup_inserted, tup_updated, tup_deleted
FROM pg_stat_database
WHERE datname IS NOT NULL""")

# Ours: base units and `_total` on counters.
OWN = ("blks_hit", "blks_read", "xact_commit", "xact_rollback", "deadlocks", "temp_bytes",
       "conflicts")
# postgres_exporter's pg_stat_database names (counters without `_total`: untyped here).
COMPAT_COUNTERS = ("xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned",
                   "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted", "conflicts",
                   "deadlocks")
COMPAT_LABELS = ("target", "datid", "datname")

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
    "pg_stat_database_numbackends": compat(
        "gauge", COMPAT_LABELS, "Backends connected to this database (postgres_exporter)."),
    **{f"pg_stat_database_{c}": compat(
        "untyped", COMPAT_LABELS, f"pg_stat_database.{c}, a counter (postgres_exporter).")
       for c in COMPAT_COUNTERS},
}


@dataclass(frozen=True)
class DatabaseRow:
    """pg_stat_database figures of one database."""

    datid: int
    datname: str
    numbackends: int
    blks_hit: int
    blks_read: int
    xact_commit: int
    xact_rollback: int
    deadlocks: int
    temp_bytes: int
    conflicts: int
    tup_returned: int
    tup_fetched: int
    tup_inserted: int
    tup_updated: int
    tup_deleted: int


async def fetch(conn: asyncpg.Connection, context: Context) -> list[DatabaseRow]:
    """Commits, rollbacks, block hits and reads, temp bytes, deadlocks, conflicts, tuples."""
    return [DatabaseRow(**dict(r)) for r in await conn.fetch(DATABASES)]


def emit(out: Out, target: str, rows: list[DatabaseRow]) -> None:
    """`pg_stat_database_<column>_total` per database and column; postgres_exporter's names
    from the same rows."""
    for d in rows:
        for column in OWN:
            out.add(f"pg_stat_database_{column}_total", (target, d.datname), getattr(d, column))
    if not out.compat:
        return
    for d in rows:
        ids = (target, str(d.datid), d.datname)
        out.add("pg_stat_database_numbackends", ids, d.numbackends)
        for column in COMPAT_COUNTERS:
            out.add(f"pg_stat_database_{column}", ids, getattr(d, column))


COLLECTOR = Collector("database", SPECS, fetch, emit)
