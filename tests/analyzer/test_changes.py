"""Changed-only storage: rebuilt states and window statistics equal full storage's (no
database; tests/analyzer/test_store.py runs the same through a real store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.snapshots import changes
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
