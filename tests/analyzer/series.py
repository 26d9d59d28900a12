"""Simulated pg_stat_statements histories: statements that run, idle, come and go, with
resets and evictions; and what changed-only storage makes of them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from analyzer.analysis.delta import WindowStat, merge_windows, pair_delta, segments, was_reset
from analyzer.snapshots import changes
from analyzer.snapshots.model import Row, SnapshotMeta, StatementCounters, StatementKey
from analyzer.store import partitions

KEYS = 6
STEP = timedelta(minutes=5)
BASE = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Action:
    """What one statement does between two readings."""

    key: int
    kind: str          # "run" | "idle" | "evict"
    calls: int = 1
    mean: float = 1.0  # ms per call in this stretch
    counted: bool = True  # an eviction the view counts in dealloc (False: a per-entry reset)


@dataclass(frozen=True)
class Step:
    reset: bool
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Reading:
    read_at: datetime
    stats_reset: datetime | None
    dealloc: int | None
    statements: tuple[StatementCounters, ...]

    @property
    def state(self) -> dict[StatementKey, StatementCounters]:
        return {s.key: s for s in self.statements}

    @property
    def rows(self) -> tuple[Row, ...]:
        """The statements as the source reads them (STAT_COLUMNS order)."""
        return tuple(s.as_row() for s in self.statements)


@dataclass
class _Entry:
    calls: int = 0
    total: float = 0.0
    m2: float = 0.0
    mn: float = float("inf")
    mx: float = 0.0
    rows: int = 0
    since: datetime | None = None


def key_of(k: int) -> tuple[int, int, int, bool]:
    """(dbid, userid, queryid, toplevel) of simulated statement k."""
    return (1 + k % 2, 10, 1000 + k, k % 3 != 0)


def simulate(steps: Sequence[Step], has_info: bool = True, has_since: bool = True,
             base: datetime = BASE, step: timedelta = STEP) -> list[Reading]:
    """The readings of the view after each step (the first reading before any step)."""
    entries: dict[int, _Entry] = {}
    dealloc = 0
    stats_reset = base - timedelta(days=1)
    out = []
    for i, st in enumerate((Step(False, ()), *steps)):
        now = base + i * step
        if st.reset:
            entries.clear()
            stats_reset = now - step / 2
        for a in st.actions:
            e = entries.get(a.key)
            if a.kind == "evict":
                if e is not None:
                    del entries[a.key]
                    dealloc += 1 if a.counted else 0
                continue
            if a.kind != "run":
                continue
            if e is None:
                e = entries[a.key] = _Entry(since=now - step / 3 if has_since else None)
            n, total, m2 = a.calls, a.calls * a.mean, a.calls * (a.mean * 0.1) ** 2
            if e.calls:
                d = total / n - e.total / e.calls
                e.m2 += m2 + d * d * e.calls * n / (e.calls + n)
            else:
                e.m2 = m2
            e.calls += n
            e.total += total
            e.mn = min(e.mn, a.mean * 0.9)
            e.mx = max(e.mx, a.mean * 1.1)
            e.rows += n
        stmts = []
        for k, e in sorted(entries.items()):
            dbid, userid, queryid, toplevel = key_of(k)
            stmts.append(StatementCounters(
                dbid=dbid, userid=userid, queryid=queryid, toplevel=toplevel, calls=e.calls,
                total_exec_time=e.total, stddev_exec_time=(e.m2 / e.calls) ** 0.5,
                min_exec_time=e.mn, max_exec_time=e.mx, total_plan_time=e.calls * 0.01,
                rows=e.rows, shared_blks_hit=e.calls * 3, shared_blks_read=e.calls // 2,
                temp_blks_written=0, wal_bytes=float(e.rows * 100), stats_since=e.since,
                datname=f"db{dbid}", username="app",
            ))
        out.append(Reading(now, stats_reset if has_info else None,
                           dealloc if has_info else None, tuple(stmts)))
    return out


def store_changed_only(readings: Sequence[Reading], checkpoint_interval: float,
                       partition_interval: float) -> list[tuple[str | None, list[
                           StatementCounters]]]:
    """What the store writes for each reading: (checkpoint reason or None, rows)."""
    previous: changes.Previous | None = None
    out = []
    for i, r in enumerate(readings):
        start, _ = partitions.slot(r.read_at, partition_interval)
        stored = changes.plan(previous, r.rows, r.stats_reset, r.dealloc, r.read_at,
                              checkpoint_interval, start)
        out.append((stored.checkpoint, [StatementCounters.from_row(x) for x in stored.rows]))
        previous = changes.after(previous, i + 1, r.read_at, r.stats_reset, r.dealloc, stored)
    return out


def metas(readings: Sequence[Reading]) -> list[SnapshotMeta]:
    return [SnapshotMeta(i + 1, r.read_at, r.stats_reset, r.dealloc)
            for i, r in enumerate(readings)]


def window(ms: Sequence[SnapshotMeta],
           states: dict[int, dict[StatementKey, StatementCounters]]) -> dict[
               StatementKey, WindowStat]:
    """A window's statistics, computed the way an audit does (analyzer/audit/)."""
    return merge_windows(pair_delta(states[a.id], states[b.id], was_reset(a, b))
                         for a, b in segments(ms))


def all_windows(ms: Sequence[SnapshotMeta]) -> list[Sequence[SnapshotMeta]]:
    return [ms[a:b + 1] for a, b in itertools.combinations(range(len(ms)), 2)]
