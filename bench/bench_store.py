"""Store benchmarks (docs/scaling.md): store bytes per target-day at 5,000 statements with 500
moving per 5-minute snapshot, and an audit over 30 days of such history. Figures go to
docs/benchmarks.md (section `store`); snapshot ingest against the bare fetch is
bench/bench_snapshot.py."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

from analyzer.audit import run_audit
from analyzer.snapshots.model import StatementCounters, TargetReading
from analyzer.store import partitions
from analyzer.store.connection import Conn, connect_store
from analyzer.store.writer import StatementWriter
from bench.report import BARE, median_seconds, write_figures
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

Row = tuple[str, str, str]
STATS_RESET = datetime(2026, 1, 1, tzinfo=UTC)


def _synthetic(n: int, rng: random.Random) -> list[StatementCounters]:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    return [StatementCounters(
        dbid=16384, userid=10, queryid=rng.getrandbits(63), toplevel=True,
        calls=rng.randint(1, 10**6), total_exec_time=rng.uniform(1, 1e7),
        stddev_exec_time=rng.uniform(0, 50), min_exec_time=rng.uniform(0, 1),
        max_exec_time=rng.uniform(10, 1000), total_plan_time=0.0, rows=rng.randint(0, 10**8),
        shared_blks_hit=rng.randint(0, 10**9), shared_blks_read=rng.randint(0, 10**6),
        shared_blks_dirtied=rng.randint(0, 10**5), shared_blks_written=rng.randint(0, 10**5),
        temp_blks_read=0, temp_blks_written=0, blk_read_time=rng.uniform(0, 1e4),
        blk_write_time=0.0, wal_bytes=float(rng.randint(0, 10**9)), stats_since=since,
        datname="app", username="app") for _ in range(n)]


def _move(s: StatementCounters, rng: random.Random) -> StatementCounters:
    calls = rng.randint(1, 500)
    return replace(s, calls=s.calls + calls, total_exec_time=s.total_exec_time + calls * 0.7,
                   rows=s.rows + calls, shared_blks_hit=s.shared_blks_hit + calls * 4,
                   wal_bytes=s.wal_bytes + calls * 100)


def _day(conn: Conn, target: str, day: datetime, statements: int, moving: int,
         writer: StatementWriter, rng: random.Random,
         current: list[StatementCounters]) -> list[StatementCounters]:
    """288 five-minute snapshots of one target over one day; returns the last state."""
    reading = TargetReading("18.1", 180001, "1.12", STATS_RESET, 0, ())
    for i in range(288):
        if i:
            for j in rng.sample(range(statements), moving):
                current[j] = _move(current[j], rng)
        writer.write(conn, target, reading, day + i * timedelta(minutes=5), (),
                     [s.as_row() for s in current])
    return current


def _bytes(conn: Conn, lower: datetime) -> tuple[int, int]:
    """Bytes (tables and indexes) of the statement_stat and snapshot partitions of a day."""
    out = []
    for parent in ("statement_stat", "snapshot"):
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size("
            "   format('%%I.%%I', %s::text, name)::regclass)), 0)"
            " FROM pgarchitect.time_partition WHERE parent = %s AND lower_bound >= %s"
            " AND upper_bound <= %s",
            (partitions.SCHEMA, parent, lower, lower + timedelta(days=1))).fetchone()
        out.append(int(row[0]) if row else 0)
    return out[0], out[1]


def bench_size(statements: int = 5000, moving: int = 500, days: int = 30) -> list[Row]:
    """Bytes per target-day, changed-only against full storage; then an audit on 30 days."""
    rng = random.Random(7)
    settings = AnalyzerSettings()
    today = partitions.slot(datetime.now(UTC), 86400.0)[0]
    with embedded_postgres(18) as pg:
        store = pg.create_database("store")
        full_store = pg.create_database("full")
        app = pg.create_database("app", extensions=("pg_stat_statements",))
        migrate(Dsn(store))
        migrate(Dsn(full_store))
        base = _synthetic(statements, rng)
        with connect_store(Dsn(store)) as conn:
            writer = StatementWriter()
            state = list(base)
            t0 = time.perf_counter()
            for d in range(days, 0, -1):
                state = _day(conn, "app", today - timedelta(days=d), statements, moving, writer,
                             rng, state)
            fill = time.perf_counter() - t0
            stat_bytes, snap_bytes = _bytes(conn, today - timedelta(days=1))
            row = conn.execute("SELECT count(*) FROM pgarchitect.statement_stat"
                               " WHERE taken_at >= %s", (today - timedelta(days=1),)).fetchone()
            rows_day = int(row[0]) if row else 0
            conn.execute("VACUUM ANALYZE pgarchitect.statement_stat")
            # The last snapshot of the day written by a writer without the target's state
            # (another replica wrote the previous one): the state is rebuilt from the store.
            for j in rng.sample(range(statements), moving):
                state[j] = _move(state[j], rng)
            reading = TargetReading("18.1", 180001, "1.12", STATS_RESET, 0, ())
            when = today - timedelta(seconds=60)
            t0 = time.perf_counter()
            cold = StatementWriter().write(conn, "app", reading, when, (),
                                           [s.as_row() for s in state])
            rebuild = time.perf_counter() - t0
            assert cold.checkpoint is None and cold.stored == moving
        with connect_store(Dsn(full_store)) as conn:
            every = StatementWriter(checkpoint_interval=1e-6)
            _day(conn, "app", today - timedelta(days=1), statements, moving, every, rng,
                 list(base))
            full_bytes, _ = _bytes(conn, today - timedelta(days=1))
        # The audit reads the history above for target "app", plus its own snapshot of a
        # real (small) target; time against the bare fetch of that target's view.
        with psycopg.connect(app, autocommit=True) as c:
            c.execute("CREATE TABLE t (a int)")
            for i in range(50):
                c.execute(f"SELECT count(*) FROM t WHERE a = {i}".encode())
        with psycopg.connect(app, autocommit=True) as c:
            bare = median_seconds(lambda: c.execute(BARE).fetchall())
        t0 = time.perf_counter()
        result = run_audit(settings, Target("app", Dsn(app)), Dsn(store))
        audit = time.perf_counter() - t0
    per_day = stat_bytes + snap_bytes
    mb = 1024 * 1024
    return [
        (f"store bytes per target-day: {statements:,} statements, {moving} moving per 5-minute "
         f"snapshot ({rows_day:,} rows a day)", f"{per_day / mb:.1f} MB",
         f"{per_day / full_bytes:.2f} x storing every statement each time "
         f"({full_bytes / mb:.0f} MB); goal < 50 MB; {per_day / rows_day:.0f} bytes/row"),
        (f"a fleet of 1,000 such targets, {settings.retention / 86400:.0f} days of retention",
         f"{per_day * 1000 * settings.retention / 86400 / 1024**4:.2f} TB",
         "docs/scaling.md sizes the store from this"),
        (f"{days} days of history written ({days * 288:,} snapshots)", f"{fill:.0f} s",
         f"{days * 288 / fill:.0f} snapshots/s"),
        ("last snapshot of a day by a writer without the state (rebuilt from the store)",
         f"{rebuild * 1000:.0f} ms", f"{rebuild / (fill / (days * 288)):.1f} x a warm write"),
        (f"audit over {days} days of snapshots (one target, {result.statements_analyzed:,} "
         "statements analysed)", f"{audit:.2f} s",
         f"{audit / bare:.0f} x the bare fetch of the audited target ({bare * 1000:.1f} ms)"),
    ]


def main() -> None:
    """Run the store benchmarks and write the docs/benchmarks.md section."""
    write_figures("store", "Store", bench_size())


if __name__ == "__main__":
    main()
