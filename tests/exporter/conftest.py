"""Exporter fixtures: a running exporter app on a free port, workload helpers, parsing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from exporter.app import SCRAPERS, make_app
from exporter.scrape import TargetScraper
from pgarchitect.config import Settings, load_settings
from pgarchitect.demo.embedded import PgServer
from tests.conftest import drop_database, new_database


def settings_for(targets: dict[str, str], **exporter: Any) -> Settings:
    """Settings with the given targets (name -> DSN) and exporter keys; no env, no file."""
    raw_targets = [{"name": n, "dsn": d} for n, d in targets.items()]
    flags: dict[str, Any] = {"targets": raw_targets,
                             "exporter": {"min_refresh_interval": 0, **exporter}}
    return load_settings(None, flags, {})


@dataclass
class Running:
    """An exporter app served on 127.0.0.1 for one test."""

    url: str
    app: web.Application
    session: aiohttp.ClientSession

    def scraper(self, name: str) -> TargetScraper:
        """The scraper of target `name` (to read its internal counters)."""
        return self.app[SCRAPERS][name]

    async def get(self, path: str = "/metrics", **headers: str) -> tuple[int, str]:
        """Status and body of a GET."""
        async with self.session.get(self.url + path, headers=headers) as resp:
            return resp.status, await resp.text()

    async def samples(self, path: str = "/metrics") -> Samples:
        """The parsed samples of one scrape."""
        status, body = await self.get(path)
        assert status == 200, body
        return Samples.parse(body)


@contextlib.asynccontextmanager
async def running_exporter(settings: Settings) -> AsyncIterator[Running]:
    """Serve make_app(settings) on a free port until the block ends."""
    app = make_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            yield Running(f"http://127.0.0.1:{port}", app, session)
    finally:
        await runner.cleanup()


@dataclass
class Samples:
    """Samples of one exposition: name -> list of (labels, value); families by name."""

    by_name: dict[str, list[tuple[dict[str, str], float]]]
    families: set[str]
    body: str

    @classmethod
    def parse(cls, body: str) -> Samples:
        by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        families: set[str] = set()
        for family in text_string_to_metric_families(body):
            families.add(family.name + ("_total" if family.type == "counter" else ""))
            for s in family.samples:
                by_name.setdefault(s.name, []).append((dict(s.labels), s.value))
        return cls(by_name, families, body)

    def get(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of `name` whose labels include `labels`."""
        return [(lab, v) for lab, v in self.by_name.get(name, [])
                if all(lab.get(k) == v2 for k, v2 in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        """The single sample matching, or an assertion error."""
        found = self.get(name, **labels)
        assert len(found) == 1, (name, labels, found)
        return found[0][1]


def statement(i: int) -> str:
    """The i-th of many structurally distinct statements (distinct queryids, no tables)."""
    terms, columns = divmod(i, 100)
    return "SELECT " + "+".join(["1"] * (terms + 1)) + ", 1" * columns


def run_statements(dsn: str, statements: Sequence[str], times: int = 1) -> None:
    """Run each statement `times` times over one connection (autocommit)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(times):
            for text in statements:
                conn.execute(text.encode())


@dataclass
class Setup:
    """A monitoring database the exporter connects to, and a work database with a role."""

    server: PgServer
    mon: str
    work: str
    datname: str
    role: str

    def work_as_role(self) -> str:
        """DSN of the work database as the workload role."""
        return self.work.replace("postgres@", f"{self.role}@")

    def pgss(self, where: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of pg_stat_statements (read from the postgres database's own view)."""
        with psycopg.connect(self.mon, autocommit=True) as conn:
            return conn.execute(
                "SELECT s.queryid, s.toplevel, s.calls, s.rows, s.query, s.temp_blks_written "
                "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "JOIN pg_roles r ON r.oid = s.userid WHERE " + where, params).fetchall()


@pytest.fixture
def setup(pg_server: PgServer) -> Iterator[Setup]:
    """`mon` (the exporter's database) and `work` (the workload's) on each version."""
    mon = new_database(pg_server, "mon", extensions=("pg_stat_statements",))
    work = new_database(pg_server, "work")
    datname = work.rsplit("/", 1)[1]
    role = f"role_{datname}"
    with psycopg.connect(pg_server.dsn(datname), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield Setup(pg_server, mon, work, datname, role)
    drop_database(pg_server, work)
    drop_database(pg_server, mon)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

