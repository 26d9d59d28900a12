"""Collectors run concurrently, each on a connection of its own: one failing, one slow and one
hung do not hold the others back, and pg_up tells the truth inside the budget. Slowly changing
views are served from a cache, read again on their interval and after a server restart."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from exporter.collectors import activity, database, indexes, tables
from exporter.collectors.base import Collector, Context, Out
from exporter.errors import Reason
from exporter.families import build
from exporter.model import ScrapeResult
from exporter.scrape import TargetScraper
from pgarchitect.config import ExporterSettings, Target
from pgarchitect.demo.embedded import PgServer, embedded_postgres, free_port
from pgarchitect.dsn import Dsn
from tests.conftest import drop_database, new_database
from tests.waiting import eventually_async


def sql_collector(name: str, sql: str) -> Collector[Any]:
    """A collector that runs one statement (its families: none)."""

    async def fetch(conn: asyncpg.Connection, context: Context) -> Any:
        return await conn.fetchval(sql)

    def emit(out: Out, target: str, data: Any) -> None:
        return None

    return Collector(name, {}, fetch, emit)


def table_names(result: ScrapeResult) -> set[str]:
    return {t.relname for t in result.data["tables"]}


async def test_one_failing_one_slow_one_hung_the_others_arrive_inside_the_budget(
        pg18: PgServer) -> None:
    dsn = new_database(pg18, "conc")
    budget = 2.0
    views = (database.COLLECTOR, sql_collector("failing", "SELECT 1/0"),
             sql_collector("slow", "SELECT pg_sleep(0.3) IS NULL"),
             sql_collector("hung", "SELECT pg_sleep(600) IS NULL"), activity.COLLECTOR)
    scraper = TargetScraper(Target("conc", Dsn(dsn)),
                            ExporterSettings(min_refresh_interval=0), views=views)
    try:
        for _ in range(2):  # the first round probes first; the second too (the pool was dropped)
            async with asyncio.timeout(budget + 1.0):  # the answer comes with the budget
                result = await scraper.collect(budget)
            assert result.up  # the target answered its probe: it is up
            assert set(result.data) == {"database", "slow", "activity"}
            assert {n: f.reason for n, f in result.failures.items()} == {
                "failing": Reason.QUERY, "hung": Reason.TIMEOUT}
            assert any(d.datname == dsn.rsplit("/", 1)[1] for d in result.data["database"])
            families = {f.name: f for f in build([result])}
            up = {labels[1]: value for labels, value in
                  families["pg_exporter_collector_up"].samples}
            assert families["pg_up"].samples == [(("conc",), 1.0)]
            assert up == {"server": 1.0, "database": 1.0, "activity": 1.0}  # registry names only
    finally:
        await scraper.close()
        drop_database(pg18, dsn)


async def test_slow_views_are_read_again_on_their_interval(pg18: PgServer) -> None:
    dsn = new_database(pg18, "cache")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE first_t (a int)")
    now = [0.0]
    views = (tables.COLLECTOR, indexes.COLLECTOR, activity.COLLECTOR)
    scraper = TargetScraper(
        Target("cache", Dsn(dsn)),
        ExporterSettings(min_refresh_interval=0, slow_refresh_interval=60.0), views=views,
        clock=lambda: now[0])
    try:
        first = await scraper.collect()
        assert table_names(first) == {"first_t"}
        assert set(first.cached_at) == {"settings", "tables", "indexes"}
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE second_t (a int)")
        now[0] = 59.0
        cached = await scraper.collect()
        assert cached.data["activity"] is not first.data["activity"]  # read every round
        assert cached.data["tables"] is first.data["tables"]  # from the cache
        assert cached.cached_at == first.cached_at
        assert table_names(cached) == {"first_t"}
        ages = {labels[1]: value for labels, value in
                next(f for f in build([cached]) if f.name == "pg_exporter_cache_age_seconds")
                .samples}
        assert set(ages) == {"settings", "tables", "indexes"}
        assert all(age >= 0 for age in ages.values())
        now[0] = 60.0
        fresh = await scraper.collect()
        assert table_names(fresh) == {"first_t", "second_t"}
        for view in ("settings", "tables", "indexes"):
            assert fresh.cached_at[view] > first.cached_at[view]
    finally:
        await scraper.close()
        drop_database(pg18, dsn)


async def test_slow_views_are_read_again_after_a_server_restart(data_dir: Path) -> None:
    port = str(free_port())
    views = (tables.COLLECTOR, activity.COLLECTOR)
    with embedded_postgres(18, directory=data_dir, settings={"port": port}) as server:
        dsn = server.create_database("app")
        server.execute("CREATE TABLE before_restart (a int)", "app")
        # The clock stands still: only the restart can make the cache stale.
        scraper = TargetScraper(Target("app", Dsn(dsn)), ExporterSettings(
            min_refresh_interval=0, slow_refresh_interval=3600.0), views=views,
            clock=lambda: 0.0)
        first = await scraper.collect()
        assert table_names(first) == {"before_restart"}
        server.execute("CREATE TABLE during (a int)", "app")
        assert table_names(await scraper.collect()) == {"before_restart"}
    try:
        with embedded_postgres(18, directory=data_dir, settings={"port": port}):
            after = await eventually_async(scraper.collect, "the target up after its restart",
                                           until=lambda r: r.up)
            assert table_names(after) == {"before_restart", "during"}
            assert after.server is not None and first.server is not None
            assert after.server.started_at > first.server.started_at
            assert after.cached_at["tables"] > first.cached_at["tables"]
    finally:
        await scraper.close()


async def test_work_after_a_round_is_off_the_scrape_path_and_fails_alone(
        pg18: PgServer, caplog: pytest.LogCaptureFixture) -> None:
    dsn = new_database(pg18, "after")
    calls: list[str] = []

    async def failing(conn: asyncpg.Connection, context: Context) -> None:
        calls.append("failing")
        await conn.fetchval("SELECT 1/0")

    async def slow(conn: asyncpg.Connection, context: Context) -> None:
        calls.append("slow")
        await conn.fetchval("SELECT pg_sleep(1) IS NULL")

    views = (dataclasses.replace(sql_collector("a", "SELECT 1"), after=failing),
             dataclasses.replace(sql_collector("b", "SELECT 2"), after=slow))
    scraper = TargetScraper(Target("after", Dsn(dsn)),
                            ExporterSettings(min_refresh_interval=0), views=views)
    try:
        with caplog.at_level(logging.WARNING, logger="pgarchitect.exporter.scrape"):
            first = await scraper.collect()
            assert first.up and set(first.data) == {"a", "b"} and not first.failures
            # The round answered without waiting for the work after it.
            assert scraper._after is not None and not scraper._after.done()
            second = await scraper.collect()  # meanwhile: no second batch of work starts
            assert second.up and not second.failures
            await scraper.settled()
            assert calls == ["failing", "slow"]
            third = await scraper.collect()
            await scraper.settled()
        assert calls == ["failing", "slow"] * 2
        assert third.up and not third.failures  # a failure after the round is not the scrape's
        failed = [r for r in caplog.records if "collector.after_failed" in r.getMessage()]
        assert len(failed) == 1 and "collector=a" in failed[0].getMessage()
    finally:
        await scraper.close()
