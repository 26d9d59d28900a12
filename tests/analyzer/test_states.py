"""Kept snapshot states (analyzer/store/states.py) equal rebuilt ones, key order included, and
the pair deltas that skip unmoved statements equal computed ones: pure property tests over
simulated series, then the quick check's statistics through a real store and the snapshot
jobs' quick check (analyzer/jobs.py) with a process's kept states."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.analysis.delta import delta, pair_delta, segments, was_reset
from analyzer.analysis.windows import candidate_points
from analyzer.audit import quick_check, window_stats
from analyzer.audit.steps.statistics import window_statistics
from analyzer.jobs import snapshot_and_check
from analyzer.snapshots.model import SnapshotMeta, StatementCounters, StatementKey
from analyzer.snapshots.source import connect_target
from analyzer.store import partitions, snapshots
from analyzer.store.connection import Conn, connect_store
from analyzer.store.snapshots import StoredHeader
from analyzer.store.states import DEFAULT_MAX_BYTES, SnapshotStates, State
from analyzer.store.writer import StatementWriter
from pgarchitect.config import RegressionSettings, Settings, StoreSettings, Target
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer import series
from tests.analyzer.series import Action, Step
from tests.analyzer.test_changes import intervals, steps
from tests.analyzer.test_store import reading_of
from tests.conftest import drop_database, new_database


@dataclass
class Series:
    """A StateSource over what the store would hold for `readings` (plain data)."""

    readings: list[series.Reading]
    checkpoint_interval: float = 86400.0
    version: int = 1
    read: list[int] = field(default_factory=list)  # snapshot ids whose rows were read

    def __post_init__(self) -> None:
        self.metas = series.metas(self.readings)
        self.stored = series.store_changed_only(self.readings, self.checkpoint_interval, 86400.0)

    def expected(self, meta: SnapshotMeta) -> State:
        """What load_counters reads: the full state in statement key order."""
        return dict(sorted(self.readings[meta.id - 1].state.items()))

    def headers(self, first: SnapshotMeta, last: SnapshotMeta) -> list[StoredHeader]:
        hs = [StoredHeader(m.id, m.taken_at, reason is not None, len(rows), self.version)
              for m, (reason, rows) in zip(self.metas, self.stored, strict=True)]
        start = max(i for i in range(first.id) if hs[i].is_checkpoint)
        return hs[start: last.id]

    def rows(self, headers: Sequence[StoredHeader]) -> dict[int, list[StatementCounters]]:
        self.read.extend(h.id for h in headers)
        return {h.id: self.stored[h.id - 1][1] for h in headers}

    def full(self, meta: SnapshotMeta) -> State:
        raise AssertionError(f"snapshot {meta.id} is in the series")


def ends(ms: Sequence[SnapshotMeta]) -> list[SnapshotMeta]:
    """The snapshots a quick check's change-point search reads (window_statistics' _ends)."""
    points = candidate_points(len(ms))
    return [m for a, b in itertools.pairwise(points)
            for pair in segments(ms[a: b + 1]) for m in pair]


def same(got: dict[int, State], want: dict[int, State]) -> None:
    assert list(got) == list(want)
    for k, state in got.items():
        assert list(state.items()) == list(want[k].items())


@settings(max_examples=150, deadline=None)
@given(steps=steps, has_since=st.booleans(), checkpoint_interval=intervals,
       max_bytes=st.sampled_from([0, 3000, DEFAULT_MAX_BYTES]), data=st.data())
def test_kept_states_and_windows_equal_rebuilt_ones_job_after_job(
    steps: list[Step], has_since: bool, checkpoint_interval: float, max_bytes: int,
    data: st.DataObject,
) -> None:
    src = Series(series.simulate(steps, has_since=has_since), checkpoint_interval)
    cache = SnapshotStates(max_bytes=max_bytes)
    for j in range(1, len(src.metas) + 1):  # one job per new snapshot, as the service runs
        history = src.metas[:j]
        lo = data.draw(st.integers(0, j - 1))
        hi = data.draw(st.integers(lo, j - 1))
        window = history[lo: hi + 1]
        wanted = [*ends(history), *(m for pair in segments(window) for m in pair),
                  *data.draw(st.lists(st.sampled_from(history), max_size=3))]
        got = cache.states(src, ("store", "t"), wanted)
        want = {m.id: src.expected(m) for m in sorted(set(wanted), key=lambda m: m.id)}
        same(got, want)
        assert cache.kept_bytes <= max_bytes
        assert list(series.window(window, got).items()) == list(
            series.window(window, want).items())
        for a, b in itertools.pairwise(sorted(set(wanted), key=lambda m: m.id)):
            reset = was_reset(a, b)
            assert list(pair_delta(got[a.id], got[b.id], reset).items()) == list(
                pair_delta(want[a.id], want[b.id], reset).items())


def test_a_job_reads_only_the_rows_stored_since_the_states_it_kept() -> None:
    moving = tuple(Action(k, "run", 2, 3.0) for k in range(2))
    src = Series(series.simulate([Step(False, moving)] * 60))  # 61 snapshots
    cache = SnapshotStates()
    cache.states(src, ("store", "t"), ends(src.metas[:60]))
    assert src.read == list(range(1, 61))  # the first job: from the checkpoint on
    src.read.clear()
    got = cache.states(src, ("store", "t"), ends(src.metas))
    same(got, {m.id: src.expected(m) for m in sorted(set(ends(src.metas)), key=lambda m: m.id)})
    # The newest rolled from the one before it, and each earlier pick that moved (the search
    # spreads 24 over the older history) from the kept pick before it: one snapshot's rows.
    moved = {m.id for m in ends(src.metas)} - {m.id for m in ends(src.metas[:60])}
    assert 61 in moved and sorted(src.read) == sorted(moved)
    # Another store (or this one recreated: the rows' version differs) shares nothing.
    src.read.clear()
    cache.states(src, ("other store", "t"), ends(src.metas))
    assert src.read == list(range(1, 62))
    src.read.clear()
    cache.states(dataclasses.replace(src, version=2, read=src.read), ("store", "t"),
                 ends(src.metas))
    assert src.read == list(range(1, 62))


def test_targets_that_keep_running_keep_their_states_under_round_robin() -> None:
    now = [0.0]
    src = Series(series.simulate([Step(False, (Action(0, "run"),))] * 4))
    cache = SnapshotStates(stale_after=600.0, clock=lambda: now[0])
    cache.states(src, ("s", "a"), src.metas)
    cache.states(src, ("s", "b"), src.metas)
    cache.max_bytes = cache.kept_bytes  # room for these two, not for a third
    for _ in range(3):  # round robin over three targets that do not all fit: no thrashing
        for target in ("a", "b", "c"):
            now[0] += 60.0
            assert cache.states(src, ("s", target), src.metas)
            assert set(cache.kept_targets()) == {("s", "a"), ("s", "b")}
            assert cache.kept_bytes <= cache.max_bytes
    now[0] += 601.0  # "b" gets no more jobs (another replica runs it): it makes room
    cache.states(src, ("s", "a"), src.metas)
    cache.states(src, ("s", "c"), src.metas)
    assert set(cache.kept_targets()) == {("s", "a"), ("s", "c")}


counters = st.builds(
    StatementCounters, dbid=st.just(1), userid=st.just(10), queryid=st.integers(0, 5),
    toplevel=st.booleans(), calls=st.integers(-1, 50),
    total_exec_time=st.floats(-1.0, 1e4), stddev_exec_time=st.floats(0.0, 50.0),
    min_exec_time=st.none() | st.floats(-1.0, 10.0) | st.just(float("nan")),
    max_exec_time=st.none() | st.floats(-1.0, 1e3),
    rows=st.integers(-1, 100), shared_blks_hit=st.integers(0, 100),
    stats_since=st.none() | st.just(datetime(2026, 1, 1, tzinfo=UTC)),
)


@settings(max_examples=300, deadline=None)
@given(start=st.lists(counters, max_size=8), moved=st.lists(counters, max_size=4),
       reset=st.booleans())
def test_pair_delta_skipping_shared_rows_equals_every_delta_computed(
    start: list[StatementCounters], moved: list[StatementCounters], reset: bool,
) -> None:
    before: dict[StatementKey, StatementCounters] = {c.key: c for c in start}
    after = dict(before)  # rolled forward: unmoved statements share their row
    after.update((c.key, c) for c in moved)
    computed = {k: d for k, c in after.items()
                if (d := delta(before.get(k), c, reset)) is not None}
    assert list(pair_delta(before, after, reset).items()) == list(computed.items())


def test_the_quick_checks_statistics_through_kept_states_equal_rebuilt_ones(store: str) -> None:
    base, _ = partitions.slot(datetime.now(UTC) - timedelta(hours=3), 3600.0)
    rng_steps = [Step(i % 11 == 10, (Action(i % 6, "run", 1 + i % 4, 1.0 + i % 7),
                                      Action((i * 5) % 6, "run" if i % 9 else "evict")))
                 for i in range(30)]
    readings = series.simulate(rng_steps, base=base)
    rs = RegressionSettings()
    cache = SnapshotStates()

    def write(conn: Conn) -> list[SnapshotMeta]:
        writer = StatementWriter(partition_interval=3600.0, checkpoint_interval=1800.0)
        for r in readings[:24]:
            writer.write(conn, "sim", reading_of(r), r.read_at, (), r.rows)
        return snapshots.list_snapshots(conn, "sim")

    with connect_store(Dsn(store)) as conn:
        metas = write(conn)
        for j in (3, 12, 13, 24):  # jobs, as after each snapshot (kept states between them)
            stored = metas[:j]
            assert window_statistics(conn, "sim", rs, stored, None, cache) == (
                window_statistics(conn, "sim", rs, stored, None))
            got = cache.load(conn, "sim", stored)
            for m in stored:
                assert list(got[m.id].items()) == list(snapshots.load_counters(
                    conn, m.id).items())
            assert window_stats(conn, stored, dict(got)) == window_stats(conn, stored, {})
        assert cache.kept_targets() and cache.kept_targets()[0][-1] == "sim"
        # The store emptied and written again: the same ids and times, other rows.
        conn.execute("TRUNCATE pgarchitect.snapshot, pgarchitect.statement_stat")
        conn.execute("ALTER SEQUENCE pgarchitect.snapshot_ids RESTART")
        readings = series.simulate(list(reversed(rng_steps)), base=base)
        again = write(conn)
        assert [(m.id, m.taken_at) for m in again] == [(m.id, m.taken_at) for m in metas]
        got = cache.load(conn, "sim", again)
        for m in again:
            assert list(got[m.id].items()) == list(snapshots.load_counters(conn, m.id).items())


def test_snapshot_jobs_keep_the_quick_checks_states(pg18: PgServer) -> None:
    store = new_database(pg18, "store")
    target = new_database(pg18, "t", extensions=("pg_stat_statements",))
    try:
        migrate(Dsn(store))
        t = Target("t", Dsn(target))
        config = Settings(targets=(t,), store=StoreSettings(Dsn(store)))
        states = SnapshotStates()
        for i in range(4):
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute(f"SELECT {i} + 1".encode())
            assert snapshot_and_check(config, t, None, None, states)[0] == "succeeded"
            assert [scope[-1] for scope in states.kept_targets()] == (["t"] if i else [])
            with connect_store(Dsn(store)) as conn, connect_target(
                    t.dsn, "target t", config.analyzer) as tconn:
                cached = quick_check(conn, tconn, "t", config.analyzer, states)
                rebuilt = quick_check(conn, tconn, "t", config.analyzer)
            assert dataclasses.replace(cached, checked_at=rebuilt.checked_at) == rebuilt
    finally:
        drop_database(pg18, target)
        drop_database(pg18, store)
