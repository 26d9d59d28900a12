"""Window statistics from cumulative pg_stat_statements counters.

pg_stat_statements keeps, per entry, the number of calls, their total time and the population
standard deviation since the entry was created. The calls of a window are the difference of
two readings. Means and variances are carried as (n, sum, M2) -- M2 being the sum of squared
deviations from the mean -- and subtracted or combined with the exact parallel formulas
(Chan et al.), which are far less prone to cancellation than raw sums of squares.

Counters never go backwards for a living entry. When they do, or when anything says the entry
was created anew (a reset of the view, an eviction and re-add, a changed ``stats_since``), the
end reading alone is the window's activity: it all happened after the start. A delta is never
negative.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from analyzer.snapshots.model import SnapshotMeta, StatementCounters, StatementKey

# Relative slack when comparing min/max times of two readings (they are floats).
_MINMAX_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, sum and sum of squared deviations of a sample of execution times (ms)."""

    n: int
    total: float
    m2: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 in the denominator); 0 for fewer than two calls."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def population_variance(self) -> float:
        return self.m2 / self.n if self.n else 0.0


EMPTY = Moments(0, 0.0, 0.0)


def moments_of(calls: int, total: float, stddev: float) -> Moments:
    """Moments from pg_stat_statements' calls, total time and population stddev."""
    if calls <= 0:
        return EMPTY
    return Moments(calls, max(total, 0.0), calls * max(stddev, 0.0) ** 2)


def combine(a: Moments, b: Moments) -> Moments:
    """The moments of the two samples taken together."""
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    d = b.mean - a.mean
    return Moments(n, a.total + b.total, a.m2 + b.m2 + d * d * a.n * b.n / n)


def subtract(whole: Moments, part: Moments) -> Moments:
    """The moments of `whole` without its first `part` (the calls between two readings)."""
    n = whole.n - part.n
    if n <= 0:
        return EMPTY
    total = max(whole.total - part.total, 0.0)
    d = total / n - part.mean
    m2 = whole.m2 - part.m2 - d * d * part.n * n / whole.n
    # Float error can leave a tiny negative M2 where the true spread is zero.
    return Moments(n, total, max(m2, 0.0))


@dataclass(frozen=True, slots=True)
class WindowStat:
    """One statement's activity in a window: execution-time moments plus other counters."""

    moments: Moments
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    temp_blks_written: int = 0
    restarted: bool = False  # the entry was (re)created inside the window

    @property
    def calls(self) -> int:
        return self.moments.n

    def merge(self, other: WindowStat) -> WindowStat:
        """This window and `other` (disjoint calls) taken together."""
        return WindowStat(
            combine(self.moments, other.moments),
            self.rows + other.rows,
            self.shared_blks_hit + other.shared_blks_hit,
            self.shared_blks_read + other.shared_blks_read,
            self.temp_blks_written + other.temp_blks_written,
            self.restarted or other.restarted,
        )


def _whole(c: StatementCounters, restarted: bool) -> WindowStat:
    return WindowStat(
        moments_of(c.calls, c.total_exec_time, c.stddev_exec_time),
        max(c.rows, 0), max(c.shared_blks_hit, 0), max(c.shared_blks_read, 0),
        max(c.temp_blks_written, 0), restarted,
    )


def recreated(start: StatementCounters, end: StatementCounters) -> bool:
    """True when `end` cannot be a continuation of `start` (reset, or evicted and re-added)."""
    if start.stats_since is not None and end.stats_since is not None:
        return end.stats_since != start.stats_since
    if end.calls < start.calls or end.total_exec_time < start.total_exec_time:
        return True
    if end.rows < start.rows or end.shared_blks_hit < start.shared_blks_hit:
        return True
    # Before PostgreSQL 17 there is no stats_since, but a living entry's minimum can only fall
    # and its maximum only rise; anything else means it started over.
    grew_min = (start.min_exec_time is not None and end.min_exec_time is not None
                and end.min_exec_time > start.min_exec_time * (1 + _MINMAX_SLACK))
    fell_max = (start.max_exec_time is not None and end.max_exec_time is not None
                and end.max_exec_time < start.max_exec_time * (1 - _MINMAX_SLACK))
    return grew_min or fell_max


def delta(
    start: StatementCounters | None, end: StatementCounters, reset: bool = False
) -> WindowStat | None:
    """The activity between two readings of one entry, or None when there was none."""
    if start is None or reset or recreated(start, end):
        stat = _whole(end, restarted=True)
    else:
        stat = WindowStat(
            subtract(
                moments_of(end.calls, end.total_exec_time, end.stddev_exec_time),
                moments_of(start.calls, start.total_exec_time, start.stddev_exec_time),
            ),
            end.rows - start.rows,
            end.shared_blks_hit - start.shared_blks_hit,
            max(end.shared_blks_read - start.shared_blks_read, 0),
            max(end.temp_blks_written - start.temp_blks_written, 0),
        )
    return stat if stat.calls > 0 else None


def pair_delta(
    start: Mapping[StatementKey, StatementCounters],
    end: Mapping[StatementKey, StatementCounters],
    reset: bool = False,
) -> dict[StatementKey, WindowStat]:
    """Per-statement activity between two snapshots; entries gone at the end are left out.

    A statement whose counters at both ends are one object (states rolled forward from one
    another share the rows of statements that did not move) had no activity, unless a reset
    says otherwise or `recreated` could say so of equal readings (negative times, no
    stats_since): those are skipped without computing a delta that would be None.
    """
    out: dict[StatementKey, WindowStat] = {}
    before = start.get
    for key, counters in end.items():
        prior = before(key)
        if prior is counters and not reset and _still(counters):
            continue
        stat = delta(prior, counters, reset)
        if stat is not None:
            out[key] = stat
    return out


def _still(c: StatementCounters) -> bool:
    """True when `delta(c, c)` is None: `recreated(c, c)` is False for a reading whose
    stats_since is known, or whose min and max times are not negative (nor NaN)."""
    return c.stats_since is not None or (
        (c.min_exec_time is None or c.min_exec_time >= 0)
        and (c.max_exec_time is None or c.max_exec_time >= 0))


def was_reset(start: SnapshotMeta, end: SnapshotMeta) -> bool:
    """True when the whole view was reset between two snapshots."""
    return (
        start.stats_reset is not None
        and end.stats_reset is not None
        and end.stats_reset != start.stats_reset
    )


def segments(metas: Sequence[SnapshotMeta]) -> list[tuple[SnapshotMeta, SnapshotMeta]]:
    """The snapshot pairs whose deltas, summed, give a window exactly and cheaply.

    Between two snapshots with no reset and no eviction in between, the difference of the end
    points is exact, so only the snapshots around such events are needed, not every one.
    """
    ordered = sorted(metas, key=lambda m: (m.taken_at, m.id))
    if len(ordered) < 2:
        return []
    keep = {0, len(ordered) - 1}
    for i in range(len(ordered) - 1):
        a, b = ordered[i], ordered[i + 1]
        evicted = a.dealloc is not None and b.dealloc is not None and b.dealloc != a.dealloc
        if evicted or was_reset(a, b):
            keep.update((i, i + 1))
    chosen = [ordered[i] for i in sorted(keep)]
    return list(itertools.pairwise(chosen))


def merge_windows(
    parts: Iterable[Mapping[StatementKey, WindowStat]],
) -> dict[StatementKey, WindowStat]:
    """Consecutive, disjoint windows combined into one, per statement."""
    out: dict[StatementKey, WindowStat] = {}
    for part in parts:
        for key, stat in part.items():
            prior = out.get(key)
            out[key] = stat if prior is None else prior.merge(stat)
    return out
