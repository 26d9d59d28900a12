"""ORM paths on loopback: read the latest 1,000 logs of a user and batch-insert 1,000 logs
through each path of the reference app, against a bare asyncpg fetch / COPY measured in the
same run; and the SDK's cost per observation. Writes the `orm-paths` section of
docs/benchmarks.md. Bars (SPEC 9): thin read p95 < 5 ms, thin insert p95 < 20 ms, SDK < 5 us.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from prometheus_client import CollectorRegistry

from bench.report import write_section
from exporter.instrument import OrmMetrics
from exporter.refapp.service import (
    INSERT_COLUMNS,
    OPERATIONS,
    PATH_NAMES,
    THIN_LATEST,
    DatabaseService,
    NewLog,
)
from pgarchitect.embedded import embedded_postgres
from pgarchitect.workload import create_schema

ROWS = 1000
USERS = 60
LOGS = 300_000  # about 5,000 per user: every read returns a full 1,000
RUNS = int(os.environ.get("BENCH_ORM_RUNS", "200"))
WARMUP = 20
OBSERVATIONS = 200_000


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def new_logs(rng: random.Random) -> list[NewLog]:
    now = datetime.now(UTC)
    user = rng.randint(USERS + 1, USERS + 1000)
    return [NewLog(user, rng.choice(("view", "click")), now, {"n": i}) for i in range(ROWS)]


async def measure(
    cases: dict[str, Callable[[random.Random], Awaitable[object]]], runs: int
) -> dict[str, list[float]]:
    """Runs every case `runs` times, interleaved so drift hits every case alike."""
    rng = random.Random(1)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(WARMUP + runs):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            await fn(rng)
            if i >= WARMUP:
                times[name].append(time.perf_counter() - t0)
    return times


def sdk_overhead() -> dict[str, float]:
    """Microseconds per observation, net of an empty loop measured alongside."""
    m = OrmMetrics(CollectorRegistry(), ["op"])
    n = OBSERVATIONS
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    empty = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        m.observe("thin", "op", "app", 0.003)
    observe = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        with m.timer("thin", "op", "app"):
            pass
    timer = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        with m.operation("op"):
            pass
    label = time.perf_counter() - t0
    return {"observe()": (observe - empty) / n * 1e6, "timer() block": (timer - empty) / n * 1e6,
            "operation() block": (label - empty) / n * 1e6}


async def run(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    await create_schema(conn, users=USERS, logs=LOGS)
    service = DatabaseService(dsn, OrmMetrics(CollectorRegistry(), OPERATIONS), pool_size=2)
    await service.start()
    try:
        reads: dict[str, Callable[[random.Random], Awaitable[object]]] = {
            "bare asyncpg fetch": lambda r: conn.fetch(THIN_LATEST, r.randint(1, USERS), ROWS),
        }
        writes: dict[str, Callable[[random.Random], Awaitable[object]]] = {
            "bare asyncpg COPY": lambda r: conn.copy_records_to_table(
                "behavior_logs", columns=list(INSERT_COLUMNS),
                records=[(n.user_id, n.action, n.created_at, f'{{"n": {i}}}')
                         for i, n in enumerate(new_logs(r))]),
        }
        for p in PATH_NAMES:
            reads[p] = lambda r, p=p: service.latest_logs(r.randint(1, USERS), ROWS, p)
            writes[p] = lambda r, p=p: service.insert_logs(new_logs(r), p)
        sample = await service.latest_logs(1, ROWS, "thin")
        assert len(sample) == ROWS, "every user needs 1,000 logs"
        read_times = await measure(reads, RUNS)
        write_times = await measure(writes, max(20, RUNS // 4))
    finally:
        await service.close()
        await conn.close()
    return report(read_times, write_times, sdk_overhead())


def report(reads: dict[str, list[float]], writes: dict[str, list[float]],
           sdk: dict[str, float]) -> str:
    lines = [
        "## ORM paths (loopback, PostgreSQL 18)",
        "",
        f"Read the latest {ROWS:,} behavior logs of a user, and batch-insert {ROWS:,} logs, "
        "through each path of the reference app (`exporter/refapp`), interleaved run by run "
        f"after {WARMUP} warm-up rounds; baseline: the bare asyncpg fetch / COPY on one held "
        "connection in the same run. p50/p95 in milliseconds; ratios are p95 / p95.",
        "",
    ]
    for title, times, bare in (("read 1,000", reads, "bare asyncpg fetch"),
                               ("insert 1,000", writes, "bare asyncpg COPY")):
        lines += [f"### {title} ({len(times[bare])} runs each)", "",
                  "| path | p50 ms | p95 ms | ratio to orm p95 | ratio to bare p95 |",
                  "|---|---:|---:|---:|---:|"]
        orm95, bare95 = pct(times["orm"], .95), pct(times[bare], .95)
        for name, t in times.items():
            p95 = pct(t, .95)
            lines.append(f"| {name} | {pct(t, .5):.2f} | {p95:.2f} | {p95 / orm95:.2f} | "
                         f"{p95 / bare95:.2f} |")
        lines.append("")
    thin_read, thin_write = pct(reads["thin"], .95), pct(writes["thin"], .95)
    worst_sdk = max(sdk.values())
    lines += [
        "### SDK overhead (per observation, net of an empty loop)", "",
        "| what | µs |", "|---|---:|",
        *[f"| {k} | {v:.2f} |" for k, v in sdk.items()], "",
        "### Bars (SPEC 9)", "",
        "| bar | measured | met |", "|---|---:|---|",
        f"| thin read p95 < 5 ms | {thin_read:.2f} ms | {'yes' if thin_read < 5 else 'NO'} |",
        f"| thin insert p95 < 20 ms | {thin_write:.2f} ms | "
        f"{'yes' if thin_write < 20 else 'NO'} |",
        f"| SDK observation < 5 µs | {worst_sdk:.2f} µs | {'yes' if worst_sdk < 5 else 'NO'} |",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write its section."""
    with embedded_postgres(18) as server:
        dsn = server.create_database("bench_orm")
        text = asyncio.run(run(dsn))
    print(text)
    print(f"written to {write_section('orm-paths', text)}")


if __name__ == "__main__":
    main()
