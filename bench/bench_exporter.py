"""Exporter scrape cost vs the bare pg_stat_statements fetch vs Debian's postgres_exporter.

With 1,000 / 5,000 / 20,000 distinct statements in pg_stat_statements (PostgreSQL 18, embedded):
- bare: the exporter's own statements query (`SELECT <the collector's columns> FROM
  pg_stat_statements(false)`) over one asyncpg connection with the exporter's session
  settings (all rows fetched);
- pgarchitect: `GET /metrics` of `pgarchitect exporter` (a subprocess, min_refresh_interval 0),
  with the postgres_exporter compatibility set on (the default) and, in a second process, off;
- postgres_exporter: `GET /metrics` of /usr/bin/prometheus-postgres-exporter with the same
  statistics as a queries.yaml query (it exports every statement; it has no top-N).
The three cases interleaved run by run; medians, ratios per run; peak RSS (VmHWM) of both
exporters; temp blocks written by the exporters' statements; then 50 concurrent scrapes
against the default refresh interval. Figures go to docs/benchmarks.md (section "exporter").
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import psycopg

from bench.report import write_section
from exporter.collectors import activity, checkpointer, database, locks, replication, server
from exporter.collectors.statements.sql import function, select_statements
from exporter.db import session_settings
from pgarchitect.config import ExporterSettings
from pgarchitect.demo.embedded import PgServer, embedded_postgres, free_port

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1000, 5000, 20000)
# Fewer on a busy machine: BENCH_EXPORTER_RUNS=15 python -m bench exporter
RUNS = int(os.environ.get("BENCH_EXPORTER_RUNS", "31"))
POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
WARMUP = ExporterSettings().statements_keep_scrapes + 1
BUSY_RUNS = max(RUNS // 2, 5)

QUERIES_YAML = """
pg_stat_statements:
  query: |
    SELECT d.datname, r.rolname AS "user", s.queryid::text AS queryid,
           sum(s.calls) AS calls, sum(s.total_exec_time) / 1000 AS seconds, sum(s.rows) AS rows,
           sum(s.shared_blk_read_time + s.local_blk_read_time) / 1000 AS block_read_seconds,
           sum(s.shared_blk_write_time + s.local_blk_write_time) / 1000 AS block_write_seconds,
           sum(s.total_plan_time) / 1000 AS plan_seconds,
           sum(s.shared_blks_hit) AS shared_blocks_hit,
           sum(s.shared_blks_read) AS shared_blocks_read,
           sum(s.shared_blks_dirtied) AS shared_blocks_dirtied,
           sum(s.shared_blks_written) AS shared_blocks_written,
           sum(s.temp_blks_written) AS temp_blocks_written, sum(s.wal_bytes) AS wal_bytes
    FROM pg_stat_statements(false) s
    JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid
    WHERE s.queryid IS NOT NULL
    GROUP BY d.datname, r.rolname, s.queryid
  metrics:
    - datname: {usage: LABEL, description: database}
    - user: {usage: LABEL, description: role}
    - queryid: {usage: LABEL, description: queryid}
""" + "".join(
    f"    - {c}: {{usage: COUNTER, description: {c}}}\n" for c in (
        "calls", "seconds", "rows", "block_read_seconds", "block_write_seconds", "plan_seconds",
        "shared_blocks_hit", "shared_blocks_read", "shared_blocks_dirtied",
        "shared_blocks_written", "temp_blocks_written", "wal_bytes"))


def statement(i: int) -> str:
    """The i-th of many structurally distinct statements (as in tests/exporter)."""
    terms, columns = divmod(i, 100)
    return "SELECT " + "+".join(["1"] * (terms + 1)) + ", 1" * columns


def fill(dsn: str, start: int, stop: int) -> None:
    """Run statements start..stop-1 once each."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.pipeline():
        for i in range(start, stop):
            conn.execute(statement(i).encode())


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class HttpExporter:
    """A running exporter process and a keep-alive HTTP connection to it."""

    def __init__(self, cmd: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"{cmd[0]} did not start: {err[-500:]}") from None
                time.sleep(0.2)

    def get(self) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            return resp.read()
        finally:
            conn.close()

    def timed(self) -> tuple[float, bytes]:
        started = time.perf_counter()
        body = self.get()
        return time.perf_counter() - started, body

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


STATEMENTS_DURATION = re.compile(
    rb'^pg_exporter_scrape_duration_seconds\{collector="statements",target="bench"\} (\S+)$', re.M)


@dataclass
class Timings:
    """Per-run times (seconds) of the three cases, measured interleaved."""

    bare: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)  # ours without the compatibility set
    theirs: list[float] = field(default_factory=list)
    collector: list[float] = field(default_factory=list)  # our statements collector, in-process
    floor: list[float] = field(default_factory=list)  # see FLOOR
    lines: tuple[int, int] = (0, 0)
    first: float = math.nan  # our first scrape after the view grew


FLOOR = """The floor of any exporter that reads the view at every scrape, on this stack and
machine: the server's pass over the view with no row sent back (`SELECT count(*)`),
concurrently with the statements of the collectors that change at every scrape (the probe,
activity, database, locks, replication, checkpointer) each on a connection of its own as the
exporter runs them, with no Python work on what they return; then GET /metrics of an aiohttp
server answering a copy of the exporter's last body (`bench.static_metrics`). Summed per run."""


def floor_note(ratio: float, bare: float) -> str:
    """What the floor (`ratio` x the bare fetch of `bare` seconds) leaves under the bar."""
    if ratio >= 1.5:
        return (f"The floor (below the table) is {ratio:.2f} x the bare fetch there, above the "
                "bar by itself: no exporter that reads the view at every scrape meets it on "
                "this stack and machine.")
    return (f"The floor (below the table) is {ratio:.2f} x the bare fetch there: it leaves "
            f"{(1.5 - ratio) * bare * 1000:.1f} ms for the statement rows (their transfer, "
            "the top lists) and writing the exposition.")


def light_statements(version_num: int) -> list[str]:
    """The statements of the collectors read at every scrape (the compatibility set on)."""
    return [server.PROBE_WITHOUT_SETTINGS, activity.ACTIVITY, database.DATABASES, locks.LOCKS,
            replication.PRIMARY_AND_SLOTS,
            checkpointer.FROM_17 if version_num >= checkpointer.SPLIT_VERSION
            else checkpointer.BEFORE_17]


def static_server(body: bytes, path: Path) -> HttpExporter:
    """`bench.static_metrics` answering `body` (written to `path`) on a free port."""
    path.write_bytes(body)
    port = free_port()
    return HttpExporter([sys.executable, "-m", "bench.static_metrics", str(path), str(port)],
                        port, {**os.environ, "PYTHONPATH": str(ROOT)})


async def measure(dsn: str, ours: HttpExporter, plain: HttpExporter, theirs: HttpExporter,
                  runs: int, body_file: Path) -> Timings:
    """Interleave, run by run: the bare fetch over one connection with the exporter's session
    settings (the very query the exporter sends), our GET /metrics with and without the
    compatibility set, postgres_exporter's, and the FLOOR."""
    session = session_settings(ExporterSettings())
    conn = await asyncpg.connect(dsn, server_settings=session)
    version_num = int(await conn.fetchval("SHOW server_version_num"))
    lights = light_statements(version_num)
    light_conns = [await asyncpg.connect(dsn, server_settings=session) for _ in lights]
    static: HttpExporter | None = None
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
        query = select_statements(version, "public")
        scan = f"SELECT count(*) FROM {function('public')}(false)"
        await conn.fetch(query)
        out = Timings()
        # The first scrape after the view grew reads every row and the texts of the new
        # top statements; reported apart. Then the steady state, the one Prometheus sees:
        # after the hysteresis window (statements_keep_scrapes), every series has settled.
        out.first = ours.timed()[0]
        for _ in range(WARMUP):
            ours.timed()
            plain.timed()
        theirs.timed()
        static = static_server(ours.timed()[1], body_file)

        async def floor_reads() -> float:
            started = time.perf_counter()
            await asyncio.gather(conn.fetchval(scan),
                                 *(c.fetch(q) for c, q in zip(light_conns, lights, strict=True)))
            return time.perf_counter() - started

        await floor_reads()
        for _ in range(runs):
            started = time.perf_counter()
            await conn.fetch(query)
            out.bare.append(time.perf_counter() - started)
            seconds, body = ours.timed()
            out.ours.append(seconds)
            found = STATEMENTS_DURATION.search(body)
            if found:
                out.collector.append(float(found.group(1)))
            out.plain.append(plain.timed()[0])
            seconds, other = theirs.timed()
            out.theirs.append(seconds)
            out.lines = (body.count(b"\n"), other.count(b"\n"))
            out.floor.append(await floor_reads() + static.timed()[0])
        return out
    finally:
        if static is not None:
            static.stop()
        for c in (conn, *light_conns):
            await c.close()


BUSY_SHARE = 0.1  # executions before each busy run, as a share of the view's statements
ZIPF = 1.1  # the skewed workload's exponent: a few hot statements and a long tail


def busy_batches(size: int, runs: int, skewed: bool) -> list[list[int]]:
    """Per run, the statements to execute once each (with repeats when skewed).

    Uniform: a new random tenth of the statements every run, so every statement stays near
    the top lists' thresholds (the worst case for the candidate read). Skewed: as many
    executions drawn Zipf-like over a fixed ranking of the statements, as real workloads
    run (a few statements most of the time)."""
    rng = random.Random(size)
    count = int(size * BUSY_SHARE)
    if not skewed:
        return [rng.sample(range(size), count) for _ in range(runs)]
    ranking = rng.sample(range(size), size)
    weights = list(itertools.accumulate(1 / (rank + 1) ** ZIPF for rank in range(size)))
    return [rng.choices(ranking, cum_weights=weights, k=count) for _ in range(runs)]


async def measure_busy(dsn: str, work: str, batches: list[list[int]],
                       ours: HttpExporter) -> tuple[list[float], list[float]]:
    """A busy view: before each run one batch of statements runs, so the scrape sees those
    rows moved. Bare fetch and our scrape interleaved: (bare, ours) seconds."""
    conn = await asyncpg.connect(dsn, server_settings=session_settings(ExporterSettings()))
    bare, ours_t = [], []
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
        query = select_statements(version, "public")
        for batch in batches:
            with psycopg.connect(work, autocommit=True) as busy, busy.pipeline():
                for i in batch:
                    busy.execute(statement(i).encode())
            started = time.perf_counter()
            await conn.fetch(query)
            bare.append(time.perf_counter() - started)
            ours_t.append(ours.timed()[0])
    finally:
        await conn.close()
    return bare, ours_t


def busy_cells(bare: list[float], ours: list[float]) -> str:
    """'bare ms | ours ms | ratio' of a busy measurement (ratio: median of per-run ratios)."""
    ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
    return (f"{statistics.median(bare) * 1000:.1f} | {statistics.median(ours) * 1000:.1f} | "
            f"{ratio:.2f}x")


async def concurrent(url: str, seconds: float, width: int = 50) -> list[float]:
    """Bursts of `width` concurrent scrapes for `seconds`; per-request latencies."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        async def one() -> None:
            started = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - started)

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.gather(*(one() for _ in range(width)))
    return latencies


def statements_rounds(server: PgServer, datname: str) -> int:
    """Executions of the exporter's statements query made from database `datname`."""
    rows = server.execute(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d "
        f"ON d.oid = s.dbid WHERE d.datname = '{datname}' "
        "AND s.query LIKE '%AS sumsq_ms2%'", "bench")
    return int(rows[0][0])  # type: ignore[call-overload]


def temp_blocks(server: PgServer, datname: str) -> int:
    """Temp blocks written by every statement run from database `datname`."""
    rows = server.execute(
        "SELECT coalesce(sum(s.temp_blks_written), 0) FROM pg_stat_statements s "
        f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{datname}'", "bench")
    return int(rows[0][0])  # type: ignore[call-overload]


def main() -> None:
    """Run the benchmark and write its section of docs/benchmarks.md."""
    tmp = Path(tempfile.mkdtemp(prefix="pgarchitect-bench"))
    load_before = os.getloadavg()[0]
    rows_md: list[str] = []
    busy_md: list[str] = []
    notes: list[str] = []
    try:
        with embedded_postgres(18, settings={"pg_stat_statements.max": "25000"}) as server:
            dsns = {name: server.create_database(name, extensions=("pg_stat_statements",))
                    for name in ("bench", "pga", "pga0", "bare", "pgexp", "pga2")}
            (tmp / "queries.yaml").write_text(QUERIES_YAML)
            ours_port, theirs_port = free_port(), free_port()
            ours = HttpExporter(
                [str(Path(sys.executable).parent / "pgarchitect"), "exporter", "--dsn",
                 f"bench={dsns['pga']}", "--listen", f"127.0.0.1:{ours_port}",
                 "--min-refresh-interval", "0"], ours_port)
            plain_port = free_port()
            (tmp / "plain.yml").write_text("exporter:\n  postgres_exporter_compat: false\n")
            plain = HttpExporter(
                [str(Path(sys.executable).parent / "pgarchitect"), "exporter", "--config",
                 str(tmp / "plain.yml"), "--dsn", f"bench={dsns['pga0']}", "--listen",
                 f"127.0.0.1:{plain_port}", "--min-refresh-interval", "0"], plain_port)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
                   "DATA_SOURCE_NAME": dsns["pgexp"] + "?sslmode=disable"}
            theirs = HttpExporter(
                [POSTGRES_EXPORTER, f"--extend.query-path={tmp / 'queries.yaml'}",
                 "--disable-default-metrics", "--disable-settings-metrics",
                 f"--web.listen-address=127.0.0.1:{theirs_port}"], theirs_port, env)
            try:
                filled = 0
                for size in SIZES:
                    fill(dsns["bench"], filled, size)
                    filled = size
                    count = int(server.execute(
                        "SELECT count(*) FROM pg_stat_statements", "bench")[0][0])  # type: ignore[call-overload]
                    t = asyncio.run(measure(dsns["bare"], ours, plain, theirs, RUNS,
                                            tmp / "body"))
                    bare, m_ours = statistics.median(t.bare), statistics.median(t.ours)
                    m_theirs = statistics.median(t.theirs)
                    # Ratios per run (same moment, same load), then their median.
                    ratio = statistics.median(o / b for o, b in zip(t.ours, t.bare, strict=True))
                    plain_ratio = statistics.median(
                        o / b for o, b in zip(t.plain, t.bare, strict=True))
                    speedup = statistics.median(
                        th / o for th, o in zip(t.theirs, t.ours, strict=True))
                    collector = statistics.median(t.collector) if t.collector else math.nan
                    floor_ratio = statistics.median(
                        f / b for f, b in zip(t.floor, t.bare, strict=True))
                    rows_md.append(
                        f"| {size:,} ({count:,} in view) | {bare * 1000:.1f} | "
                        f"{m_ours * 1000:.1f} ({t.lines[0]:,} lines) | "
                        f"{collector * 1000:.1f} | "
                        f"{statistics.median(t.plain) * 1000:.1f} | "
                        f"{m_theirs * 1000:.1f} ({t.lines[1]:,} lines) | "
                        f"{ratio:.2f}x | {plain_ratio:.2f}x | "
                        f"{statistics.median(t.floor) * 1000:.1f} | {floor_ratio:.2f}x | "
                        f"{speedup:.1f}x | "
                        f"{vm_hwm_mb(ours.proc.pid):.0f} / {vm_hwm_mb(theirs.proc.pid):.0f} |")
                    print(rows_md[-1], flush=True)
                    cells = [busy_cells(*asyncio.run(measure_busy(
                        dsns["bare"], dsns["bench"], busy_batches(size, BUSY_RUNS, skewed),
                        ours))) for skewed in (False, True)]
                    busy_md.append(f"| {size:,} | {t.first * 1000:.1f} | {cells[0]} | "
                                   f"{cells[1]} |")
                    print(busy_md[-1], flush=True)
                    if ratio > 1.5:
                        notes.append(
                            f"At {size:,} statements the bar (at most 1.5 x bare) is missed: the "
                            f"statements collector takes {collector * 1000:.1f} ms "
                            f"({collector / bare:.2f} x the bare fetch), the rest of the scrape "
                            f"{(m_ours - collector) * 1000:.1f} ms (pool, families and "
                            f"exposition of {t.lines[0]:,} lines, HTTP), "
                            "a cost that does not grow with the view. "
                            + floor_note(floor_ratio, bare))
                temp_ours, temp_bare = temp_blocks(server, "pga"), temp_blocks(server, "bare")
                temp_theirs = temp_blocks(server, "pgexp")
            finally:
                ours.stop()
                plain.stop()
                theirs.stop()
            # 50 concurrent scrapes against the default refresh interval.
            interval, seconds = ExporterSettings().min_refresh_interval, 12.0
            port = free_port()
            loaded = HttpExporter(
                [str(Path(sys.executable).parent / "pgarchitect"), "exporter", "--dsn",
                 f"bench={dsns['pga2']}", "--listen", f"127.0.0.1:{port}"], port)
            try:
                before = statements_rounds(server, "pga2")
                started = time.monotonic()
                lat = asyncio.run(concurrent(f"http://127.0.0.1:{port}/metrics", seconds))
                elapsed = time.monotonic() - started
                rounds = statements_rounds(server, "pga2") - before
                rss_loaded = vm_hwm_mb(loaded.proc.pid)
            finally:
                loaded.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()[0]
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    intervals = elapsed / interval
    markdown = "\n".join([
        "## Exporter scrape",
        "",
        f"PostgreSQL 18 (embedded), pg_stat_statements.max 25,000; {RUNS} runs after the "
        "warm-up described below, the three cases interleaved run by run; times are "
        "medians, ratios are "
        "medians of the per-run ratios. *bare*: the exporter's own statements query (every "
        "row of `pg_stat_statements(false)`, the collector's columns, no texts) over one "
        "asyncpg connection with the same session settings; *pgarchitect*: `GET /metrics` of "
        "`pgarchitect exporter` (defaults, so the postgres_exporter compatibility set on; "
        "min_refresh_interval 0, no gzip asked), *without compat*: the same with "
        "`postgres_exporter_compat: false`, and the "
        "statements collector's own duration as it reports it "
        "(`pg_exporter_scrape_duration_seconds`: the fetch, the top-N selection, names, "
        "texts, info); *postgres_exporter*: Debian's v0.11.1 with the same statistics as a "
        "`queries.yaml` query (it exports every statement). Load average (1 min) of the "
        f"machine: {load_before:.2f} at the start, {load_after:.2f} at the end.",
        "",
        "| distinct statements | bare fetch ms | pgarchitect ms | of which statements "
        "collector ms | pgarchitect without compat ms | postgres_exporter ms "
        "| pgarchitect / bare (bar ≤ 1.5) | without compat / bare | floor ms | floor / bare "
        "| postgres_exporter / pgarchitect (bar ≥ 3) "
        "| peak RSS MB pgarchitect / postgres_exporter (bar < 80) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows_md,
        "",
        " ".join(FLOOR.split()),
        "",
        *[f"{n}\n" for n in notes],
        f"Steady state above: each exporter scraped {WARMUP} times after the view grew "
        "(the hysteresis window, `statements_keep_scrapes`, plus one) before the runs. "
        "Below: the first scrape after the view grew, and a busy view: before each run, "
        f"as many executions as {BUSY_SHARE:.0%} of the statements, either a new random "
        "tenth of them once each (uniform: every statement stays near the top lists' "
        f"thresholds, the candidate read's worst case) or drawn Zipf-like (s = {ZIPF}) "
        "over a fixed ranking (skewed, as real workloads run); "
        f"{BUSY_RUNS} runs each, bare fetch and scrape interleaved.",
        "",
        "| distinct statements | first scrape ms | uniform: bare fetch ms "
        "| uniform: pgarchitect ms | uniform: pgarchitect / bare | skewed: bare fetch ms "
        "| skewed: pgarchitect ms | skewed: pgarchitect / bare |",
        "|---|---|---|---|---|---|---|---|",
        *busy_md,
        "",
        f"Temp blocks written by the exporters' statements over all runs: pgarchitect "
        f"{temp_ours}, bare fetch {temp_bare}, postgres_exporter {temp_theirs} (bar: 0 for "
        "pgarchitect).",
        "",
        f"50 concurrent scrapes, back to back for {elapsed:.0f} s, default "
        f"min_refresh_interval {interval:.0f} s, 20,000 statements: {len(lat):,} responses, "
        f"{rounds} database rounds for {intervals:.1f} intervals (bar: one round per interval), "
        f"p99 response {p99 * 1000:.0f} ms (bar < 250 ms), peak RSS {rss_loaded:.0f} MB.",
    ])
    print(markdown)
    write_section("exporter", markdown)


if __name__ == "__main__":
    main()
