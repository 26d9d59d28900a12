"""Replication lag: pg_stat_replication on a primary, the replay timestamp on a standby."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec, compat
from pgarchitect.db import mark

# replay_lag turns NULL once a standby has replayed everything and the primary has gone
# quiet: that is 0. It is also NULL before a standby's first reply, when the lag is unknown;
# such a standby is left out rather than reported as not lagging.
_PRIMARY = """
SELECT coalesce(application_name, '') AS application_name,
       coalesce(extract(epoch FROM replay_lag), 0)::float8 AS lag
FROM pg_stat_replication
WHERE replay_lag IS NOT NULL OR replay_lsn = sent_lsn"""

# A standby whose WAL receiver runs and has replayed everything it received is not lagging,
# however old the last transaction is. Without a WAL receiver (the primary is gone) it falls
# behind by the age of its last replayed transaction.
_STANDBY = """
SELECT 'standby' AS application_name,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag"""



def _with_slots(lags: str) -> str:
    """The lags, then (same round trip) the replication slots for postgres_exporter's
    pg_replication_slots_active (read only with the compat set on): the rows whose
    `slot_name` is set."""
    return mark(f"""
SELECT application_name, lag, NULL::text AS slot_name, NULL::text AS database,
       NULL::bool AS active
FROM ({lags}) AS lags
UNION ALL
SELECT NULL, NULL, slot_name::text, coalesce(database::text, ''), active
FROM pg_replication_slots""")


PRIMARY, STANDBY = mark(_PRIMARY), mark(_STANDBY)
PRIMARY_AND_SLOTS, STANDBY_AND_SLOTS = _with_slots(_PRIMARY), _with_slots(_STANDBY)

SPECS = {
    "pg_replication_lag_seconds": Spec(
        "gauge", (*TARGET, "application_name"),
        "Replay lag: per standby on a primary; application_name='standby' on a standby."),
    "pg_replication_lag": compat(
        "gauge", TARGET,
        "Replay lag of this server in seconds, 0 on a primary (postgres_exporter)."),
    "pg_replication_is_replica": compat(
        "gauge", TARGET, "1 when this server is a standby (postgres_exporter)."),
    "pg_replication_slots_active": compat(
        "gauge", (*TARGET, "slot_name", "database"),
        "1 when the replication slot is in use (postgres_exporter)."),
}


@dataclass(frozen=True)
class Slot:
    """One replication slot."""

    slot_name: str
    database: str
    active: bool


@dataclass(frozen=True)
class Replication:
    """What the replication collector returns."""

    in_recovery: bool
    lags: list[ReplicationRow]
    slots: list[Slot]


@dataclass(frozen=True)
class ReplicationRow:
    """Replay lag of one standby (on a primary) or of this server (application_name standby)."""

    application_name: str
    lag_seconds: float


async def fetch(conn: asyncpg.Connection, context: Context) -> Replication:
    """Per standby on a primary (none when there is none); one row on a standby; the slots
    when the postgres_exporter compatibility set is on."""
    in_recovery = context.server.in_recovery
    if not context.settings.postgres_exporter_compat:
        query = STANDBY if in_recovery else PRIMARY
        lags = [ReplicationRow(r["application_name"], r["lag"]) for r in await conn.fetch(query)]
        return Replication(in_recovery, lags, [])
    lags, slots = [], []
    for r in await conn.fetch(STANDBY_AND_SLOTS if in_recovery else PRIMARY_AND_SLOTS):
        if r["slot_name"] is None:
            lags.append(ReplicationRow(r["application_name"], r["lag"]))
        else:
            slots.append(Slot(r["slot_name"], r["database"], r["active"]))
    return Replication(in_recovery, lags, slots)


def emit(out: Out, target: str, data: Replication) -> None:
    """`pg_replication_lag_seconds` per standby (or of this standby); postgres_exporter's
    single lag (this server's own: 0 on a primary), role and slots."""
    for rep in data.lags:
        out.add("pg_replication_lag_seconds", (target, rep.application_name), rep.lag_seconds)
    if not out.compat:
        return
    own = max((r.lag_seconds for r in data.lags), default=0.0) if data.in_recovery else 0.0
    out.add("pg_replication_lag", (target,), own)
    out.add("pg_replication_is_replica", (target,), 1 if data.in_recovery else 0)
    for slot in data.slots:
        out.add("pg_replication_slots_active", (target, slot.slot_name, slot.database),
                1 if slot.active else 0)


COLLECTOR = Collector("replication", SPECS, fetch, emit)
