"""The SDK: bucket edges, timer/decorator, bounded labels, and each driver hook on a real server."""

from __future__ import annotations

import asyncio
import bisect
import random
import re
import string
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine

from exporter import instrument
from exporter.instrument import (
    BUCKETS,
    OrmMetrics,
    instrument_asyncpg,
    instrument_psycopg,
    instrument_sqlalchemy,
)
from pgarchitect.config import OrmOperation
from tests.waiting import eventually_async

DOCS = Path(__file__).resolve().parents[2] / "docs"
OPS = (OrmOperation("numbers.find", "from generate_series"), "explicit.op")


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value (0 when absent)."""
    return reg.get_sample_value(name, labels) or 0.0


def buckets(reg: CollectorRegistry, **labels: str) -> list[float]:
    """Cumulative bucket counts of the histogram for `labels`, edge by edge, then +Inf."""
    return [sample(reg, "pg_orm_query_duration_seconds_bucket", **labels, le=str(float(le)))
            for le in BUCKETS] + [
        sample(reg, "pg_orm_query_duration_seconds_bucket", **labels, le="+Inf")]


def expected_buckets(durations: list[float]) -> list[float]:
    """What a correct histogram holds for these durations (le is inclusive)."""
    return [float(sum(1 for d in durations if d <= le)) for le in BUCKETS] + [
        float(len(durations))]


class FakeClock:
    """perf_counter that advances by scripted durations between a start and an end call."""

    def __init__(self, durations: list[float]) -> None:
        self.durations = list(durations)
        self.started = False

    def perf_counter(self) -> float:
        # Start at 0.0 and end at the duration, so end - start is exact in floating point.
        self.started = not self.started
        return 0.0 if self.started else self.durations.pop(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock([])
    monkeypatch.setattr(instrument, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    yield fake


@pytest.mark.parametrize("doc", ["orm-paths.md", "monitoring.md"])
def test_buckets_are_the_documented_edges(doc: str) -> None:
    (row,) = [r for r in (DOCS / doc).read_text().splitlines()
              if r.startswith("| `pg_orm_query_duration_seconds` |")]
    edges = re.search(r"buckets `?([0-9. ]+?)`? \|", row)
    assert edges is not None, row
    assert tuple(float(e) for e in edges.group(1).split()) == BUCKETS
    assert 0.05 in BUCKETS  # the 50 ms SLO is an edge: le="0.05" gives an exact ratio


def test_edges_are_inclusive() -> None:
    reg = CollectorRegistry()
    m = OrmMetrics(reg, ["op"])
    # On an edge counts as inside (le is <=): 0.05 is in the SLO bucket, 0.0500001 is not.
    durations = [0.0005, 0.001, 0.0049, 0.05, 0.0500001, 0.07, 0.3, 9.0, 11.0]
    for d in durations:
        m.observe("orm", "op", "db", d)
    assert buckets(reg, orm_path="orm", operation="op", datname="db") == (
        expected_buckets(durations))
    assert sample(reg, "pg_orm_query_duration_seconds_sum", orm_path="orm", operation="op",
                  datname="db") == pytest.approx(sum(durations))
    assert sample(reg, "pg_orm_queries_total", orm_path="orm", operation="op", datname="db",
                  outcome="ok") == len(durations)


async def test_timer_context_decorator_and_errors(clock: FakeClock) -> None:
    reg = CollectorRegistry()
    m = OrmMetrics(reg, ["work"])
    clock.durations = [0.004, 0.06, 0.2, 0.011, 1.5, 0.003]
    labels = {"orm_path": "p", "operation": "work", "datname": "d"}

    with m.timer("p", "work", "d"):
        pass

    @m.timer("p", "work", "d")
    def sync_work(x: int) -> int:
        return x * 2

    @m.timer("p", "work", "d")
    async def async_work(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert sync_work(2) == 4
    assert await async_work(2) == 3
    with pytest.raises(ZeroDivisionError), m.timer("p", "work", "d"):
        _ = 1 / 0
    with pytest.raises(RuntimeError):
        await m.timer("p", "work", "d")(_failing)()
    with pytest.raises(asyncio.CancelledError), m.timer("p", "work", "d"):
        raise asyncio.CancelledError  # a cancellation is neither ok nor error

    assert buckets(reg, **labels) == expected_buckets([0.004, 0.06, 0.2])
    assert sample(reg, "pg_orm_queries_total", **labels, outcome="ok") == 3
    assert sample(reg, "pg_orm_queries_total", **labels, outcome="error") == 2


async def _failing() -> None:
    raise RuntimeError("boom")


def test_hostile_operation_names_stay_bounded() -> None:
    reg = CollectorRegistry()
    m = OrmMetrics(reg, OPS)
    rng = random.Random(7)
    for _ in range(2000):
        name = "".join(rng.choices(string.printable, k=rng.randint(1, 40)))
        m.observe("orm", name, "db", 0.001)
        m.observe("orm", m.operation_for(f"SELECT {name}"), "db", 0.001)
    m.observe("orm", "explicit.op", "db", 0.001)
    seen = {s.labels["operation"] for fam in reg.collect() for s in fam.samples
            if s.name == "pg_orm_queries_total"}
    assert seen == {"other", "explicit.op"}
    assert sample(reg, "pg_orm_queries_total", orm_path="orm", operation="other", datname="db",
                  outcome="ok") == 4000
    assert len(m._series) <= 2  # hostile names are not cached either


def test_statement_patterns_match_across_drivers_spelling() -> None:
    m = OrmMetrics(CollectorRegistry(),
                   [OrmOperation("logs.find", "from behavior_logs where user_id")])
    for text in (
        "SELECT * FROM behavior_logs WHERE user_id = $1",
        'SELECT "id" FROM "behavior_logs" WHERE "user_id" = %s',
        "SELECT behavior_logs.id \nFROM behavior_logs \nWHERE behavior_logs.user_id = $1::BIGINT",
        "select 1 from public.behavior_logs   where user_id=1",
    ):
        assert m.operation_for(text) == "logs.find", text
    assert m.operation_for("SELECT * FROM behavior_logs WHERE action = $1") == "other"
    with m.operation("anything"):
        assert m.operation_for("SELECT 1") == "anything"  # bounded later, by observe()


async def test_asyncpg_hook(pg_server: Any, target_dsn: str) -> None:
    reg = CollectorRegistry()
    m = OrmMetrics(reg, OPS)
    conn = await asyncpg.connect(target_dsn)
    elapsed: dict[str, list[float]] = {"numbers.find": [], "explicit.op": [], "other": []}

    def capture(record: Any) -> None:  # asyncpg's own timing, to check the buckets against
        if record.exception is None:
            name = instrument.current_operation() or m.matcher.match(record.query)
            elapsed[name].append(record.elapsed)

    try:
        instrument_asyncpg(conn, m, "thin")
        conn.add_query_logger(capture)
        for i in range(7):
            await conn.fetch("SELECT g FROM generate_series(1, $1) g", i + 1)
        with m.operation("explicit.op"):
            await conn.fetchval("SELECT $1::int + 1", 1)
            await conn.execute("SELECT 1")
            await conn.executemany("SELECT $1::int", [(1,), (2,)])
        await conn.fetchval("SELECT 42")
        for _ in range(3):
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.fetchval("SELECT 1 / $1::int", 0)
        db = target_dsn.rsplit("/", 1)[1]

        def seen() -> tuple[int, float]:
            """Statements our logger captured, and statements the hook counted."""
            counted = sum(sample(reg, "pg_orm_queries_total", orm_path="thin", operation=op,
                                 datname=db, outcome=outcome)
                          for op in elapsed for outcome in ("ok", "error"))
            return sum(len(d) for d in elapsed.values()), counted

        # Query loggers are called with loop.call_soon: wait for both to have run.
        await eventually_async(seen, "the query loggers to run",
                               until=lambda got: got[0] >= 11 and got[1] >= 14)
    finally:
        await conn.close()
    for op, durations in elapsed.items():
        labels = {"orm_path": "thin", "operation": op, "datname": db}
        assert buckets(reg, **labels) == expected_buckets(durations), op
    assert [len(elapsed[k]) for k in ("numbers.find", "explicit.op", "other")] == [7, 3, 1]
    assert sample(reg, "pg_orm_queries_total", orm_path="thin", operation="other", datname=db,
                  outcome="error") == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_psycopg_hook(pg_server: Any, target_dsn: str, clock: FakeClock, mode: str) -> None:
    reg = CollectorRegistry()
    m = OrmMetrics(reg, OPS)
    finds = [0.0009, 0.03, 0.051]
    clock.durations = [*finds, 0.07, 0.002]
    q = "SELECT g FROM generate_series(1, %s) g"
    if mode == "sync":
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            instrument_psycopg(conn, m, "analytics")
            for i in range(3):
                conn.execute(q, (i,)).fetchall()
            with m.operation("explicit.op"):
                conn.cursor().executemany("SELECT %s::int", [(1,), (2,)])
            conn.execute(psycopg.sql.SQL("SELECT {}").format(psycopg.sql.Literal(1)))
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / %s::int", (0,))
    else:
        async with await psycopg.AsyncConnection.connect(target_dsn, autocommit=True) as aconn:
            instrument_psycopg(aconn, m, "analytics")
            for i in range(3):
                await (await aconn.execute(q, (i,))).fetchall()
            with m.operation("explicit.op"):
                await aconn.cursor().executemany("SELECT %s::int", [(1,), (2,)])
            await aconn.execute(psycopg.sql.SQL("SELECT {}").format(psycopg.sql.Literal(1)))
            with pytest.raises(psycopg.errors.DivisionByZero):
                await aconn.execute("SELECT 1 / %s::int", (0,))
    db = target_dsn.rsplit("/", 1)[1]
    lab = {"orm_path": "analytics", "datname": db}
    assert buckets(reg, **lab, operation="numbers.find") == expected_buckets(finds)
    assert buckets(reg, **lab, operation="explicit.op") == expected_buckets([0.07])
    assert buckets(reg, **lab, operation="other") == expected_buckets([0.002])
    assert sample(reg, "pg_orm_queries_total", **lab, operation="other", outcome="error") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_sqlalchemy_hook(pg_server: Any, target_dsn: str, clock: FakeClock,
                               mode: str) -> None:
    reg = CollectorRegistry()
    m = OrmMetrics(reg, OPS)
    finds = [0.0012, 0.049, 0.3]
    clock.durations = [*finds, 0.0051]
    q = sa.text("SELECT g FROM generate_series(1, :n) g")
    bad = sa.text("SELECT 1 / :z")
    if mode == "sync":
        engine = sa.create_engine(target_dsn.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 0"))  # first connect: dialect set-up, not timed
                instrument_sqlalchemy(engine, m, "orm")
                for i in range(3):
                    conn.execute(q, {"n": i}).all()
                with m.operation("explicit.op"):
                    conn.execute(sa.text("SELECT 1"))
                with pytest.raises(sa.exc.DBAPIError):
                    conn.execute(bad, {"z": 0})
        finally:
            engine.dispose()
    else:
        aengine = create_async_engine(
            target_dsn.replace("postgresql://", "postgresql+asyncpg://"))
        try:
            async with aengine.connect() as aconn:
                await aconn.execute(sa.text("SELECT 0"))
                instrument_sqlalchemy(aengine, m, "orm")
                for i in range(3):
                    (await aconn.execute(q, {"n": i})).all()
                with m.operation("explicit.op"):
                    await aconn.execute(sa.text("SELECT 1"))
                with pytest.raises(sa.exc.DBAPIError):
                    await aconn.execute(bad, {"z": 0})
        finally:
            await aengine.dispose()
    db = target_dsn.rsplit("/", 1)[1]
    lab = {"orm_path": "orm", "datname": db}
    assert buckets(reg, **lab, operation="numbers.find") == expected_buckets(finds)
    assert buckets(reg, **lab, operation="explicit.op") == expected_buckets([0.0051])
    assert sample(reg, "pg_orm_queries_total", **lab, operation="other", outcome="error") == 1
    assert sample(reg, "pg_orm_queries_total", **lab, operation="other", outcome="ok") == 0


def test_bisect_matches_reference() -> None:
    # The reference used above agrees with an independent placement by bisection.
    durations = [0.0001, 0.05, 0.051, 2.5, 20.0]
    per_bucket = [0] * (len(BUCKETS) + 1)
    for d in durations:
        per_bucket[bisect.bisect_left(BUCKETS, d)] += 1
    cumulative = [float(sum(per_bucket[: i + 1])) for i in range(len(BUCKETS))]
    assert expected_buckets(durations) == [*cumulative, float(len(durations))]
