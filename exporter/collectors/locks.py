"""pg_locks: backends waiting for a lock, and locks held by mode, per database."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import DATABASE, Collector, Context, Out, Spec, compat
from pgarchitect.db import mark

# Row-lock waits are on transactionid locks whose `database` is NULL, so the database of a
# waiter comes from the waiting backend, not from the lock. The locks by mode count those
# whose `database` is the database (relation, object and advisory locks), as
# postgres_exporter's pg_locks_count does.
LOCKS = mark("""
SELECT d.datname,
       (SELECT count(DISTINCT l.pid) FROM pg_stat_activity a
        JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
        WHERE a.datid = d.oid)::int8 AS waiting,
       ARRAY(SELECT lower(mode) FROM pg_locks WHERE database = d.oid
             GROUP BY 1 ORDER BY 1) AS modes,
       ARRAY(SELECT count(*)::int8 FROM pg_locks WHERE database = d.oid
             GROUP BY lower(mode) ORDER BY lower(mode)) AS counts
FROM pg_database d
WHERE d.datallowconn""")

# postgres_exporter's list: every mode gets a series, 0 when none is held.
MODES = ("accesssharelock", "rowsharelock", "rowexclusivelock", "shareupdateexclusivelock",
         "sharelock", "sharerowexclusivelock", "exclusivelock", "accessexclusivelock",
         "sireadlock")

SPECS = {
    "pg_locks_waiting": Spec("gauge", DATABASE, "Backends waiting for a lock."),
    "pg_locks_count": compat(
        "untyped", (*DATABASE, "mode"),
        "Locks held or awaited in this database by mode, a gauge (postgres_exporter)."),
}


@dataclass(frozen=True)
class DatabaseLocks:
    """Lock figures of one database."""

    datname: str
    waiting: int
    by_mode: dict[str, int]


async def fetch(conn: asyncpg.Connection, context: Context) -> list[DatabaseLocks]:
    """Backends waiting for a lock, and locks by mode, per database."""
    return [DatabaseLocks(r["datname"], r["waiting"], dict(zip(r["modes"], r["counts"],
                                                                strict=True)))
            for r in await conn.fetch(LOCKS)]


def emit(out: Out, target: str, rows: list[DatabaseLocks]) -> None:
    """`pg_locks_waiting` per database; `pg_locks_count` per database and mode."""
    for row in rows:
        out.add("pg_locks_waiting", (target, row.datname), row.waiting)
    if out.compat:
        for row in rows:
            for mode in MODES:
                out.add("pg_locks_count", (target, row.datname, mode), row.by_mode.get(mode, 0))


COLLECTOR = Collector("locks", SPECS, fetch, emit)
