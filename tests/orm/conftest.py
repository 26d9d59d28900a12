"""Fixtures for the ORM-path tests: PostgreSQL servers writing jsonlog, a demo-schema database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.demo.workload import create_schema
from pgarchitect.errors import ServerUnavailable
from tests.conftest import PG_VERSIONS, drop_database, new_database

JSONLOG = {
    "logging_collector": "on",
    "log_destination": "jsonlog",
    "log_directory": "log",  # relative to the data directory, which the server's user owns
    "log_min_duration_statement": "0",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
    "lc_messages": "C",
}


@pytest.fixture(scope="session", params=PG_VERSIONS, ids=lambda v: f"pg{v}")
def jsonlog_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """A server per version logging every statement's duration as jsonlog (PG15+)."""
    try:
        with embedded_postgres(request.param, settings=JSONLOG) as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(f"PostgreSQL {request.param} is required: {exc}", pytrace=False)


def log_dir(server: PgServer) -> Path:
    """Where `jsonlog_server` writes its *.json files."""
    return server.datadir / "log"


@pytest.fixture
def jsonlog_db(jsonlog_server: PgServer) -> Iterator[str]:
    """A fresh database on the jsonlog server (its name is the datname label of a test)."""
    dsn = new_database(jsonlog_server, "orm")
    yield dsn
    drop_database(jsonlog_server, dsn)


@pytest.fixture
def demo_db(pg_server: PgServer) -> Iterator[str]:
    """A database with the demo schema (users, behavior_logs) on each version."""
    dsn = new_database(pg_server, "refapp")

    async def fill() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await create_schema(conn, users=20, logs=20_000)
        finally:
            await conn.close()

    asyncio.run(fill())
    yield dsn
    drop_database(pg_server, dsn)
