"""The replication collector against a real streaming primary/standby pair, on 15 and 18."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from exporter.collectors import NAMES as COLLECTORS
from pgarchitect.demo.embedded import PgServer, embedded_postgres, standby_of
from tests.conftest import PG_VERSIONS
from tests.exporter.conftest import Samples, running_exporter, settings_for
from tests.waiting import eventually, eventually_async

APP = "replica-one"
MON = "mon"


@dataclass(frozen=True)
class Pair:
    """A primary and its streaming standby, each with the `mon` database."""

    primary: PgServer
    standby: PgServer

    def streaming(self) -> bool:
        """True once the primary's walsender for our standby is streaming."""
        rows = self.primary.execute(
            f"SELECT state FROM pg_stat_replication WHERE application_name = '{APP}'")
        return rows == [("streaming",)]


@pytest.fixture(scope="module", params=PG_VERSIONS, ids=lambda v: f"pg{v}")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Primary (wal_level replica) with `mon` + pg_stat_statements, then a standby of it."""
    settings = {"wal_level": "replica", "max_wal_senders": "5"}
    with embedded_postgres(request.param, settings=settings) as primary:
        primary.create_database(MON, extensions=("pg_stat_statements",))
        # Replies every second, so an idle primary forgets the lag (NULL) soon.
        fast = {"wal_receiver_status_interval": "1"}
        with standby_of(primary, application_name=APP, settings=fast) as standby:
            pair = Pair(primary, standby)
            eventually(pair.streaming, f"{APP} streaming")
            yield pair


async def scrape_until(dsn: str, name: str, **labels: str) -> Samples:
    """Scrape `dsn` through a running exporter until `name{labels}` appears."""
    async with running_exporter(settings_for({"t": dsn})) as exp:
        return await eventually_async(exp.samples, f"{name}{labels} on /metrics",
                                      until=lambda got: bool(got.get(name, **labels)),
                                      interval=0.2)


def assert_lag(got: Samples, application_name: str) -> None:
    lag = got.value("pg_replication_lag_seconds", target="t", application_name=application_name)
    assert math.isfinite(lag) and lag >= 0
    assert got.value("pg_exporter_collector_up", collector="replication") == 1


async def test_primary_exports_lag_per_standby(pair: Pair) -> None:
    got = await scrape_until(pair.primary.dsn(MON), "pg_replication_lag_seconds",
                             application_name=APP)
    assert_lag(got, APP)
    assert [lab["application_name"] for lab, _ in got.get("pg_replication_lag_seconds")] == [APP]
    assert got.value("pg_up", target="t") == 1


async def test_standby_exports_its_own_lag_and_every_collector_works(pair: Pair) -> None:
    dsn = pair.standby.dsn(MON)
    # A statement run on the standby itself: pg_stat_statements counts a hot standby's own
    # queries in its own shared memory.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 12345 AS on_the_standby")
    got = await scrape_until(dsn, "pg_replication_lag_seconds", application_name="standby")
    assert_lag(got, "standby")
    assert got.value("pg_up", target="t") == 1
    for name in COLLECTORS:
        assert got.value("pg_exporter_collector_up", collector=name) == 1, name
    assert not [lab for lab, _ in got.get("pg_replication_lag_seconds")
                if lab["application_name"] != "standby"]
    assert got.get("pg_stat_statements_calls_total")


async def test_write_on_primary_reaches_the_standby_and_lag_stays_sane(pair: Pair) -> None:
    pair.primary.execute("CREATE TABLE IF NOT EXISTS probe (n int)", MON)
    pair.primary.execute("INSERT INTO probe SELECT g FROM generate_series(1, 1000) g", MON)
    want = pair.primary.execute("SELECT count(*) FROM probe", MON)

    def arrived() -> bool:
        try:
            return pair.standby.execute("SELECT count(*) FROM probe", MON) == want
        except psycopg.errors.UndefinedTable:
            return False

    eventually(arrived, "the primary's rows on the standby")
    for server, app in ((pair.primary, APP), (pair.standby, "standby")):
        got = await scrape_until(server.dsn(MON), "pg_replication_lag_seconds",
                                 application_name=app)
        assert_lag(got, app)


async def test_idle_caught_up_standby_is_zero_not_missing(pair: Pair) -> None:
    """replay_lag is NULL on a quiet primary once the standby has replayed everything."""
    query = (f"SELECT replay_lag IS NULL AND replay_lsn = sent_lsn FROM pg_stat_replication "
             f"WHERE application_name = '{APP}'")

    def idle() -> bool:
        return pair.primary.execute(query) == [(True,)]

    async def scrape_while_idle() -> Samples | None:
        await eventually_async(idle, "replay_lag NULL on the quiet primary")
        got = await exp.samples()
        return got if idle() else None  # still idle after the scrape: the scrape saw the NULL

    async with running_exporter(settings_for({"t": pair.primary.dsn(MON)})) as exp:
        got = await eventually_async(scrape_while_idle, "a scrape of the quiet primary",
                                     until=lambda got: got is not None)
    assert got is not None
    assert got.value("pg_replication_lag_seconds", target="t", application_name=APP) == 0


@pytest.mark.parametrize("version", PG_VERSIONS, ids=lambda v: f"pg{v}")
async def test_standby_that_lost_its_primary_is_behind(version: int) -> None:
    """Its own primary stopped, a standby reports the age of its last replayed commit."""
    with embedded_postgres(version) as primary, \
            standby_of(primary, application_name="orphan") as standby:
        primary.execute("CREATE TABLE last_word (x int); INSERT INTO last_word VALUES (1)")
        eventually(lambda: _has_row(standby), "the write on the standby")
        os.kill(primary.pid, signal.SIGINT)  # fast shutdown of the server this test started
        eventually(lambda: not _accepts(primary), "the primary to stop")

        def lag(got: Samples) -> float:
            return got.value("pg_replication_lag_seconds", target="t", application_name="standby")

        async with running_exporter(settings_for({"t": standby.dsn()})) as exp:
            got = await eventually_async(exp.samples, "the orphaned standby's lag above 0",
                                         until=lambda got: lag(got) > 0, interval=0.2)
        assert lag(got) > 0
        assert got.value("pg_up", target="t") == 1
        assert got.value("pg_exporter_collector_up", collector="replication") == 1


def _has_row(server: PgServer) -> bool:
    try:
        return server.execute("SELECT x FROM last_word") == [(1,)]
    except psycopg.errors.UndefinedTable:
        return False


def _accepts(server: PgServer) -> bool:
    try:
        server.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True
