"""pg_stat_activity: connections by state and bounded application_name; oldest transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import DATABASE, Collector, Context, Out, Spec, compat
from pgarchitect.db import mark

OTHER = "other"

# The exporter's own backend is left out: it is always active while it asks. Every backend
# type is read (postgres_exporter's pg_stat_activity_count counts them all); ours keep the
# client backends. `max_tx`: the oldest open transaction of the group (postgres_exporter's
# max_tx_duration, measured from now()). After them, in the same statement (one round trip,
# one snapshot of the view), one row per database that allows connections with `client` NULL:
# the age of its oldest open transaction of a client backend, measured from clock_timestamp().
ACTIVITY = mark("""
SELECT coalesce(datname, '') AS datname, coalesce(state, 'unknown') AS state,
       coalesce(application_name, '') AS application_name,
       backend_type = 'client backend' AS client, count(*)::int8 AS count,
       coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 AS max_tx
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT d.datname, NULL, NULL, NULL, NULL,
       coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start)), 0)::float8
FROM pg_database d
LEFT JOIN pg_stat_activity a
       ON a.datid = d.oid AND a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()
      AND a.backend_type = 'client backend'
WHERE d.datallowconn
GROUP BY d.datname""")

# postgres_exporter's states: each gets a series per database, 0 when no backend is in it.
STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)",
          "fastpath function call", "disabled")

SPECS = {
    "pg_stat_activity_connections": Spec(
        "gauge", (*DATABASE, "state", "application_name"),
        "Client connections by state and application_name (bounded; the rest is 'other')."),
    "pg_stat_activity_max_tx_duration_seconds": Spec(
        "gauge", DATABASE, "Age of the oldest open transaction (0 when none is open)."),
    "pg_stat_activity_count": compat(
        "untyped", (*DATABASE, "state"),
        "Backends of every type in this state, a gauge (postgres_exporter)."),
    "pg_stat_activity_max_tx_duration": compat(
        "gauge", (*DATABASE, "state"),
        "Age in seconds of the oldest transaction of the backends in this state "
        "(postgres_exporter)."),
}


@dataclass(frozen=True)
class ActivityRow:
    """Client backends by database, state and (bounded) application_name."""

    datname: str
    state: str
    application_name: str
    count: int


@dataclass(frozen=True)
class StateRow:
    """Backends of every type of one database in one state (postgres_exporter's view)."""

    datname: str
    state: str
    count: int
    max_tx_seconds: float


@dataclass(frozen=True)
class TransactionAge:
    """The age of the oldest open transaction of one database (0 when none is open)."""

    datname: str
    seconds: float


@dataclass(frozen=True)
class Activity:
    """What the activity collector returns."""

    connections: list[ActivityRow]
    max_tx_duration: list[TransactionAge]
    states: list[StateRow]


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


async def fetch(conn: asyncpg.Connection, context: Context) -> Activity:
    """Client backends by database, state and application_name (bounded); oldest
    transaction per database."""
    records: list[asyncpg.Record] = []
    ages: list[TransactionAge] = []
    for r in await conn.fetch(ACTIVITY):
        if r["client"] is None:
            ages.append(TransactionAge(r["datname"], r["max_tx"]))
        else:
            records.append(r)
    rows = [ActivityRow(r["datname"], r["state"], r["application_name"], r["count"])
            for r in records if r["client"]]
    return Activity(bound_application_names(rows, context.settings.max_application_names), ages,
                    by_state([a.datname for a in ages], records))


def by_state(databases: Sequence[str], records: Sequence[asyncpg.Record]) -> list[StateRow]:
    """Every (database, state) pair of postgres_exporter's list, from the grouped rows."""
    counts: Counter[tuple[str, str]] = Counter()
    oldest: dict[tuple[str, str], float] = {}
    for r in records:
        key = (r["datname"], r["state"])
        counts[key] += r["count"]
        oldest[key] = max(oldest.get(key, 0.0), r["max_tx"])
    return [StateRow(d, s, counts[(d, s)], oldest.get((d, s), 0.0))
            for d in databases for s in STATES]


def emit(out: Out, target: str, activity: Activity) -> None:
    """Connections and the oldest transaction's age."""
    for a in activity.connections:
        out.add("pg_stat_activity_connections",
                (target, a.datname, a.state, a.application_name), a.count)
    for g in activity.max_tx_duration:
        out.add("pg_stat_activity_max_tx_duration_seconds", (target, g.datname), g.seconds)
    if out.compat:
        for row in activity.states:
            labels = (target, row.datname, row.state)
            out.add("pg_stat_activity_count", labels, row.count)
            out.add("pg_stat_activity_max_tx_duration", labels, row.max_tx_seconds)


COLLECTOR = Collector("activity", SPECS, fetch, emit)
