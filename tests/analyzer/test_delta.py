"""Window arithmetic: exact moments, resets, evictions, new statements (no database)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.analysis.delta import (
    Moments,
    combine,
    delta,
    merge_windows,
    moments_of,
    pair_delta,
    segments,
    subtract,
)
from analyzer.snapshots.model import SnapshotMeta, StatementCounters

T0 = datetime(2025, 1, 1, tzinfo=UTC)
samples = st.lists(st.floats(min_value=0.001, max_value=5_000.0, allow_nan=False), min_size=1,
                   max_size=60)


def population(xs: list[float]) -> Moments:
    """What pg_stat_statements would report for these calls."""
    n = len(xs)
    mean = sum(xs) / n
    return moments_of(n, sum(xs), math.sqrt(sum((x - mean) ** 2 for x in xs) / n))


def reading(xs: list[float], queryid: int = 7, **extra: object) -> StatementCounters:
    m = population(xs)
    return StatementCounters(
        dbid=1, userid=10, queryid=queryid, toplevel=True, calls=m.n, total_exec_time=m.total,
        stddev_exec_time=math.sqrt(m.population_variance),
        min_exec_time=min(xs), max_exec_time=max(xs), rows=m.n, **extra,  # type: ignore[arg-type]
    )


def sample_variance(xs: list[float]) -> float:
    mean = sum(xs) / len(xs)
    return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0


def close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6 * max(scale, 1.0))


@given(samples, samples)
def test_combined_variance_equals_variance_of_concatenation(a: list[float], b: list[float]) -> None:
    both = combine(population(a), population(b))
    xs = a + b
    assert both.n == len(xs)
    assert close(both.mean, sum(xs) / len(xs), max(xs))
    assert close(both.variance, sample_variance(xs), max(xs) ** 2)


@given(samples, samples)
def test_window_between_two_readings_is_exactly_the_new_calls(
    before: list[float], during: list[float]
) -> None:
    stat = delta(reading(before), reading(before + during))
    assert stat is not None and not stat.restarted
    assert stat.calls == len(during)
    assert close(stat.moments.mean, sum(during) / len(during), max(before + during))
    assert close(stat.moments.variance, sample_variance(during), max(before + during) ** 2)
    assert stat.moments.m2 >= 0


@given(st.lists(samples, min_size=2, max_size=5))
def test_windows_combined_across_many_snapshots(chunks: list[list[float]]) -> None:
    readings = []
    calls: list[float] = []
    for chunk in chunks:
        calls += chunk
        readings.append({(1, 10, 7, True): reading(list(calls))})
    parts = [pair_delta(a, b) for a, b in itertools.pairwise(readings)]
    stat = merge_windows(parts)[(1, 10, 7, True)]
    later = [x for chunk in chunks[1:] for x in chunk]
    assert stat.calls == len(later)
    assert close(stat.moments.variance, sample_variance(later), max(calls) ** 2)


@settings(max_examples=50)
@given(st.floats(min_value=1e3, max_value=1e6), st.integers(min_value=10**6, max_value=10**9))
def test_near_identical_huge_readings_never_give_negative_variance(mean: float, n: int) -> None:
    # Two readings whose difference is lost in float noise: variance must clamp at 0.
    start = Moments(n, mean * n, 0.0)
    end = Moments(n + 3, mean * n + 3 * mean * (1 + 1e-12), 1e-9)
    assert subtract(end, start).m2 >= 0


def test_reset_counters_restart_instead_of_going_negative() -> None:
    old = reading([5.0] * 100)
    after_reset = reading([1.0, 2.0, 3.0])
    stat = delta(old, after_reset)
    assert stat is not None and stat.restarted
    assert stat.calls == 3 and stat.moments.mean == 2.0
    assert stat.rows >= 0 and stat.shared_blks_read >= 0


def test_global_reset_flag_uses_the_end_reading() -> None:
    # More calls than before, but the view was reset in between: only the end counts.
    stat = delta(reading([1.0] * 3), reading([9.0] * 10), reset=True)
    assert stat is not None and stat.calls == 10 and stat.moments.mean == 9.0


def test_evicted_and_readded_entry_detected_by_stats_since() -> None:
    start = reading([1.0] * 5, stats_since=T0)
    end = reading([1.0] * 8, stats_since=T0 + timedelta(minutes=3))
    stat = delta(start, end)
    assert stat is not None and stat.restarted and stat.calls == 8


def test_evicted_and_readded_entry_detected_by_min_max_before_pg17() -> None:
    # More calls than before, but the minimum rose: the entry cannot be the same one.
    stat = delta(reading([0.5, 4.0, 4.0]), reading([3.0, 3.5, 3.5, 3.5]))
    assert stat is not None and stat.restarted and stat.calls == 4


def test_new_statement_counts_from_zero_and_idle_one_is_left_out() -> None:
    start = {(1, 10, 7, True): reading([1.0, 2.0])}
    end = {(1, 10, 7, True): reading([1.0, 2.0]), (1, 10, 8, True): reading([4.0], queryid=8)}
    out = pair_delta(start, end)
    assert list(out) == [(1, 10, 8, True)]
    assert out[(1, 10, 8, True)].calls == 1


def test_statement_gone_at_window_end_has_no_activity() -> None:
    assert pair_delta({(1, 10, 7, True): reading([1.0])}, {}) == {}


def test_segments_skip_quiet_snapshots_and_keep_event_boundaries() -> None:
    metas = [SnapshotMeta(i, T0 + timedelta(minutes=i), T0, 0) for i in range(1, 7)]
    assert [(a.id, b.id) for a, b in segments(metas)] == [(1, 6)]
    metas[3] = SnapshotMeta(4, metas[3].taken_at, T0, 2)  # evictions between 3 and 4
    metas[4] = SnapshotMeta(5, metas[4].taken_at, T0, 2)
    metas[5] = SnapshotMeta(6, metas[5].taken_at, T0 + timedelta(minutes=5), 0)  # reset
    assert [(a.id, b.id) for a, b in segments(metas)] == [(1, 3), (3, 4), (4, 5), (5, 6)]
    assert segments(metas[:1]) == []
