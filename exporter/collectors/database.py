"""pg_stat_database counters and pg_locks waiters, per database."""

from __future__ import annotations

import asyncpg

from exporter.model import DatabaseGauge, DatabaseRow
from exporter.sql import database as sql
from exporter.sql import locks as locks_sql


async def fetch(conn: asyncpg.Connection) -> list[DatabaseRow]:
    """Commits, rollbacks, block hits and reads, temp bytes, deadlocks, conflicts."""
    return [DatabaseRow(**dict(r)) for r in await conn.fetch(sql.DATABASES)]


async def fetch_locks_waiting(conn: asyncpg.Connection) -> list[DatabaseGauge]:
    """Backends waiting for a lock, per database."""
    return [DatabaseGauge(r["datname"], float(r["waiting"]))
            for r in await conn.fetch(locks_sql.LOCKS_WAITING)]
