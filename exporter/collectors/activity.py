"""pg_stat_activity: connections by state and bounded application_name; oldest transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import asyncpg

from exporter.model import ActivityRow, DatabaseGauge
from exporter.sql import activity as sql

OTHER = "other"


def bound_application_names(rows: Sequence[ActivityRow], limit: int) -> list[ActivityRow]:
    """Keep the `limit` application_names with most connections; the rest become `other`."""
    totals: Counter[str] = Counter()
    for row in rows:
        totals[row.application_name] += row.count
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    keep = set(ranked[:limit])
    merged: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        name = row.application_name if row.application_name in keep else OTHER
        merged[(row.datname, row.state, name)] += row.count
    return [ActivityRow(d, s, a, n) for (d, s, a), n in sorted(merged.items())]


async def fetch(conn: asyncpg.Connection, max_application_names: int) -> list[ActivityRow]:
    """Client backends by database, state and application_name (bounded)."""
    rows = [ActivityRow(r["datname"], r["state"], r["application_name"], r["count"])
            for r in await conn.fetch(sql.CONNECTIONS)]
    return bound_application_names(rows, max_application_names)


async def fetch_max_tx_duration(conn: asyncpg.Connection) -> list[DatabaseGauge]:
    """Age of the oldest open transaction per database (0 when none is open)."""
    return [DatabaseGauge(r["datname"], r["seconds"])
            for r in await conn.fetch(sql.MAX_TX_DURATION)]
