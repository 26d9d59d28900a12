"""Plain data of snapshots: one statement's cumulative counters and a snapshot's header."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple


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

# One statement's counters as stored: a plain tuple in STAT_COLUMNS order. The snapshot path
# reads, compares and writes these (C-level tuple equality, no object per statement);
# StatementCounters.from_row makes the typed form where one is needed.
Row = tuple[Any, ...]
# The StatementKey of a Row: (dbid, userid, queryid, toplevel).
row_key = itemgetter(0, 2, 4, 5)


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

    @classmethod
    def from_columns(
        cls, dbid: int, datname: str | None, userid: int, username: str | None, queryid: int,
        toplevel: bool, calls: int, total_exec_time: float, min_exec_time: float | None,
        max_exec_time: float | None, mean_exec_time: float | None,
        stddev_exec_time: float | None, total_plan_time: float | None, rows: int | None,
        shared_blks_hit: int | None, shared_blks_read: int | None,
        shared_blks_dirtied: int | None, shared_blks_written: int | None,
        temp_blks_read: int | None, temp_blks_written: int | None,
        blk_read_time: float | None, blk_write_time: float | None, wal_bytes: float | None,
        stats_since: datetime | None,
    ) -> StatementCounters:
        """The columns of STAT_COLUMNS (its parameters, in that order) back into counters,
        exactly as they were written (the mean is derived, not read)."""
        return cls(
            dbid=int(dbid), datname=datname, userid=int(userid), username=username,
            queryid=int(queryid), toplevel=bool(toplevel), calls=int(calls),
            total_exec_time=float(total_exec_time), min_exec_time=min_exec_time,
            max_exec_time=max_exec_time, stddev_exec_time=float(stddev_exec_time or 0.0),
            total_plan_time=total_plan_time, rows=int(rows or 0),
            shared_blks_hit=int(shared_blks_hit or 0),
            shared_blks_read=int(shared_blks_read or 0),
            shared_blks_dirtied=int(shared_blks_dirtied or 0),
            shared_blks_written=int(shared_blks_written or 0),
            temp_blks_read=int(temp_blks_read or 0),
            temp_blks_written=int(temp_blks_written or 0),
            blk_read_time=float(blk_read_time or 0.0),
            blk_write_time=float(blk_write_time or 0.0),
            wal_bytes=float(wal_bytes or 0.0), stats_since=stats_since,
        )

    @classmethod
    def from_row(cls, row: Row) -> StatementCounters:
        """A Row (STAT_COLUMNS order) back into counters (from_columns)."""
        return cls.from_columns(*row)

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
    rows: tuple[Row, ...]  # every statement, in STAT_COLUMNS order (as the store keeps them)

    @property
    def statements(self) -> tuple[StatementCounters, ...]:
        """The rows as typed counters (made on each call; the snapshot path uses the rows)."""
        return tuple(map(StatementCounters.from_row, self.rows))
