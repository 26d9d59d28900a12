"""Replication lag: pg_stat_replication on a primary, the replay timestamp on a standby."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec
from pgarchitect.db import mark

# replay_lag turns NULL once a standby has replayed everything and the primary has gone
# quiet: that is 0. It is also NULL before a standby's first reply, when the lag is unknown;
# such a standby is left out rather than reported as not lagging.
PRIMARY = mark("""
SELECT coalesce(application_name, '') AS application_name,
       coalesce(extract(epoch FROM replay_lag), 0)::float8 AS lag
FROM pg_stat_replication
WHERE replay_lag IS NOT NULL OR replay_lsn = sent_lsn""")

# A standby whose WAL receiver runs and has replayed everything it received is not lagging,
# however old the last transaction is. Without a WAL receiver (the primary is gone) it falls
# behind by the age of its last replayed transaction.
STANDBY = mark("""
SELECT 'standby' AS application_name,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag""")

SPECS = {
    "pg_replication_lag_seconds": Spec(
        "gauge", (*TARGET, "application_name"),
        "Replay lag: per standby on a primary; application_name='standby' on a standby."),
}


@dataclass(frozen=True)
class ReplicationRow:
    """Replay lag of one standby (on a primary) or of this server (application_name standby)."""

    application_name: str
    lag_seconds: float


async def fetch(conn: asyncpg.Connection, context: Context) -> list[ReplicationRow]:
    """Per standby on a primary (none when there is none); one row on a standby."""
    query = STANDBY if context.server.in_recovery else PRIMARY
    return [ReplicationRow(r["application_name"], r["lag"]) for r in await conn.fetch(query)]


def emit(out: Out, target: str, rows: list[ReplicationRow]) -> None:
    """`pg_replication_lag_seconds` per standby (or of this standby)."""
    for rep in rows:
        out.add("pg_replication_lag_seconds", (target, rep.application_name), rep.lag_seconds)


COLLECTOR = Collector("replication", SPECS, fetch, emit)
