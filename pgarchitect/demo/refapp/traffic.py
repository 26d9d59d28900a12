"""Drive the reference app over HTTP and read per-path latency back from its histograms.

Used by `pgarchitect demo`: the app runs in-process on a free port; the p95 shown is what the
app's own `/metrics` histograms say (interpolated within buckets, like PromQL's
``histogram_quantile``), next to the server-side view of the jsonlog tailer when it is on.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.logtail import LogTailer
from pgarchitect.config import OrmPathRule, OrmPathSettings
from pgarchitect.demo.processes import free_port
from pgarchitect.demo.refapp.app import RefAppOptions, make_app
from pgarchitect.demo.refapp.service import APPLICATION_NAMES, OPERATIONS

HISTOGRAM = "pg_orm_query_duration_seconds"


@dataclass(frozen=True)
class PathLatency:
    """One ORM path's statements, estimated p95 and share within the 50 ms SLO."""

    orm_path: str
    count: int
    p95: float | None
    slo_ratio: float | None


def histogram_quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile from cumulative (le, count) buckets, interpolated linearly like PromQL."""
    if not cumulative or cumulative[-1][1] == 0:
        return None
    rank = q * cumulative[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return lower_le  # PromQL answers the highest finite edge
            return lower_le + (le - lower_le) * (rank - lower_count) / max(count - lower_count, 1)
        lower_le, lower_count = le, count
    return None


def path_latencies(registry: CollectorRegistry, q: float = 0.95) -> list[PathLatency]:
    """Per orm_path (summed over operations and databases): count, q-quantile, SLO ratio."""
    buckets: dict[str, dict[float, float]] = {}
    for family in registry.collect():
        if family.name != HISTOGRAM:
            continue
        for s in family.samples:
            if s.name == HISTOGRAM + "_bucket":
                per_le = buckets.setdefault(s.labels["orm_path"], {})
                le = float(s.labels["le"])
                per_le[le] = per_le.get(le, 0.0) + s.value
    out = []
    for path in sorted(buckets):
        cumulative = sorted(buckets[path].items())
        total = cumulative[-1][1]
        within = buckets[path].get(0.05, 0.0)
        out.append(PathLatency(path, int(total), histogram_quantile(q, cumulative),
                               within / total if total else None))
    return out


async def drive(base_url: str, seconds: float, users: int, concurrency: int = 4,
                orm_share: float = 0.25, seed: int = 1,
                rate: float | None = None) -> Counter[str]:
    """Send a read / aggregate / batch-insert mix for `seconds`; part of it forced through orm.

    With `rate`, at most that many requests a second in all (as users arrive, whatever the
    latency); without it, each worker sends its next request as soon as one is answered.
    """
    done: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    interval = concurrency / rate if rate else 0.0

    async def worker(session: aiohttp.ClientSession, index: int) -> None:
        rng = random.Random(f"{seed}-{index}")
        next_at = time.monotonic() + interval * index / concurrency
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval, time.monotonic() - interval)
            user = rng.randint(1, users)
            force = "?path=orm" if rng.random() < orm_share else ""
            kind = rng.choices(("read", "aggregate", "insert"), (6, 2, 1))[0]
            sep = "&" if force else "?"
            if kind == "read":
                resp = await session.get(f"{base_url}/users/{user}/logs{force}{sep}limit=100")
            elif kind == "aggregate":
                resp = await session.get(f"{base_url}/users/{user}/activity{force}{sep}days=7")
            else:
                body = {"logs": [{"action": rng.choice(("view", "click")), "payload": {"i": i}}
                                 for i in range(50)]}
                resp = await session.post(f"{base_url}/users/{user}/logs{force}", json=body)
            async with resp:
                await resp.read()
                done[f"{kind} {resp.status}"] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, i) for i in range(concurrency)))
    return done


def demo_tailer_settings(jsonlog: Path) -> OrmPathSettings:
    """The tailer configuration matching the reference app's application_names."""
    rules = tuple(OrmPathRule(f"^{app}$", path) for path, app in APPLICATION_NAMES.items())
    return OrmPathSettings(jsonlog=str(jsonlog), rules=rules, operations=OPERATIONS,
                           default_orm_path="")


@dataclass(frozen=True)
class TrafficReport:
    """What the demo step measured."""

    requests: Counter[str]
    app: list[PathLatency]
    server: list[PathLatency]
    url: str


async def run_traffic(dsn: str, seconds: float, users: int,
                      jsonlog: Path | None = None) -> TrafficReport:
    """Start the app in-process on a free port, drive it, and read both views back."""
    registry = CollectorRegistry()
    tailer_registry = CollectorRegistry()
    tailer = LogTailer(demo_tailer_settings(jsonlog), tailer_registry) if jsonlog else None
    if tailer is not None:
        tailer.poll_once()  # start at the end of the log
    runner = web.AppRunner(make_app(RefAppOptions(dsn), registry), access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        requests = await drive(f"http://127.0.0.1:{port}", seconds, users)
    finally:
        await runner.cleanup()
    server: list[PathLatency] = []
    if tailer is not None:
        # The logging collector writes asynchronously: read until two polls find nothing new.
        quiet = 0
        while quiet < 2:
            await asyncio.sleep(0.3)
            quiet = quiet + 1 if await asyncio.to_thread(tailer.poll_once) == 0 else 0
        server = path_latencies(tailer_registry)
    return TrafficReport(requests, path_latencies(registry), server,
                         f"http://127.0.0.1:{port}")

