"""Plain data of snapshots: one statement's cumulative counters and a snapshot's header."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class StatementKey(NamedTuple):
    """pg_stat_statements' own key. With track = all the same queryid can appear top-level
    and nested, and per user."""

    dbid: int
    userid: int
    queryid: int
    toplevel: bool


class TextKey(NamedTuple):
    """A statement text's key (per target): texts do not depend on the user."""

    dbid: int
    queryid: int

STAT_COLUMNS = (
    "dbid", "datname", "userid", "username", "queryid", "toplevel", "calls",
    "total_exec_time", "min_exec_time", "max_exec_time", "mean_exec_time", "stddev_exec_time",
    "total_plan_time", "rows", "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied",
    "shared_blks_written", "temp_blks_read", "temp_blks_written", "blk_read_time",
    "blk_write_time", "wal_bytes", "stats_since",
)


@dataclass(frozen=True, slots=True)
class StatementCounters:
    """Cumulative counters of one pg_stat_statements entry (times in milliseconds)."""

    dbid: int
    userid: int
    queryid: int
    toplevel: bool
    calls: int
    total_exec_time: float
    stddev_exec_time: float
    min_exec_time: float | None = None
    max_exec_time: float | None = None
    total_plan_time: float | None = None
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    shared_blks_dirtied: int = 0
    shared_blks_written: int = 0
    temp_blks_read: int = 0
    temp_blks_written: int = 0
    blk_read_time: float = 0.0
    blk_write_time: float = 0.0
    wal_bytes: float = 0.0
    stats_since: datetime | None = None
    datname: str | None = None
    username: str | None = None

    @property
    def key(self) -> StatementKey:
        return StatementKey(self.dbid, self.userid, self.queryid, self.toplevel)

    @property
    def mean_exec_time(self) -> float:
        return self.total_exec_time / self.calls if self.calls else 0.0

    def as_row(self) -> tuple[object, ...]:
        """The values in STAT_COLUMNS order (for COPY into the store)."""
        return (
            self.dbid, self.datname, self.userid, self.username, self.queryid, self.toplevel,
            self.calls, self.total_exec_time, self.min_exec_time, self.max_exec_time,
            self.mean_exec_time, self.stddev_exec_time, self.total_plan_time, self.rows,
            self.shared_blks_hit, self.shared_blks_read, self.shared_blks_dirtied,
            self.shared_blks_written, self.temp_blks_read, self.temp_blks_written,
            self.blk_read_time, self.blk_write_time, self.wal_bytes, self.stats_since,
        )


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """A snapshot's header: when it was taken and the view's reset / eviction counters."""

    id: int
    taken_at: datetime
    stats_reset: datetime | None = None
    dealloc: int | None = None


@dataclass(frozen=True, slots=True)
class StatementText:
    """A normalized statement text as pg_stat_statements shows it, with its fingerprint."""

    dbid: int
    queryid: int
    query: str
    fingerprint: str
    own: bool = False


@dataclass(frozen=True)
class TargetReading:
    """One reading of a target's pg_stat_statements (texts not included)."""

    server_version: str
    server_version_num: int
    extension_version: str
    stats_reset: datetime | None
    dealloc: int | None
    statements: tuple[StatementCounters, ...]
