"""Checkpointer and background writer: pg_stat_checkpointer (17+) or pg_stat_bgwriter.

Named as postgres_exporter names them (`pg_stat_bgwriter_*_total`), with its units
(milliseconds for the write and sync times, a Unix timestamp for stats_reset), so dashboards
and alerts written for it keep working. PostgreSQL 17 moved the checkpoint columns to
pg_stat_checkpointer and dropped buffers_backend and buffers_backend_fsync; on 17+ they are
assembled: the checkpoint figures from pg_stat_checkpointer, the backends' writes and fsyncs
from pg_stat_io (relation writes and fsyncs of every backend type but the checkpointer and
the background writer, what pg_stat_bgwriter counted before), so the same names carry on
across an upgrade (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec
from pgarchitect.db import mark

SPLIT_VERSION = 170000

BEFORE_17 = mark("""
SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time,
       buffers_checkpoint, buffers_clean, maxwritten_clean, buffers_backend,
       buffers_backend_fsync, buffers_alloc,
       extract(epoch FROM stats_reset)::float8 AS stats_reset
FROM pg_stat_bgwriter""")

FROM_17 = mark("""
SELECT c.num_timed AS checkpoints_timed, c.num_requested AS checkpoints_req,
       c.write_time AS checkpoint_write_time, c.sync_time AS checkpoint_sync_time,
       c.buffers_written AS buffers_checkpoint, b.buffers_clean, b.maxwritten_clean,
       io.writes AS buffers_backend, io.fsyncs AS buffers_backend_fsync, b.buffers_alloc,
       extract(epoch FROM b.stats_reset)::float8 AS stats_reset
FROM pg_stat_checkpointer c
CROSS JOIN pg_stat_bgwriter b
CROSS JOIN (SELECT coalesce(sum(writes), 0)::int8 AS writes,
                   coalesce(sum(fsyncs), 0)::int8 AS fsyncs
            FROM pg_stat_io
            WHERE object = 'relation'
              AND backend_type NOT IN ('checkpointer', 'background writer')) io""")


@dataclass(frozen=True)
class Checkpointer:
    """The server-wide checkpointer and background writer counters."""

    checkpoints_timed: int
    checkpoints_req: int
    checkpoint_write_time: float  # milliseconds
    checkpoint_sync_time: float  # milliseconds
    buffers_checkpoint: int
    buffers_clean: int
    maxwritten_clean: int
    buffers_backend: int
    buffers_backend_fsync: int
    buffers_alloc: int
    stats_reset: float | None  # Unix time


_HELP = {
    "checkpoints_timed": "Scheduled checkpoints that have been performed.",
    "checkpoints_req": "Requested checkpoints that have been performed.",
    "checkpoint_write_time": "Time spent writing checkpoint files to disk, in milliseconds.",
    "checkpoint_sync_time": "Time spent synchronizing checkpoint files to disk, in milliseconds.",
    "buffers_checkpoint": "Buffers written during checkpoints.",
    "buffers_clean": "Buffers written by the background writer.",
    "maxwritten_clean": "Times the background writer stopped a cleaning scan because it had "
                        "written too many buffers.",
    "buffers_backend": "Buffers written directly by a backend (17+: from pg_stat_io).",
    "buffers_backend_fsync": "Times a backend had to execute its own fsync call "
                             "(17+: from pg_stat_io).",
    "buffers_alloc": "Buffers allocated.",
    "stats_reset": "Unix time at which these statistics were last reset.",
}
COLUMNS = [f.name for f in fields(Checkpointer)]
SPECS = {f"pg_stat_bgwriter_{c}_total": Spec("counter", TARGET, _HELP[c]) for c in COLUMNS}


async def fetch(conn: asyncpg.Connection, context: Context) -> Checkpointer:
    """One row: pg_stat_bgwriter before 17; pg_stat_checkpointer, bgwriter and io from 17."""
    query = FROM_17 if context.server.version_num >= SPLIT_VERSION else BEFORE_17
    return Checkpointer(**dict(await conn.fetchrow(query)))


def emit(out: Out, target: str, row: Checkpointer) -> None:
    """One sample per column (stats_reset only once the server has one)."""
    for column in COLUMNS:
        value = getattr(row, column)
        if value is not None:
            out.add(f"pg_stat_bgwriter_{column}_total", (target,), value)


COLLECTOR = Collector("checkpointer", SPECS, fetch, emit)
