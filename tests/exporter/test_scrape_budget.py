"""The scrape budget: Prometheus's X-Prometheus-Scrape-Timeout-Seconds minus a margin, so a
hung target (its processes stopped with SIGSTOP) is answered with pg_up 0 before Prometheus
gives up on the scrape."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from exporter.app import SCRAPE_TIMEOUT_HEADER, scrape_budget
from pgarchitect.demo.embedded import PgServer, embedded_postgres
from tests.conftest import PG_VERSIONS
from tests.exporter.conftest import Samples, running_exporter, settings_for
from tests.waiting import eventually_async


def cluster_pids(server: PgServer) -> list[int]:
    """The postmaster and its children (every backend and auxiliary process)."""
    assert server.pid is not None
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == server.pid:
                    children.append(int(entry.name))
    return [server.pid, *children]


@contextlib.contextmanager
def stopped(server: PgServer) -> Iterator[None]:
    """Every process of the cluster stopped (SIGSTOP) for the block, continued after."""
    pids = cluster_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def get_within(url: str, seconds: float, headers: dict[str, str]) -> Samples:
    """/metrics as Prometheus gets it: given up after `seconds`, as its scrape timeout."""
    timeout = aiohttp.ClientTimeout(total=seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            url + "/metrics", headers=headers) as resp:
        assert resp.status == 200
        return Samples.parse(await resp.text())


@pytest.mark.parametrize("version", PG_VERSIONS, ids=lambda v: f"pg{v}")
async def test_hung_target_answers_within_prometheus_timeout(version: int) -> None:
    with embedded_postgres(version) as server:
        # A configured budget far longer than Prometheus waits: the header must win.
        settings = settings_for({"t": server.dsn()}, scrape_timeout="60s")
        async with running_exporter(settings) as exp:
            assert (await exp.samples()).value("pg_up", target="t") == 1
            with stopped(server):
                got = await get_within(exp.url, 4.0, {SCRAPE_TIMEOUT_HEADER: "4"})
            assert got.value("pg_up", target="t") == 0
            assert got.value("pg_exporter_collector_errors_total", collector="server",
                             reason="timeout") == 1
            # Continued: the next rounds reach the server again.
            await eventually_async(exp.samples, "pg_up 1 after SIGCONT",
                                   until=lambda s: s.value("pg_up", target="t") == 1)


async def test_without_the_header_the_configured_timeout_applies() -> None:
    with embedded_postgres(18) as server:
        settings = settings_for({"t": server.dsn()}, scrape_timeout="2s")
        async with running_exporter(settings) as exp:
            assert (await exp.samples()).value("pg_up", target="t") == 1
            with stopped(server):
                got = await get_within(exp.url, 30.0, {})
            assert got.value("pg_up", target="t") == 0


@pytest.mark.parametrize(("header", "configured", "budget"), [
    (None, 10.0, 10.0), ("10", 10.0, 9.5), ("10.0", 30.0, 9.5), ("4", 60.0, 3.5),
    ("0.6", 10.0, 0.3), ("30", 10.0, 10.0), ("x", 10.0, 10.0), ("-1", 10.0, 10.0),
    ("nan", 10.0, 10.0), ("0", 10.0, 10.0),
])
def test_scrape_budget(header: str | None, configured: float, budget: float) -> None:
    assert scrape_budget(header, configured) == budget
