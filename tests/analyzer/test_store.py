"""The store at fleet scale, on a real PostgreSQL 18 store: time partitions, changed-only
snapshots rebuilt exactly, racing snapshots, and a store migrated from the old layout."""

from __future__ import annotations

import inspect
import itertools
import random
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from analyzer.audit import run_audit, window_stats
from analyzer.snapshots.model import STAT_COLUMNS, TargetReading
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import SnapshotResult, take_snapshot
from analyzer.store import partitions, snapshots
from analyzer.store.connection import Conn, connect_store
from analyzer.store.locks import TARGET_WRITE_LOCK
from analyzer.store.writer import StatementWriter, Written
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import default_directory, migrate
from tests.analyzer import series
from tests.analyzer.series import Action, Step
from tests.conftest import drop_database, new_database
from tests.waiting import eventually

SETTINGS = AnalyzerSettings()


def reading_of(r: series.Reading) -> TargetReading:
    return TargetReading("18.1", 180001, "1.12", r.stats_reset, r.dealloc, r.rows)


def random_steps(rng: random.Random, count: int) -> list[Step]:
    out = []
    for _ in range(count):
        acts = []
        for _ in range(rng.randint(0, 5)):
            kind = rng.choice(["run", "run", "run", "idle", "evict"])
            acts.append(Action(rng.randrange(series.KEYS), kind, rng.randint(1, 30),
                               rng.uniform(0.05, 200.0), rng.random() < 0.7))
        out.append(Step(rng.random() < 0.08, tuple(acts)))
    return out


def write_series(store: Conn, target: str, readings: list[series.Reading],
                 writer: StatementWriter, cold_every: int = 0) -> list[
                     Written]:
    out = []
    for i, r in enumerate(readings):
        if cold_every and i % cold_every == cold_every - 1:
            # Another process (or a restart): the writer rebuilds the state from the store.
            writer = StatementWriter(writer.partition_interval,
                                                writer.checkpoint_interval)
        out.append(writer.write(store, target, reading_of(r), r.read_at, (), r.rows))
    return out


def partition_tables(store: Conn) -> set[str]:
    rows = store.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent IN ('pgarchitect.snapshot'::regclass,"
        " 'pgarchitect.statement_stat'::regclass)").fetchall()
    return {str(r[0]) for r in rows}


def test_changed_only_snapshots_rebuild_exactly_through_the_store(store: str) -> None:
    rng = random.Random(14)
    base, _ = partitions.slot(datetime.now(UTC) - timedelta(hours=5), 3600.0)
    readings = series.simulate(random_steps(rng, 40), base=base)
    expected = series.store_changed_only(readings, checkpoint_interval=1800.0,
                                         partition_interval=3600.0)
    with connect_store(Dsn(store)) as conn:
        writer = StatementWriter(partition_interval=3600.0, checkpoint_interval=1800.0)
        written = write_series(conn, "sim", readings, writer, cold_every=7)
        # The store holds what the pure planner says, and no more.
        assert [(w.checkpoint, w.stored) for w in written] == [
            (reason, len(rows)) for reason, rows in expected]
        assert sum(w.stored for w in written) < sum(len(r.statements) for r in readings)
        assert {w.checkpoint for w in written} == {None, "first", "reset", "evicted",
                                                   "interval", "partition", "vanished"}
        metas = snapshots.list_snapshots(conn, "sim")
        assert [m.id for m in metas] == [w.snapshot.id for w in written]
        for m, r in zip(metas, readings, strict=True):
            assert snapshots.load_counters(conn, m.id) == r.state
        assert snapshots.load_series(conn, metas) == [r.state for r in readings]
        some = {1000, 1003}
        assert snapshots.load_series(conn, metas[5:20], some) == [
            {k: v for k, v in r.state.items() if k[2] in some} for r in readings[5:20]]
        full = {m.id: r.state for m, r in zip(metas, readings, strict=True)}
        for w in (metas, metas[3:17], metas[10:11], metas[20:]):
            assert window_stats(conn, w, {}) == series.window(w, full)
        names = partition_tables(conn)
        assert len(names) == 2 * len(partitions.existing(conn))


def test_partitions_created_ahead_and_dropped_whole_by_retention(store: str) -> None:
    now = datetime.now(UTC)
    hour = 3600.0
    base, _ = partitions.slot(now - timedelta(hours=10), hour)
    readings = series.simulate([Step(False, (Action(0, "run"), Action(1, "run")))] * 20,
                               base=base, step=timedelta(minutes=30))
    with connect_store(Dsn(store)) as conn:
        writer = StatementWriter(partition_interval=hour, checkpoint_interval=86400.0)
        written = write_series(conn, "t1", readings, writer)
        hourly = [p for p in partitions.existing(conn) if p.upper - p.lower == timedelta(hours=1)]
        # Ahead of need: the hour of the newest snapshot and the two after it.
        newest = partitions.slot(readings[-1].read_at, hour)[1]
        assert max(p.upper for p in hourly) == newest + timedelta(hours=2)
        # Each hour's first snapshot of the target is a checkpoint.
        assert [w.checkpoint for w in written][:4] == ["first", None, "partition", None]
        before = partition_tables(conn)
        dropped = partitions.drop_expired(conn, retention=4 * hour)
        assert dropped > 0
        cutoff = now - timedelta(hours=4)
        left = partitions.existing(conn)
        assert all(p.upper > cutoff for p in left)
        gone = before - partition_tables(conn)
        assert len(gone) == 2 * dropped
        assert all(n.startswith(("snapshot_p", "statement_stat_p")) for n in gone)
        row = conn.execute("SELECT min(taken_at) FROM pgarchitect.statement_stat").fetchone()
        assert row is not None and row[0] >= partitions.slot(cutoff, hour)[0] - timedelta(
            hours=1)
        # What is left still rebuilds exactly: each partition starts at a checkpoint.
        metas = snapshots.list_snapshots(conn, "t1")
        assert metas and len(metas) < len(readings)
        by_time = {r.read_at: r for r in readings}
        for m in metas:
            assert snapshots.load_counters(conn, m.id) == by_time[m.taken_at].state
        assert partitions.drop_expired(conn, retention=4 * hour) == 0
        # A changed interval: new partitions follow the existing ones without overlap.
        until = partitions.ensure(conn, now, 86400.0, ahead=1)
        spans = sorted((p.lower, p.upper) for p in partitions.existing(conn))
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        assert until >= partitions.slot(now, 86400.0)[1]


def test_a_lock_held_by_a_reader_defers_the_drop(store: str) -> None:
    now = datetime.now(UTC)
    readings = series.simulate([Step(False, (Action(0, "run"),))] * 3,
                               base=now - timedelta(hours=6), step=timedelta(minutes=30))
    with connect_store(Dsn(store)) as conn, psycopg.connect(store) as reader:
        write_series(conn, "t1", readings,
                     StatementWriter(partition_interval=3600.0))
        reader.execute("SELECT count(*) FROM pgarchitect.statement_stat")  # holds the lock
        assert partitions.drop_expired(conn, retention=3600.0, lock_timeout=0.05) == 0
        reader.rollback()
        assert partitions.drop_expired(conn, retention=3600.0, lock_timeout=5.0) > 0


def test_two_snapshots_racing_for_one_target_stay_consistent(pg18: PgServer, store: str) -> None:
    app = new_database(pg18, "race", extensions=("pg_stat_statements",))
    try:
        with psycopg.connect(app, autocommit=True) as c:
            c.execute("CREATE TABLE t (a int)")
            for i in range(30):
                c.execute(f"SELECT count(*) FROM t WHERE a > {i} AND a < {i} + 1".encode())
        results: list[SnapshotResult] = []
        errors: list[BaseException] = []

        def snap() -> None:
            try:
                with connect_target(Dsn(app), "target", SETTINGS) as tconn, \
                        connect_store(Dsn(store)) as sconn:
                    results.append(take_snapshot(StatementSource(tconn), sconn, "race",
                                                 SETTINGS.retention))
            except BaseException as exc:
                errors.append(exc)

        snap()  # the first snapshot, so that the racers write changed rows
        with psycopg.connect(store, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s::int4, hashtext('race'))",
                           (TARGET_WRITE_LOCK,))
            threads = [threading.Thread(target=snap) for _ in range(2)]
            for t in threads:
                t.start()

            def both_waiting() -> bool:
                row = holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                     " AND NOT granted").fetchone()
                return row is not None and row[0] == 2

            eventually(both_waiting, "both snapshots waiting for the target's lock")
            holder.execute("SELECT pg_advisory_unlock(%s::int4, hashtext('race'))",
                           (TARGET_WRITE_LOCK,))
            for t in threads:
                t.join()
        assert errors == []
        first, racers = results[0], results[1:]
        stored = [r for r in racers if not r.skipped]
        assert stored, "at least one racer stores its snapshot"
        with connect_store(Dsn(store)) as conn:
            metas = snapshots.list_snapshots(conn, "race")
            assert [m.id for m in metas] == [first.snapshot.id, *sorted(
                r.snapshot.id for r in stored)]
            assert [m.taken_at for m in metas] == sorted(m.taken_at for m in metas)
            for r in racers:
                if r.skipped:  # it was read before the winner: the winner stands
                    assert r.snapshot.id in {m.id for m in metas}
            counts = conn.execute("SELECT id, statement_count FROM pgarchitect.snapshot"
                                  " WHERE target = 'race'").fetchall()
            for sid, count in counts:
                assert len(snapshots.load_counters(conn, int(sid))) == count
    finally:
        drop_database(pg18, app)


def _old_layout_snapshot(conn: psycopg.Connection[Any], target: str, taken_at: datetime,
                         r: series.Reading) -> None:
    """A snapshot as the store of migration 0002 held it (every statement, no partitions)."""
    row = conn.execute(
        "INSERT INTO pgarchitect.snapshot (target, taken_at, server_version, stats_reset,"
        " dealloc, statement_count) VALUES (%s, %s, '18.1', %s, %s, %s) RETURNING id",
        (target, taken_at, r.stats_reset, r.dealloc, len(r.statements))).fetchone()
    assert row is not None
    cols = ", ".join(("snapshot_id", *STAT_COLUMNS))
    with conn.cursor().copy(f"COPY pgarchitect.statement_stat ({cols}) FROM STDIN".encode()) as c:
        for s in r.statements:
            c.write_row((row[0], *s.as_row()))


def test_a_store_at_0002_migrates_keeping_snapshots_and_audits(
    pg18: PgServer, store: str, tmp_path: Path
) -> None:
    # `store` is migrated by its fixture: use a fresh database migrated to 0002 only.
    old = new_database(pg18, "old")
    app = new_database(pg18, "app", extensions=("pg_stat_statements",))
    try:
        early = tmp_path / "migrations"
        early.mkdir()
        for f in sorted(default_directory().glob("000[12]_*.sql")):
            shutil.copy(f, early / f.name)
        migrate(Dsn(old), early)
        rng = random.Random(4)
        readings = series.simulate(random_steps(rng, 12),
                                   base=datetime.now(UTC) - timedelta(days=2),
                                   step=timedelta(hours=3))
        with psycopg.connect(old, autocommit=True) as c:
            for r in readings:
                _old_layout_snapshot(c, "app", r.read_at, r)
            c.execute("INSERT INTO pgarchitect.audit_run (target, status, snapshot_id)"
                      " SELECT 'app', 'succeeded', max(id) FROM pgarchitect.snapshot")
        assert [m.name for m in _applied(old)] == ["0001_store", "0002_analyzer"]
        migrate(Dsn(old))
        assert "0004_partitions" in [m.name for m in _applied(old)]
        with connect_store(Dsn(old)) as conn:
            metas = snapshots.list_snapshots(conn, "app")
            assert len(metas) == len(readings)
            for m, r in zip(metas, readings, strict=True):
                assert m.taken_at == r.read_at
                assert snapshots.load_counters(conn, m.id) == r.state
            assert partition_tables(conn)
        # The migrated store takes snapshots and runs audits against a real target.
        with psycopg.connect(app, autocommit=True) as c:
            c.execute("CREATE TABLE t (a int)")
            c.execute("SELECT count(*) FROM t")
        target = Target("app2", Dsn(app))
        with connect_target(Dsn(app), "target", SETTINGS) as tconn, \
                connect_store(Dsn(old)) as sconn:
            first = take_snapshot(StatementSource(tconn), sconn, "app2", SETTINGS.retention)
            row = sconn.execute("SELECT max(id) FROM pgarchitect.snapshot"
                                " WHERE target = 'app'").fetchone()
            assert row is not None and first.snapshot.id > int(row[0])
        result = run_audit(SETTINGS, target, Dsn(old))
        assert result.snapshot_id is not None and result.snapshot_id > first.snapshot.id
        with psycopg.connect(old) as c:
            status = c.execute("SELECT status FROM pgarchitect.audit_run WHERE target = 'app2'"
                               ).fetchall()
        assert status == [("succeeded",)]
    finally:
        drop_database(pg18, old)
        drop_database(pg18, app)


def _applied(dsn: str) -> list[Any]:
    with psycopg.connect(dsn) as c:
        rows = c.execute("SELECT name FROM pgarchitect.schema_migrations ORDER BY version")
        return [type("M", (), {"name": r[0]}) for r in rows.fetchall()]


@pytest.mark.parametrize("bad", ["0s", "0"])
def test_a_zero_partition_interval_is_refused(bad: str) -> None:
    from pgarchitect.config import load_settings
    from pgarchitect.errors import ConfigError

    with pytest.raises(ConfigError, match=r"analyzer\.partition_interval"):
        load_settings(flags={"analyzer": {"partition_interval": bad}}, environ={})


def test_insert_snapshot_alone_creates_its_partition(store: str) -> None:
    r = series.simulate([Step(False, (Action(0, "run"), Action(1, "run")))])[-1]
    when = datetime.now(UTC) - timedelta(days=3)
    with connect_store(Dsn(store)) as conn:
        with conn.transaction():
            snap = snapshots.insert_snapshot(conn, "direct", reading_of(r), (), r.rows,
                                             taken_at=when)
        assert snapshots.load_counters(conn, snap.id) == r.state
        assert [p.lower for p in partitions.existing(conn)] == [partitions.slot(when, 86400)[0]]


def test_a_changed_interval_still_starts_each_real_partition_at_a_checkpoint(store: str) -> None:
    hour = timedelta(hours=1)
    base, _ = partitions.slot(datetime.now(UTC) - 8 * hour, 3600.0)
    if partitions.slot(base, 86400.0)[1] < base + 5 * hour:
        base -= 5 * hour  # keep the run inside one UTC day
    readings = series.simulate([Step(False, (Action(0, "run"),))] * 7, base=base,
                               step=hour / 2)
    with connect_store(Dsn(store)) as conn:
        hourly = StatementWriter(partition_interval=3600.0)
        first = hourly.write(conn, "t", reading_of(readings[0]), readings[0].read_at, (),
                             readings[0].rows)
        daily = StatementWriter(partition_interval=86400.0)
        rest = [daily.write(conn, "t", reading_of(r), r.read_at, (), r.rows)
                for r in readings[1:]]
        # Hourly partitions up to base + 3 h, then one running to midnight (and one filling
        # the day before base).
        bounds = [(p.lower - base, p.upper - p.lower) for p in partitions.existing(conn)
                  if p.lower >= base]
        assert bounds[:3] == [(0 * hour, hour), (hour, hour), (2 * hour, hour)]
        assert bounds[3][0] == 3 * hour
        assert [first.checkpoint, *(w.checkpoint for w in rest)] == [
            "first", None, "partition", None, "partition", None, "partition", None]


def test_counters_are_read_back_by_column_name() -> None:
    # The row maker's parameters are the columns it is given, in order (one definition).
    assert tuple(inspect.signature(snapshots._counters).parameters) == STAT_COLUMNS
