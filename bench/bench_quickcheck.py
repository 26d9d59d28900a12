"""Quick-check benchmark (docs/scaling.md): one target's quick check after each of its
snapshot jobs, with the process's kept snapshot states (analyzer/store/states.py) against
without (every state rebuilt from its checkpoint, as before), in one process and one run.

One store (PostgreSQL 18), one target of STATEMENTS statements, a tenth of them moving
between snapshots 5 minutes apart. After each snapshot the quick check runs twice, uncached
and cached (the cache kept from job to job), alternating which goes first; both must find the
same. The first jobs search change points over all their snapshots; from 50 snapshots on, the
search reads 24 recent and 24 spread over the older history (analysis/windows.py). Also the
bytes the kept states hold (tracemalloc) against the cache's own estimate. Figures go to
docs/benchmarks.md (section `quickcheck`).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

from analyzer.audit import quick_check
from analyzer.audit.values import QuickCheck
from analyzer.snapshots.model import TargetReading
from analyzer.store import partitions, snapshots
from analyzer.store.connection import Conn, connect_store
from analyzer.store.states import SnapshotStates
from analyzer.store.writer import StatementWriter
from bench.bench_store import STATS_RESET, _move, _synthetic
from bench.report import write_figures
from pgarchitect.config import AnalyzerSettings
from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

STATEMENTS = 500
MOVING = STATEMENTS // 10
JOBS = 60  # snapshots, a quick check after each
PHASES = ((1, 30), (31, JOBS))  # jobs 1-30 (the fleet benchmark's histories), then 31-60
Row = tuple[str, str, str]


def _timed(fn: Callable[[], QuickCheck]) -> tuple[QuickCheck, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _found(q: QuickCheck) -> tuple[object, ...]:
    return q.statements_analyzed, q.regressions, q.clusters, q.windows


def bench_quickcheck() -> list[Row]:
    rng = random.Random(11)
    settings = AnalyzerSettings()
    reading = TargetReading("18.1", 180001, "1.12", STATS_RESET, 0, ())
    start = partitions.slot(datetime.now(UTC) - timedelta(hours=6), 86400.0)[0]
    state = _synthetic(STATEMENTS, rng)
    times: dict[str, list[tuple[float, float]]] = {"uncached": [], "cached": []}
    cache = SnapshotStates()
    with embedded_postgres(18) as pg:
        store_dsn = pg.create_database("store")
        app = pg.create_database("app")
        migrate(Dsn(store_dsn))
        with connect_store(Dsn(store_dsn)) as store, psycopg.connect(app) as tconn:
            writer = StatementWriter()
            for job in range(1, JOBS + 1):
                if job > 1:
                    for j in rng.sample(range(STATEMENTS), MOVING):
                        state[j] = _move(state[j], rng)
                    # Slower calls for a few statements from job 20 on: something to find.
                    for j in range(5) if job >= 20 else ():
                        state[j] = replace(state[j], total_exec_time=state[j].total_exec_time
                                           + 3000.0 * (state[j].calls % 7 + 1))
                writer.write(store, "app", reading, start + job * timedelta(minutes=5), (),
                             [s.as_row() for s in state])
                runs = {
                    "uncached": lambda: quick_check(store, tconn, "app", settings),
                    "cached": lambda: quick_check(store, tconn, "app", settings, cache),
                }
                order = ["uncached", "cached"] if job % 2 else ["cached", "uncached"]
                found = {}
                for name in order:
                    q, wall, cpu = _timed(runs[name])
                    found[name] = _found(q)
                    times[name].append((wall, cpu))
                assert found["cached"] == found["uncached"], job
            kept, estimate = _kept_bytes(store, "app")
    rows: list[Row] = []
    for lo, hi in PHASES:
        u = [times["uncached"][i - 1] for i in range(lo, hi + 1)]
        c = [times["cached"][i - 1] for i in range(lo, hi + 1)]
        u_cpu, c_cpu = statistics.median(x[1] for x in u), statistics.median(x[1] for x in c)
        u_wall, c_wall = statistics.median(x[0] for x in u), statistics.median(x[0] for x in c)
        rows.append((
            f"quick check per job, jobs {lo}-{hi} ({STATEMENTS} statements, {MOVING} moving): "
            "analyzer CPU, median", f"{c_cpu * 1000:.1f} ms kept states",
            f"{c_cpu / u_cpu:.2f} x rebuilding every state ({u_cpu * 1000:.1f} ms)"))
        rows.append((f"the same, wall time (with the store's reads), jobs {lo}-{hi}",
                     f"{c_wall * 1000:.1f} ms",
                     f"{c_wall / u_wall:.2f} x ({u_wall * 1000:.1f} ms)"))
    rows.append((f"memory {JOBS} kept states hold (tracemalloc), per statement of a state",
                 f"{kept / (JOBS * STATEMENTS):.0f} bytes",
                 f"{kept / estimate:.2f} x the cache's estimate ({estimate / 2**20:.2f} MiB"
                 f" for {kept / 2**20:.2f} MiB measured)"))
    return rows


def _kept_bytes(store: Conn, target: str) -> tuple[int, int]:
    """Bytes a fresh cache holds once it kept every snapshot's state (all but the newest
    rolled from the checkpoint, then the newest from the one before), measured, and as the
    cache estimates them."""
    metas = snapshots.list_snapshots(store, target)
    cache = SnapshotStates()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache.load(store, target, metas[:-1])
    cache.load(store, target, metas)
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return kept, cache.kept_bytes


def main() -> None:
    """Run the quick-check benchmark and write the docs/benchmarks.md section."""
    write_figures("quickcheck", "Quick check", bench_quickcheck())


if __name__ == "__main__":
    main()
