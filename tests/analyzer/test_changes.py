"""Changed-only storage: rebuilt states and window statistics equal full storage's (no
database; tests/analyzer/test_store.py runs the same through a real store)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.snapshots import changes
from analyzer.snapshots.model import StatementCounters, StatementKey
from analyzer.store import partitions
from tests.analyzer import series
from tests.analyzer.series import Action, Step

actions = st.builds(
    Action,
    key=st.integers(0, series.KEYS - 1),
    kind=st.sampled_from(["run", "run", "run", "idle", "evict"]),
    calls=st.integers(1, 40),
    mean=st.floats(0.01, 500.0, allow_nan=False),
    counted=st.booleans(),
)
steps = st.lists(
    st.builds(Step, reset=st.sampled_from([False] * 9 + [True]),
              actions=st.lists(actions, max_size=8).map(tuple)),
    min_size=1, max_size=14,
)
intervals = st.sampled_from([600.0, 1800.0, 3600.0, 86400.0])


@settings(max_examples=300, deadline=None)
@given(steps=steps, has_info=st.booleans(), has_since=st.booleans(),
       checkpoint_interval=intervals, partition_interval=intervals)
def test_window_statistics_from_changed_only_storage_equal_full_storage(
    steps: list[Step], has_info: bool, has_since: bool, checkpoint_interval: float,
    partition_interval: float,
) -> None:
    readings = series.simulate(steps, has_info, has_since)
    stored = series.store_changed_only(readings, checkpoint_interval, partition_interval)
    rebuilt = changes.roll_forward((reason is not None, rows) for reason, rows in stored)
    full = [r.state for r in readings]
    assert rebuilt == full
    ms = series.metas(readings)
    full_by_id = {m.id: s for m, s in zip(ms, full, strict=True)}
    rebuilt_by_id = {m.id: s for m, s in zip(ms, rebuilt, strict=True)}
    for w in series.all_windows(ms):
        assert series.window(w, rebuilt_by_id) == series.window(w, full_by_id)
    # Between checkpoints only statements that moved are stored.
    for (reason, rows), before, now in zip(stored[1:], readings[:-1], readings[1:], strict=True):
        if reason is None:
            assert all(before.state.get(r.key) != r for r in rows)
            assert len(rows) <= len(now.statements)


def test_idle_statements_are_not_stored_and_vanished_ones_force_a_checkpoint() -> None:
    run = [Action(k, "run", 5, 2.0) for k in range(4)]
    readings = series.simulate([
        Step(False, tuple(run)),
        Step(False, (Action(1, "run", 3, 9.0),)),           # one moved, three idle
        Step(False, ()),                                     # nothing moved
        Step(False, (Action(2, "evict", counted=False),)),  # gone without a dealloc count
        Step(False, (Action(3, "evict"),)),                  # evicted, counted
        Step(True, (Action(0, "run", 1, 1.0),)),             # the view was reset
    ])
    stored = series.store_changed_only(readings, checkpoint_interval=86400.0,
                                       partition_interval=86400.0)
    assert [(reason, len(rows)) for reason, rows in stored] == [
        ("first", 0), (None, 4), (None, 1), (None, 0), ("vanished", 3), ("evicted", 2),
        ("reset", 1),
    ]


def test_a_new_partition_and_the_interval_each_start_a_checkpoint() -> None:
    base = datetime(2026, 12, 1, 23, 50, tzinfo=UTC)
    readings = series.simulate([Step(False, (Action(0, "run"),))] * 4, base=base)
    stored = series.store_changed_only(readings, checkpoint_interval=86400.0,
                                       partition_interval=86400.0)
    # 23:50, 23:55 (same day), 00:00 (the next day's partition), 00:05, 00:10
    assert [reason for reason, _ in stored] == ["first", None, "partition", None, None]
    stored = series.store_changed_only(readings, checkpoint_interval=600.0,
                                       partition_interval=86400.0)
    assert [reason for reason, _ in stored] == ["first", None, "interval", None, "interval"]


def test_roll_forward_must_start_at_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        changes.roll_forward([(False, [])])


def test_partition_slots_and_gaps() -> None:
    at = datetime(2026, 12, 1, 13, 7, tzinfo=UTC)
    assert partitions.slot(at, 86400.0) == (datetime(2026, 12, 1, tzinfo=UTC),
                                            datetime(2026, 12, 2, tzinfo=UTC))
    assert partitions.slot(at, 3600.0)[0] == datetime(2026, 12, 1, 13, tzinfo=UTC)
    assert partitions.partition_name("statement_stat", at) == "statement_stat_p20261201T130700"
    h = timedelta(hours=1)
    t = datetime(2026, 12, 1, tzinfo=UTC)
    covered = [(t, t + 2 * h), (t + 3 * h, t + 4 * h)]
    assert partitions.gaps(covered, t, t + 5 * h) == [(t + 2 * h, t + 3 * h),
                                                       (t + 4 * h, t + 5 * h)]
    assert partitions.gaps(covered, t + h, t + 2 * h) == []
    assert partitions.gaps([], t, t + h) == [(t, t + h)]


def reference_plan(
    previous_state: dict[StatementKey, StatementCounters] | None,
    previous: changes.Previous | None,
    statements: Sequence[StatementCounters],
    stats_reset: datetime | None, dealloc: int | None, read_at: datetime,
    checkpoint_interval: float, partition_start: datetime,
) -> tuple[str | None, list[StatementCounters], dict[StatementKey, StatementCounters]]:
    """The comparison as it was before it worked on rows: one Python loop over typed
    counters, dataclass equality (the specification the row comparison must meet)."""
    prior_state = previous_state if previous_state is not None else {}
    state: dict[StatementKey, StatementCounters] = {}
    moved: list[StatementCounters] = []
    matched = 0
    for s in statements:
        key = s.key
        state[key] = s
        prior = prior_state.get(key)
        if prior is None:
            moved.append(s)
            continue
        matched += 1
        if prior != s:
            moved.append(s)
    reason = changes.checkpoint_reason(previous, stats_reset, dealloc, read_at,
                                       checkpoint_interval, partition_start,
                                       vanished=matched < len(prior_state))
    return reason, list(statements) if reason is not None else moved, state


# A field of one statement changed without its calls moving (a rename, a new stats_since, a
# counter that moved alone): the comparison must see each of them.
_CHANGES = {
    "datname": lambda s: (s.datname or "") + "x", "username": lambda s: (s.username or "") + "y",
    "min_exec_time": lambda s: (s.min_exec_time or 0.0) / 2,
    "max_exec_time": lambda s: (s.max_exec_time or 0.0) + 1.0,
    "stddev_exec_time": lambda s: s.stddev_exec_time + 0.5,
    "total_plan_time": lambda s: (s.total_plan_time or 0.0) + 0.25,
    "shared_blks_dirtied": lambda s: s.shared_blks_dirtied + 1,
    "temp_blks_read": lambda s: s.temp_blks_read + 1,
    "blk_write_time": lambda s: s.blk_write_time + 0.125,
    "wal_bytes": lambda s: s.wal_bytes + 8.0,
    "stats_since": lambda s: (s.stats_since or series.BASE) + timedelta(seconds=1),
}
tweaks = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(_CHANGES))),
                  max_size=3)


@settings(max_examples=300, deadline=None)
@given(steps=steps, has_info=st.booleans(), has_since=st.booleans(),
       checkpoint_interval=intervals, partition_interval=intervals,
       tweaked=st.lists(tweaks, min_size=15, max_size=15))
def test_the_row_comparison_equals_the_typed_one_on_random_series(
    steps: list[Step], has_info: bool, has_since: bool, checkpoint_interval: float,
    partition_interval: float, tweaked: list[list[tuple[int, str]]],
) -> None:
    readings = series.simulate(steps, has_info, has_since)
    previous: changes.Previous | None = None
    previous_state: dict[StatementKey, StatementCounters] | None = None
    for i, (r, edits) in enumerate(zip(readings, tweaked, strict=False)):
        statements = list(r.statements)
        for n, name in edits:
            if statements:
                j = n % len(statements)
                statements[j] = dataclasses.replace(
                    statements[j], **{name: _CHANGES[name](statements[j])})
        start, _ = partitions.slot(r.read_at, partition_interval)
        want = reference_plan(previous_state, previous, statements, r.stats_reset, r.dealloc,
                              r.read_at, checkpoint_interval, start)
        got = changes.plan(previous, [s.as_row() for s in statements], r.stats_reset,
                           r.dealloc, r.read_at, checkpoint_interval, start)
        assert got.checkpoint == want[0]
        assert got.rows == [s.as_row() for s in want[1]]
        assert got.state == {k: s.as_row() for k, s in want[2].items()}
        previous = changes.after(previous, i + 1, r.read_at, r.stats_reset, r.dealloc, got)
        previous_state = want[2]
