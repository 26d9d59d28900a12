"""Fleet benchmark (docs/scaling.md): N simulated targets against one store and two analyzer
workers, at a compressed snapshot interval.

The targets are N databases of one PostgreSQL 18 server, each with its own statement set
(STATEMENTS distinct statements; a workload thread runs a tenth of each target's statements
every interval, so about that many move between two snapshots). The store is a second
PostgreSQL 18 server. Two `pgarchitect analyzer` processes (the procrastinate service,
default worker concurrency) take the snapshots: each snapshot job defers its successor one
`snapshot_interval` later (analyzer/jobs.py). For each N, after a warm-up, one measurement
window: snapshots stored per second (sustained) against the N / interval asked for, the lag
of snapshot jobs (when they started against when they were scheduled), the store's growth
and the CPU time of the store server, of the targets' server and of the two workers per
snapshot. Each N is measured twice, one right after the other: first with a store and a target
session opened for every job (`analyzer.connection_idle_timeout: 0`, the default), then with
the sessions kept between jobs (`connection_idle_timeout: 10m`, opt-in;
analyzer/connections.py). Figures go to docs/benchmarks.md (section `fleet`).

`PGARCHITECT_BENCH_FLEET_SIZES` (e.g. ``4,16``) measures other fleet sizes.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml

from bench.report import write_section
from pgarchitect.demo.embedded import PgServer, embedded_postgres, free_port
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

SIZES = tuple(int(n) for n in os.environ.get("PGARCHITECT_BENCH_FLEET_SIZES",
                                             "4,8,16,24,32").split(","))
MODES = ("per job", "kept")  # sessions opened per job (idle timeout 0, the default), kept
STATEMENTS = 500  # per target
MOVING = 0.1  # share of a target's statements run every interval
INTERVAL = 2.0  # seconds: the compressed snapshot interval (production default: 5 minutes)
WARMUP, WINDOW = 12.0, 30.0
TOKEN = "bench-token-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def statement(i: int) -> str:
    """The i-th of many structurally distinct statements (as in bench_exporter)."""
    terms, columns = divmod(i, 100)
    return "SELECT " + "+".join(["1"] * (terms + 1)) + ", 1" * columns


def fill(dsn: str) -> None:
    """Every statement of a target once."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.pipeline():
        for i in range(STATEMENTS):
            conn.execute(statement(i).encode())


class Workload:
    """A thread that runs a random tenth of each target's statements every interval."""

    def __init__(self, dsns: list[str]) -> None:
        self.dsns = dsns
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(5)
        conns = [psycopg.connect(d, autocommit=True) for d in self.dsns]
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                for conn in conns:
                    with conn.pipeline():
                        for i in rng.sample(range(STATEMENTS), int(STATEMENTS * MOVING)):
                            conn.execute(statement(i).encode())
                self.stop.wait(max(INTERVAL - (time.monotonic() - started), 0.05))
        finally:
            for conn in conns:
                conn.close()

    def __enter__(self) -> Workload:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def cpu_seconds(pid: int, children_of: bool = False) -> float:
    """User + system CPU of a process (and, for a postmaster, of its live and reaped
    children), from /proc."""
    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(pid)
    total = sum(int(v) for v in own[11:15])  # utime, stime, cutime, cstime
    if children_of:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    f = fields(int(entry.name))
                except OSError:
                    continue
                if int(f[1]) == pid:
                    total += int(f[11]) + int(f[12])
    return total / TICKS


class Replica:
    """One `pgarchitect analyzer` process."""

    def __init__(self, directory: Path, name: str, store: str, targets: dict[str, str],
                 mode: str) -> None:
        port = free_port()
        config = directory / f"{name}.yml"
        analyzer: dict[str, str] = {"listen": f"127.0.0.1:{port}",
                                    "snapshot_interval": f"{INTERVAL}s", "admin_token": TOKEN}
        analyzer["connection_idle_timeout"] = "0s" if mode == "per job" else "10m"
        config.write_text(yaml.safe_dump({
            "targets": [{"name": n, "dsn": d} for n, d in targets.items()],
            "store": {"dsn": store}, "log_level": "warning", "analyzer": analyzer}))
        self.log = open(directory / f"{name}.log", "ab")  # noqa: SIM115 - the child's output
        self.proc = subprocess.Popen([sys.executable, "-m", "pgarchitect", "analyzer",
                                      "--config", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"analyzer {name} did not start (see {self.log.name})"
                                       ) from None
                time.sleep(0.3)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@dataclass
class Step:
    """What one fleet size did in the measurement window."""

    targets: int
    mode: str           # MODES: sessions opened per job, or kept between jobs
    asked: float        # snapshots/s the schedule asks for (targets / interval)
    sustained: float    # snapshots/s stored
    lag_p50: float      # seconds a snapshot job started after it was scheduled
    lag_p95: float
    stored_rows: float  # statement rows per snapshot
    bytes_per_snapshot: float
    store_cpu_ms: float  # store server CPU per snapshot
    targets_cpu_ms: float  # targets' server CPU per snapshot (the workload's statements too)
    worker_cpu_ms: float  # analyzer processes' CPU per snapshot
    load: float         # 1-minute load average at the end of the window


def _one(conn: psycopg.Connection[tuple[object, ...]], sql: str,
         *params: object) -> tuple[object, ...]:
    row = conn.execute(sql.encode(), params).fetchone()
    assert row is not None
    return row


def store_bytes(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = _one(conn, "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                     " JOIN pg_namespace n ON n.oid = c.relnamespace"
                     " WHERE n.nspname = 'pgarchitect_partitions' AND c.relkind = 'r'")
    return int(str(row[0]))


def measure(targets_pg: PgServer, store_pg: PgServer, dsns: dict[str, str],
            directory: Path, mode: str) -> Step:
    """Two replicas on the first len(dsns) targets over a new store: warm up, then one
    window. A new store for every run, so that each starts with the same (empty) history:
    the quick check of every snapshot job reads the target's stored snapshots, so its cost
    grows with them, and a run after another would pay for the history of both."""
    tag = mode.replace(" ", "")
    store = store_pg.create_database(f"store_{len(dsns)}_{tag}")
    migrate(Dsn(store))
    replicas = [Replica(directory, f"r{len(dsns)}{tag}{x}", store, dsns, mode) for x in "ab"]
    try:
        with Workload(list(dsns.values())):
            time.sleep(WARMUP)
            with psycopg.connect(store, autocommit=True) as conn:
                t0 = _one(conn, "SELECT clock_timestamp()")[0]
                b0, c0 = store_bytes(conn), cpu_seconds(store_pg.pid, True)
                g0 = cpu_seconds(targets_pg.pid, True)
                w0 = sum(cpu_seconds(r.proc.pid) for r in replicas)
                time.sleep(WINDOW)
                t1 = _one(conn, "SELECT clock_timestamp()")[0]
                b1, c1 = store_bytes(conn), cpu_seconds(store_pg.pid, True)
                g1 = cpu_seconds(targets_pg.pid, True)
                w1 = sum(cpu_seconds(r.proc.pid) for r in replicas)
                count, rows = _one(
                    conn, "SELECT count(*), coalesce(avg(stored_count), 0)"
                          " FROM pgarchitect.snapshot WHERE taken_at >= %s AND taken_at < %s"
                          " AND target = ANY(%s)", t0, t1, list(dsns))
                p50, p95 = _one(
                    conn, "SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), 0),"
                          " coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY lag), 0)"
                          " FROM (SELECT extract(epoch FROM e.at - j.scheduled_at) AS lag"
                          "  FROM procrastinate_events e JOIN procrastinate_jobs j"
                          "    ON j.id = e.job_id"
                          "  WHERE e.type = 'started' AND j.task_name = 'snapshot'"
                          "    AND j.scheduled_at IS NOT NULL AND e.at >= %s AND e.at < %s) l",
                    t0, t1)
    finally:
        for r in replicas:
            r.stop()
    seconds = (t1 - t0).total_seconds()  # type: ignore[operator]
    n = max(int(str(count)), 1)
    return Step(len(dsns), mode, len(dsns) / INTERVAL, n / seconds, float(str(p50)),
                float(str(p95)), float(str(rows)), (b1 - b0) / n, (c1 - c0) * 1000 / n,
                (g1 - g0) * 1000 / n, (w1 - w0) * 1000 / n, os.getloadavg()[0])


def main() -> None:
    """Run the fleet benchmark and write its section of docs/benchmarks.md."""
    directory = Path(tempfile.mkdtemp(prefix="pgarchitect-fleet"))
    wall = time.monotonic()
    load_before = os.getloadavg()[0]
    steps: list[Step] = []
    max_pgss = max(SIZES) * STATEMENTS + 5000
    with embedded_postgres(18, settings={"pg_stat_statements.max": str(max_pgss),
                                         "max_connections": "300"}) as targets_pg, \
            embedded_postgres(18, settings={"max_connections": "200"}) as store_pg:
        dsns: dict[str, str] = {}
        for n in SIZES:
            while len(dsns) < n:
                name = f"t{len(dsns):03d}"
                dsns[name] = targets_pg.create_database(name, extensions=("pg_stat_statements",))
                fill(dsns[name])
            for mode in MODES:
                steps.append(measure(targets_pg, store_pg, dict(dsns), directory, mode))
                s = steps[-1]
                print(f"{s.targets} targets, sessions {s.mode}: {s.sustained:.2f}/"
                      f"{s.asked:.2f} snapshots/s, lag p50 {s.lag_p50:.2f} s p95 "
                      f"{s.lag_p95:.2f} s, workers {s.worker_cpu_ms:.0f} ms per snapshot, "
                      f"load {s.load:.1f}", flush=True)
    elapsed = time.monotonic() - wall
    write_section("fleet", report(steps, load_before, elapsed))


def kept_up(s: Step) -> bool:
    """Whether a fleet size kept up: at least 90 % of the snapshots asked for stored, and jobs
    starting within one interval of their time (p95)."""
    return s.sustained >= 0.9 * s.asked and s.lag_p95 <= INTERVAL


def knee(steps: list[Step]) -> Step | None:
    """The first fleet size whose snapshots fall behind."""
    return next((s for s in steps if not kept_up(s)), None)


def knee_text(steps: list[Step]) -> str:
    behind = knee(steps)
    if behind is None:
        return (f"lag did not grow up to {steps[-1].targets} targets "
                f"({steps[-1].asked:.1f} snapshots/s asked)")
    return (f"lag starts to grow at **{behind.targets} targets** ({behind.asked:.1f} "
            f"snapshots/s asked, {behind.sustained:.2f} stored, lag p95 {behind.lag_p95:.1f} s)")


def report(steps: list[Step], load_before: float, elapsed: float) -> str:
    """The fleet section: the measured table, the two modes compared, then the extrapolation
    the default mode supports."""
    rows = [
        f"| {s.targets} | {s.mode} | {s.asked:.1f} | {s.sustained:.2f} "
        f"({s.sustained / s.asked:.2f} x) | {s.lag_p50:.2f} / {s.lag_p95:.2f} | "
        f"{s.stored_rows:.0f} | {s.bytes_per_snapshot / 1024:.1f} | {s.store_cpu_ms:.1f} | "
        f"{s.targets_cpu_ms:.1f} | {s.worker_cpu_ms:.1f} | {s.load:.1f} |" for s in steps]
    by_mode = {m: [s for s in steps if s.mode == m] for m in MODES}
    base, kept = by_mode["per job"], by_mode["kept"]
    # Per snapshot costs compared where both modes kept up: behind, snapshots come later
    # (more rows moved between two) and every process waits for the cores.
    pairs = [(b, k) for b, k in zip(base, kept, strict=True) if kept_up(b) and kept_up(k)]
    if pairs:
        ratios = [k.worker_cpu_ms / b.worker_cpu_ms for b, k in pairs]
        compare = (
            f"Workers' CPU per snapshot where both kept up "
            f"({', '.join(str(b.targets) for b, _ in pairs)} targets): "
            + ", ".join(f"{b.worker_cpu_ms:.0f} → {k.worker_cpu_ms:.0f} ms" for b, k in pairs)
            + f" (kept / per job: median {statistics.median(ratios):.2f} x); the targets' "
            f"server (with the workload's own statements): "
            + ", ".join(f"{b.targets_cpu_ms:.0f} → {k.targets_cpu_ms:.0f} ms" for b, k in pairs)
            + "; the store: "
            + ", ".join(f"{b.store_cpu_ms:.0f} → {k.store_cpu_ms:.0f} ms" for b, k in pairs)
            + ".")
    else:
        compare = "No fleet size kept up in both modes: no per-snapshot comparison."
    best = max(kept, key=lambda s: s.sustained)
    # Per snapshot costs at STATEMENTS statements; a 5,000-statement target costs about ten
    # times as much where the work is per statement (the fetch, the comparison), and the
    # store side per stored row (about ten times as many rows move too).
    scale = 5000 / STATEMENTS
    basis = [s for s in kept if kept_up(s)] or kept
    worker_ms = statistics.median(s.worker_cpu_ms for s in basis)
    store_ms = statistics.median(s.store_cpu_ms for s in basis)
    per_snapshot = statistics.median(s.bytes_per_snapshot for s in basis)
    day_mb = per_snapshot * scale * 288 / 1024**2
    need = 200 / 300.0  # snapshots/s: 200 targets every 5 minutes
    worker_cores = need * worker_ms * scale / 1000
    store_cores = need * store_ms * scale / 1000
    return "\n".join([
        "## Fleet: one store, two analyzer workers",
        "",
        f"Targets: databases of one PostgreSQL 18 server, {STATEMENTS} distinct statements "
        f"each, a tenth of them run every interval by a workload thread; store: a second "
        f"PostgreSQL 18 server; two `pgarchitect analyzer` processes (procrastinate workers, "
        f"default concurrency 4 each); snapshot interval compressed to {INTERVAL:g} s "
        f"(production default 5 minutes). Each fleet size twice, one right after the other: "
        "*per job*, a store and a target session opened for every snapshot job "
        "(`analyzer.connection_idle_timeout: 0`, as before sessions were kept), then *kept*, "
        "the sessions kept between jobs (`connection_idle_timeout: 10m`). Every run over a "
        "new store, so each "
        "starts from the same empty history (every job's quick check reads the target's "
        "stored snapshots: its cost grows with them). Per run: "
        f"{WARMUP:g} s warm-up, then a {WINDOW:g} s window. *lag*: how long after its "
        "scheduled time a snapshot job started. CPU: the store server's processes, the "
        "targets' server's processes (which also run the workload) and the two workers' "
        f"processes, per stored snapshot. **The machine is shared** (2 cores, other work may "
        f"run beside the benchmark): load average {load_before:.1f} at the start, the last "
        "column is the load at the end of each window; the targets' server, the workload, "
        "the store and both workers all run on the same two cores, so the ceiling below is "
        f"this machine's, not the design's. Whole run: {elapsed:.0f} s.",
        "",
        "| targets | sessions | snapshots/s asked | sustained snapshots/s | lag p50 / p95 s | "
        "rows stored per snapshot | store growth KiB per snapshot | store CPU ms per "
        "snapshot | targets' server CPU ms per snapshot | workers' CPU ms per snapshot | "
        "load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Sessions per job: {knee_text(base)}. Sessions kept: {knee_text(kept)}; the most "
        f"sustained: {best.sustained:.1f} snapshots/s at {best.targets} targets. {compare}",
        "",
        f"Extrapolation to 200 targets x 5,000 statements at 5-minute snapshots: "
        f"{need:.2f} snapshots/s. Per-snapshot costs of the kept sessions from the sizes that "
        f"kept up ({', '.join(str(s.targets) for s in basis)} targets). Scaling the CPU "
        f"linearly with the statement count (x{scale:.0f}): the workers need about "
        f"{worker_cores:.2f} cores and the store about {store_cores:.2f} cores on average, "
        f"and the store grows about {day_mb:.0f} MB per target-day at this workload's share "
        f"of moving statements (the store benchmark: 32.7 MB at 500 of 5,000 moving), "
        f"{200 * day_mb / 1024:.1f} GB a day for the fleet. Most of a worker's CPU here is "
        "the quick regression check, which grows with statements too: with less history "
        "than the configured baseline + current windows (8 days by default; always so at "
        f"this benchmark's {INTERVAL:g} s interval) it reads up to 50 of the target's "
        "stored snapshots per job (the change-point search), rolled forward from the states "
        "the process kept (only the snapshots new since its last job are read from the "
        "store), so a young target with a long history of 5-minute snapshots still costs "
        "more than this scaling says (its search spreads over more snapshots); with 8 "
        "days of history it reads only the windows' ends (and the snapshots around "
        "resets). Beyond what one store holds "
        "(docs/scaling.md): more analyzer replicas first (any replica runs any target's "
        "job), then targets split over several stores.",
    ])


if __name__ == "__main__":
    main()
