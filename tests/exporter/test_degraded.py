"""Degraded targets: the statements collector is down with the right reason, the rest works."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from exporter.collectors import NAMES as COLLECTORS
from pgarchitect.demo.embedded import PgServer, embedded_postgres
from tests.conftest import PG_VERSIONS, drop_database, new_database
from tests.exporter.conftest import running_exporter, settings_for


async def assert_statements_down(dsn: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    """Two scrapes: statements up 0 with `reason` counted twice, logged once, others up."""
    caplog.set_level(logging.INFO, logger="pgarchitect.exporter")
    async with running_exporter(settings_for({"t": dsn})) as exp:
        await exp.samples()
        got = await exp.samples()
    assert got.value("pg_up", target="t") == 1
    assert got.value("pg_exporter_collector_up", collector="statements") == 0
    assert got.value("pg_exporter_collector_errors_total", collector="statements",
                     reason=reason) == 2
    for name in COLLECTORS:
        if name != "statements":
            assert got.value("pg_exporter_collector_up", collector=name) == 1, name
    assert not got.get("pg_stat_statements_calls_total")
    assert got.get("pg_stat_database_xact_commit_total")
    assert got.get("pg_stat_activity_connections")
    lines = [r.getMessage() for r in caplog.records if "collector.failed" in r.getMessage()]
    assert len(lines) == 1 and f"reason={reason}" in lines[0], lines


async def test_extension_not_installed(pg_server: PgServer,
                                       caplog: pytest.LogCaptureFixture) -> None:
    dsn = new_database(pg_server, "noext")
    try:
        await assert_statements_down(dsn, "missing_extension", caplog)
        assert "CREATE EXTENSION pg_stat_statements" in caplog.text
    finally:
        drop_database(pg_server, dsn)


async def test_extension_dropped_under_a_running_exporter(
        target_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    """The read that starts with the last round's probe fails; the fresh probe says why."""
    caplog.set_level(logging.INFO, logger="pgarchitect.exporter")
    settings = settings_for({"t": target_dsn})
    async with running_exporter(settings) as exp:
        assert (await exp.samples()).get("pg_stat_statements_calls_total")
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute("DROP EXTENSION pg_stat_statements")
        got = await exp.samples()
        assert got.value("pg_up", target="t") == 1
        assert got.value("pg_exporter_collector_up", collector="statements") == 0
        assert got.value("pg_exporter_collector_errors_total", collector="statements",
                         reason="missing_extension") == 1
        assert not got.get("pg_stat_statements_calls_total")
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        got = await exp.samples()
        assert got.value("pg_exporter_collector_up", collector="statements") == 1
        assert got.get("pg_stat_statements_calls_total")
    lines = [r.getMessage() for r in caplog.records if "collector.failed" in r.getMessage()]
    assert len(lines) == 1 and "CREATE EXTENSION pg_stat_statements" in lines[0], lines


@pytest.fixture(scope="module", params=PG_VERSIONS, ids=lambda v: f"pg{v}")
def not_preloaded(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """A server started without shared_preload_libraries."""
    with embedded_postgres(request.param, preload=()) as server:
        yield server


async def test_extension_not_preloaded(not_preloaded: PgServer,
                                       caplog: pytest.LogCaptureFixture) -> None:
    dsn = new_database(not_preloaded, "nopre", extensions=("pg_stat_statements",))
    await assert_statements_down(dsn, "not_preloaded", caplog)
    assert "shared_preload_libraries" in caplog.text


async def test_role_without_pg_read_all_stats(target_dsn: str, pg_server: PgServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    datname = target_dsn.rsplit("/", 1)[1]
    role = f"mon_{datname}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        await assert_statements_down(target_dsn.replace("postgres@", f"{role}@"),
                                     "permission", caplog)
        assert "pg_read_all_stats" in caplog.text
        # With the role granted, the same role reads the view.
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
        async with running_exporter(settings_for(
                {"t": target_dsn.replace("postgres@", f"{role}@")})) as exp:
            got = await exp.samples()
        assert got.value("pg_exporter_collector_up", collector="statements") == 1
        assert got.get("pg_stat_statements_calls_total")
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
