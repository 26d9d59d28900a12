"""Snapshot cost against the bare `pg_stat_statements(showtext => false)` fetch, at 5,000 and
20,000 statements with a tenth moving between snapshots (docs/scaling.md): checkpoint ingest,
the analyzer's read, and whole periodic snapshots with their phases (`fetch`, `compare`,
`write`, `catalog`, as the snapshot log line gives them). Each figure is paired with a bare
fetch measured just before it. Figures go to docs/benchmarks.md (section `snapshot`)."""

from __future__ import annotations

import random
import statistics

import psycopg

from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store.connection import connect_store
from analyzer.store.snapshots import store_clock
from analyzer.store.writer import StatementWriter
from bench.report import BARE, median_seconds, write_figures
from pgarchitect.config import AnalyzerSettings
from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

Row = tuple[str, str, str]


def _statements(app: str, tables: int, per_table: int, moving: float = 1.0,
                seed: int = 0) -> None:
    """Run tables x per_table distinct statements (or the `moving` share of them)."""
    rng = random.Random(seed)
    cols = 20
    with psycopg.connect(app, autocommit=True) as conn:
        for t in range(tables):
            for k in range(per_table):
                if moving < 1.0 and rng.random() >= moving:
                    continue
                a, b = divmod(k, cols)
                conn.execute(f"SELECT c{a % cols} FROM t{t} WHERE c{b} = 1"
                             f" AND c{(a // cols) % cols} > 0".encode())


def bench_ingest(statements: int) -> list[Row]:
    """Store writes of `statements` rows (checkpoint) and of 10 % moving, vs the bare fetch."""
    settings = AnalyzerSettings()
    tables, per_table = 100, statements // 100
    with embedded_postgres(18, settings={"pg_stat_statements.max": str(statements + 5000)}) as pg:
        app = pg.create_database("app", extensions=("pg_stat_statements",))
        store = pg.create_database("store")
        migrate(Dsn(store))
        with psycopg.connect(app, autocommit=True) as conn:
            for t in range(tables):
                conn.execute(f"CREATE TABLE t{t} ({', '.join(f'c{i} int' for i in range(20))})"
                             .encode())
                conn.execute(f"CREATE INDEX ON t{t} (c0)".encode())
        _statements(app, tables, per_table)
        with connect_target(Dsn(app), "target", settings) as tconn, \
                connect_store(Dsn(store)) as sconn:
            source = StatementSource(tconn)
            reading = source.read()
            n = len(reading.rows)
            writer = StatementWriter()
            names = iter(range(100))

            def bare() -> float:
                return median_seconds(lambda: tconn.execute(BARE).fetchall(), runs=3)

            def checkpoint() -> None:
                # Every row stored (a new target each time; texts left aside).
                w = writer.write(sconn, f"ckpt{next(names)}", reading,
                                 store_clock(sconn), (), reading.rows)
                assert w.stored == n

            checkpoint()  # partitions created, caches warm
            # Each figure is paired with a bare fetch measured just before it: the machine
            # is shared, and its load drifts within a run.
            ingest = [(bare(), median_seconds(checkpoint, runs=1)) for _ in range(5)]
            reads = [(bare(), median_seconds(source.read, runs=1)) for _ in range(5)]
            take_snapshot(source, sconn, "app", settings.retention, writer)
            runs = []
            for i in range(7):
                _statements(app, tables, per_table, moving=0.1, seed=i + 1)
                base = bare()
                runs.append((base, take_snapshot(source, sconn, "app", settings.retention,
                                                 writer)))
    base = statistics.median(b for b, _ in ingest)
    took = statistics.median(t for _, t in ingest)
    ratio = statistics.median(t / b for b, t in ingest)
    read_ratio = statistics.median(t / b for b, t in reads)
    periodic = statistics.median(r.duration_seconds for _, r in runs)
    periodic_ratio = statistics.median(r.duration_seconds / b for b, r in runs)
    stored = statistics.median(r.stored for _, r in runs)
    phases = {name: statistics.median(r.phases[name] for _, r in runs)
              for name in ("fetch", "compare", "write", "catalog")}
    read_again = sum(r.catalog_read for _, r in runs)
    return [
        (f"bare `pg_stat_statements(showtext => false)` fetch, {n:,} entries",
         f"{base * 1000:.0f} ms", "baseline (median of the fetches paired with each figure)"),
        (f"checkpoint ingest: COPY of {n:,} statement rows into the store",
         f"{took * 1000:.0f} ms",
         f"{ratio:.2f} x bare fetch (bar <= 1.5); {n / took:,.0f} rows/s (bar >= 50,000)"),
        ("the analyzer's read of the view (rows as stored)",
         f"{statistics.median(t for _, t in reads) * 1000:.0f} ms",
         f"{read_ratio:.2f} x bare fetch"),
        (f"whole periodic snapshot, 10 % moving ({stored:,.0f} changed rows stored)",
         f"{periodic * 1000:.0f} ms", f"{periodic_ratio:.2f} x bare fetch (bar <= 1.5)"),
        ("of which, per phase (medians; the snapshot log line's `fetch`, `compare`, `write`, "
         "`catalog`)", " / ".join(f"{v * 1000:.1f}" for v in phases.values()) + " ms",
         f"catalog read in full in {read_again} of {len(runs)} snapshots (the probe saw no "
         "change otherwise)"),
    ]


def main() -> None:
    """Run the snapshot benchmarks and write the docs/benchmarks.md section."""
    write_figures("snapshot", "Snapshot", bench_ingest(5000) + bench_ingest(20_000))


if __name__ == "__main__":
    main()
