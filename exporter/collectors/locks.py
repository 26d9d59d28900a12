"""pg_locks: backends waiting for a lock, per database (0 where none wait)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import DATABASE, Collector, Context, Out, Spec
from pgarchitect.db import mark

# Row-lock waits are on transactionid locks whose `database` is NULL, so the database comes
# from the waiting backend, not from the lock.
LOCKS_WAITING = mark("""
SELECT d.datname, count(DISTINCT l.pid)::int8 AS waiting
FROM pg_database d
LEFT JOIN pg_stat_activity a ON a.datid = d.oid
LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
WHERE d.datallowconn
GROUP BY d.datname""")

SPECS = {"pg_locks_waiting": Spec("gauge", DATABASE, "Backends waiting for a lock.")}


@dataclass(frozen=True)
class LockWaiters:
    """Backends of one database waiting for a lock."""

    datname: str
    waiting: int


async def fetch(conn: asyncpg.Connection, context: Context) -> list[LockWaiters]:
    """Backends waiting for a lock, per database."""
    return [LockWaiters(r["datname"], r["waiting"]) for r in await conn.fetch(LOCKS_WAITING)]


def emit(out: Out, target: str, rows: list[LockWaiters]) -> None:
    """`pg_locks_waiting` per database."""
    for row in rows:
        out.add("pg_locks_waiting", (target, row.datname), row.waiting)


COLLECTOR = Collector("locks", SPECS, fetch, emit)
