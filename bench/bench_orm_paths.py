"""ORM paths on loopback: read the latest 1,000 logs of a user and batch-insert 1,000 logs
through each path of the reference app, against a bare asyncpg fetch / COPY measured in the
same run; and the SDK's cost per observation. Writes the `orm-paths` section of
docs/benchmarks.md. Bars: thin read p95 < 5 ms, thin insert p95 < 20 ms, SDK < 5 us.

Fairness: inputs (user ids, batches) are made before the clock starts; the cases run in a
new random order every round, so drift and another case's garbage hit every case alike;
``gc.collect()`` runs (untimed) before each timed call, so a case pays for the collections
its own allocations trigger and not for those of the case before it; ``gc.freeze()`` after
setup keeps the long-lived setup objects out of those collections. The collections inside
the timed region are counted and reported. Bare baselines: the same SQL and columns (fetch),
the same batches and JSON encoding (COPY), on one held connection with asyncpg's own codecs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from prometheus_client import CollectorRegistry

from bench.report import write_section
from exporter.instrument import OrmMetrics
from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.demo.refapp.app import logs_body
from pgarchitect.demo.refapp.service import (
    INSERT_COLUMNS,
    OPERATIONS,
    PATH_NAMES,
    THIN_LATEST,
    DatabaseService,
    NewLog,
)
from pgarchitect.demo.workload import create_schema

ROWS = 1000
USERS = 60
LOGS = 300_000  # about 5,000 per user: every read returns a full 1,000
RUNS = int(os.environ.get("BENCH_ORM_RUNS", "400"))
WARMUP = 20
OBSERVATIONS = 200_000
BARE_READ, BARE_COPY = "bare asyncpg fetch", "bare asyncpg COPY"

# One timed call: takes its input (made before the clock starts), returns what it read.
Case = Callable[[Any], Awaitable[Any]]


@dataclass
class Timings:
    """Per-case durations (seconds) of the call, of the call plus its JSON body, the client's
    CPU time of the call (not inflated by waiting for a CPU), and GC runs."""

    call: list[float] = field(default_factory=list)
    body: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    collections: int = 0


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def new_logs(rng: random.Random) -> list[NewLog]:
    """A batch of ROWS logs for a user that the reads never touch."""
    now = datetime.now(UTC)
    user = rng.randint(USERS + 1, USERS + 1000)
    return [NewLog(user, rng.choice(("view", "click")), now, {"n": i, "tags": ["a", "b"]})
            for i in range(ROWS)]


def bare_body(rows: list[asyncpg.Record]) -> bytes:
    """What a bare driver user writes for the same JSON: the jsonb text (str) embedded raw."""
    fragment = orjson.Fragment
    return orjson.dumps({"logs": [
        {"id": r[0], "user_id": r[1], "action": r[2], "created_at": r[3],
         "payload": fragment(r[4])}
        for r in rows
    ]})


def _collections() -> int:
    return sum(s["collections"] for s in gc.get_stats())


async def measure(
    cases: dict[str, Case],
    make_input: Callable[[random.Random], Any],
    encode: dict[str, Callable[[Any], bytes]] | None,
    runs: int,
) -> dict[str, Timings]:
    """Runs every case `runs` times after WARMUP rounds, in a new random order each round."""
    rng = random.Random(1)
    out = {name: Timings() for name in cases}
    names = list(cases)
    for i in range(WARMUP + runs):
        rng.shuffle(names)
        for name in names:
            arg = make_input(rng)
            gc.collect()
            before = _collections()
            c0, t0 = time.process_time(), time.perf_counter()
            result = await cases[name](arg)
            t1, c1 = time.perf_counter(), time.process_time()
            if encode is not None:
                encode[name](result)
            t2 = time.perf_counter()
            if i >= WARMUP:
                t = out[name]
                t.call.append(t1 - t0)
                t.body.append(t2 - t0)
                t.cpu.append(c1 - c0)
                t.collections += _collections() - before
    return out


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
    load = [os.getloadavg()[0]]
    try:
        dumps = orjson.dumps
        reads: dict[str, Case] = {BARE_READ: lambda u: conn.fetch(THIN_LATEST, u, ROWS)}
        writes: dict[str, Case] = {BARE_COPY: lambda logs: conn.copy_records_to_table(
            "behavior_logs", columns=list(INSERT_COLUMNS),
            records=[(n.user_id, n.action, n.created_at, dumps(n.payload).decode())
                     for n in logs])}
        bodies: dict[str, Callable[[Any], bytes]] = {BARE_READ: bare_body}
        for p in PATH_NAMES:
            reads[p] = lambda u, p=p: service.latest_logs(u, ROWS, p)
            writes[p] = lambda logs, p=p: service.insert_logs(logs, p)
            bodies[p] = logs_body
        sample = await service.latest_logs(1, ROWS, "thin")
        assert len(sample) == ROWS, "every user needs 1,000 logs"
        gc.freeze()  # setup objects (engine, metadata, pools) are not what we measure
        read_times = await measure(reads, lambda r: r.randint(1, USERS), bodies, RUNS)
        write_times = await measure(writes, new_logs, None, max(20, RUNS // 4))
        load.append(os.getloadavg()[0])
    finally:
        gc.unfreeze()
        await service.close()
        await conn.close()
    return report(read_times, write_times, sdk_overhead(), load)


def _table(times: dict[str, Timings], bare: str, with_body: bool) -> list[str]:
    head = "| path | p50 ms | p95 ms |"
    rule = "|---|---:|---:|"
    if with_body:
        head += " p50 ms with body | p95 ms with body |"
        rule += "---:|---:|"
    lines = [head + " p95 / bare p95 | p95 / orm p95 | client CPU ms p50 | GC runs per call |",
             rule + "---:|---:|---:|---:|"]
    bare95, orm95 = pct(times[bare].call, .95), pct(times["orm"].call, .95)
    for name in (bare, *PATH_NAMES):
        t = times[name]
        p95 = pct(t.call, .95)
        row = f"| {name} | {pct(t.call, .5):.2f} | {p95:.2f} |"
        if with_body:
            row += f" {pct(t.body, .5):.2f} | {pct(t.body, .95):.2f} |"
        lines.append(row + f" {p95 / bare95:.2f} | {p95 / orm95:.2f} | {pct(t.cpu, .5):.2f} | "
                     f"{t.collections / len(t.call):.2f} |")
    return lines


def report(reads: dict[str, Timings], writes: dict[str, Timings], sdk: dict[str, float],
           load: list[float]) -> str:
    lines = [
        "## ORM paths (loopback, PostgreSQL 18)",
        "",
        f"Read the latest {ROWS:,} behavior logs of a user, and batch-insert {ROWS:,} logs, "
        "through each path of the reference app (`pgarchitect/demo/refapp`, `DatabaseService`), "
        f"after {WARMUP} warm-up rounds, the cases in a new random order every round, inputs made "
        "before the clock starts, `gc.collect()` (untimed) before each call and `gc.freeze()` "
        "after setup; GC runs inside the timed calls are counted below. Baselines in the same "
        "run: the bare asyncpg fetch of the same SQL and columns, and the bare asyncpg COPY of "
        "the same batches with the same JSON encoding, on one held connection. \"with body\": "
        "the call plus encoding the endpoint's JSON response body (`logs_body`; the bare fetch "
        "embeds the jsonb text the same way). \"client CPU\": the benchmark process's CPU time "
        "during the call (its own work, whatever the scheduler did). Milliseconds. Load average "
        f"(1 min) of the shared 2-core machine: {load[0]:.1f} before, {load[-1]:.1f} after.",
        "",
        f"### read 1,000 ({len(reads[BARE_READ].call)} runs each)", "",
        *_table(reads, BARE_READ, True), "",
        f"### insert 1,000 ({len(writes[BARE_COPY].call)} runs each)", "",
        *_table(writes, BARE_COPY, False), "",
    ]
    thin_read, thin_write = pct(reads["thin"].call, .95), pct(writes["thin"].call, .95)
    worst_sdk = max(sdk.values())
    lines += [
        "### SDK overhead (per observation, net of an empty loop)", "",
        "| what | µs |", "|---|---:|",
        *[f"| {k} | {v:.2f} |" for k, v in sdk.items()], "",
        "### Bars", "",
        "| bar | measured | bare baseline p95 | met |", "|---|---:|---:|---|",
        f"| thin read p95 < 5 ms | {thin_read:.2f} ms | "
        f"{pct(reads[BARE_READ].call, .95):.2f} ms | {'yes' if thin_read < 5 else 'NO'} |",
        f"| thin insert p95 < 20 ms | {thin_write:.2f} ms | "
        f"{pct(writes[BARE_COPY].call, .95):.2f} ms | {'yes' if thin_write < 20 else 'NO'} |",
        f"| SDK observation < 5 µs | {worst_sdk:.2f} µs | | {'yes' if worst_sdk < 5 else 'NO'} |",
        "",
        *_verdict(reads["thin"], reads[BARE_READ], 5.0, "read"),
        *_verdict(writes["thin"], writes[BARE_COPY], 20.0, "insert"),
    ]
    return "\n".join(lines)


def _verdict(thin: Timings, bare: Timings, bar: float, what: str) -> list[str]:
    """One sentence per bar: what the thin path adds over the bare driver, and who missed."""
    p50, p95 = pct(thin.call, .5) - pct(bare.call, .5), pct(thin.call, .95) - pct(bare.call, .95)
    line = (f"- thin {what}: {p50:+.2f} ms at p50 and {p95:+.2f} ms at p95 over the bare "
            "driver in the same run.")
    bare95 = pct(bare.call, .95)
    if pct(thin.call, .95) >= bar and bare95 >= bar:
        line += (f" The bare driver's own p95 ({bare95:.2f} ms) misses the {bar:g} ms bar on "
                 "this machine during this run: the tail is CPU contention (client, server and "
                 "other work on 2 cores), not the path.")
    elif pct(thin.call, .95) >= bar:
        line += f" The bare driver's p95 ({bare95:.2f} ms) is under the bar: the path misses it."
    return [line]


def main() -> None:
    """Run the benchmark and write its section."""
    with embedded_postgres(18) as server:
        dsn = server.create_database("bench_orm")
        text = asyncio.run(run(dsn))
    print(text)
    print(f"written to {write_section('orm-paths', text)}")


if __name__ == "__main__":
    main()
