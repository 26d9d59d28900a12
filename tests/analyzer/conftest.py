"""Fixtures of the analyzer tests: a migrated store and a target with the planted tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer import planted
from tests.conftest import drop_database, new_database


@pytest.fixture
def store(store_dsn: str) -> str:
    """A migrated, empty store (PostgreSQL 18 with pgvector)."""
    migrate(Dsn(store_dsn))
    return store_dsn


@pytest.fixture
def app(pg_server: PgServer) -> Iterator[str]:
    """A target database with pg_stat_statements and the two 200,000-row tables."""
    dsn = new_database(pg_server, "app", extensions=("pg_stat_statements",))
    planted.create(dsn)
    yield dsn
    drop_database(pg_server, dsn)
