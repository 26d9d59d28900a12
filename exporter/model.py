"""Plain data read from a target, in base units (seconds, bytes); no prometheus imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.errors import Reason

COLLECTORS = ("server", "statements", "activity", "database", "locks", "replication",
              "tables", "indexes")


@dataclass(frozen=True)
class ServerInfo:
    """What the probe learns before any versioned SQL is chosen."""

    version_num: int
    version: str
    in_recovery: bool
    max_connections: int
    datname: str
    pgss_version: str | None
    pgss_schema: str | None
    read_all_stats: bool


class StatementRow(NamedTuple):
    """One exported statement series (queryid None: the `other` remainder of a db/user).

    A NamedTuple rather than a frozen dataclass: hundreds are made every scrape, and a frozen
    dataclass of 19 fields takes several times longer to build.
    """

    datname: str
    user: str
    dbid: int
    userid: int
    queryid: int | None
    top: bool
    calls: int
    exec_seconds: float
    plan_seconds: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    shared_blks_dirtied: int
    shared_blks_written: int
    temp_blks_written: int
    blk_read_seconds: float
    blk_write_seconds: float
    wal_bytes: float
    sum_squares: float  # sum of squared execution times (s^2): pooled stddev across rows

    @property
    def key(self) -> tuple[int, int, int | None]:
        """(dbid, userid, queryid): one series per key."""
        return (self.dbid, self.userid, self.queryid)

    @property
    def mean_seconds(self) -> float:
        """Mean execution time since the statistics were reset."""
        return self.exec_seconds / self.calls if self.calls else 0.0

    @property
    def stddev_seconds(self) -> float:
        """Population standard deviation of execution time, pooled over merged rows."""
        if not self.calls:
            return 0.0
        mean = self.mean_seconds
        return float(max(self.sum_squares / self.calls - mean * mean, 0.0) ** 0.5)


@dataclass(frozen=True)
class StatementsInfo:
    """pg_stat_statements_info (PG14+): evictions and the last reset."""

    dealloc: int
    stats_reset: float | None


@dataclass(frozen=True)
class Statements:
    """What the statements collector returns."""

    rows: tuple[StatementRow, ...]
    texts: dict[int, str]
    info: StatementsInfo | None
    texts_fetched: int = 0


@dataclass(frozen=True)
class ActivityRow:
    """Client backends by database, state and (bounded) application_name."""

    datname: str
    state: str
    application_name: str
    count: int


@dataclass(frozen=True)
class DatabaseRow:
    """pg_stat_database counters of one database, plus its transaction and lock figures."""

    datname: str
    blks_hit: int
    blks_read: int
    xact_commit: int
    xact_rollback: int
    deadlocks: int
    temp_bytes: int
    conflicts: int


@dataclass(frozen=True)
class DatabaseGauge:
    """A per-database gauge value (longest transaction age, backends waiting on locks)."""

    datname: str
    value: float


@dataclass(frozen=True)
class ReplicationRow:
    """Replay lag of one standby (on a primary) or of this server (application_name standby)."""

    application_name: str
    lag_seconds: float


@dataclass(frozen=True)
class TableRow:
    """pg_stat_user_tables figures of one table."""

    datname: str
    schemaname: str
    relname: str
    seq_scan: int
    idx_scan: int
    n_live_tup: int
    n_dead_tup: int


@dataclass(frozen=True)
class IndexRow:
    """pg_stat_user_indexes figures of one index."""

    datname: str
    schemaname: str
    relname: str
    indexrelname: str
    idx_scan: int


@dataclass(frozen=True)
class Failure:
    """A collector that failed in this scrape."""

    reason: Reason
    message: str


@dataclass
class ScrapeResult:
    """One database round of one target: data per collector, failures, timings."""

    target: str
    up: bool
    finished_at: float = 0.0
    server: ServerInfo | None = None
    statements: Statements | None = None
    activity: list[ActivityRow] = field(default_factory=list)
    max_tx_duration: list[DatabaseGauge] = field(default_factory=list)
    databases: list[DatabaseRow] = field(default_factory=list)
    locks_waiting: list[DatabaseGauge] = field(default_factory=list)
    replication: list[ReplicationRow] = field(default_factory=list)
    tables: list[TableRow] = field(default_factory=list)
    indexes: list[IndexRow] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    errors_total: dict[tuple[str, str], int] = field(default_factory=dict)
    rounds_total: int = 0
