"""HTTP behaviour: coalesced scrapes, exposition formats, promtool, docs, multi-target."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest

from exporter.families import SPECS
from tests.exporter.conftest import Setup, run_statements, running_exporter, settings_for
from tests.waiting import eventually_async

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def statements_rounds(setup: Setup) -> int:
    """Executions of the exporter's statements query in its database (ground truth)."""
    mon = setup.mon.rsplit("/", 1)[1]
    rows = setup.pgss("d.datname = %s AND s.query LIKE %s", (mon, "%AS sumsq_ms2%"))
    return sum(int(r[2]) for r in rows)


async def test_concurrent_scrapes_share_one_round(setup: Setup) -> None:
    settings = settings_for({"mon": setup.mon}, min_refresh_interval=2.0)
    async with running_exporter(settings) as exp:
        bodies = await asyncio.gather(*(exp.get() for _ in range(50)))
        assert all(status == 200 for status, _ in bodies)
        assert exp.scraper("mon").rounds == 1
        assert statements_rounds(setup) == 1
        # Within the interval: served from the same round.
        await asyncio.gather(*(exp.get() for _ in range(50)))
        assert exp.scraper("mon").rounds == 1
        # Once the interval has passed, a scrape starts the second round (polled, not slept)...
        await eventually_async(exp.get, "a second round after the interval",
                               until=lambda _: exp.scraper("mon").rounds >= 2, interval=0.2)
        assert exp.scraper("mon").rounds == 2
        # ...which the next scrapes share again.
        await asyncio.gather(*(exp.get() for _ in range(50)))
        assert exp.scraper("mon").rounds == 2
    assert statements_rounds(setup) == 2


async def test_promtool_accepts_metrics(setup: Setup) -> None:
    async with running_exporter(settings_for({"mon": setup.mon, "work": setup.work})) as exp:
        await exp.get()
        status, body = await exp.get()
    assert status == 200
    proc = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=body, text=True,
        capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""


async def test_openmetrics_by_accept(setup: Setup) -> None:
    async with running_exporter(settings_for({"mon": setup.mon})) as exp:
        async with exp.session.get(exp.url + "/metrics", headers={
                "Accept": "application/openmetrics-text; version=1.0.0"}) as resp:
            body = await resp.text()
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        async with exp.session.get(exp.url + "/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert body.rstrip().endswith("# EOF")
    assert "# TYPE pg_stat_statements_calls counter" in body


async def test_every_exposed_metric_is_documented(setup: Setup) -> None:
    run_statements(setup.mon, ["CREATE TABLE t (id int PRIMARY KEY, v int)",
                               "CREATE INDEX t_v_idx ON t (v)",
                               "INSERT INTO t SELECT g, g FROM generate_series(1, 100) g",
                               "SELECT * FROM t WHERE id = 5"])
    # `work` has no pg_stat_statements: it brings pg_exporter_collector_errors_total.
    async with running_exporter(settings_for({"mon": setup.mon, "work": setup.work})) as exp:
        await exp.get()
        got = await exp.samples()
    documented = set(re.findall(r"^\| `([a-z_]+)`", DOC.read_text(), re.M))
    assert got.families - documented == set()
    assert set(SPECS) - documented == set()
    # Every family of the code is exposed by a healthy primary except the optional ones.
    optional = {"pg_replication_lag_seconds", "pg_replication_slots_active"}
    assert set(SPECS) - got.families - optional == set()


async def test_multi_target_and_probe(setup: Setup) -> None:
    settings = settings_for({"mon": setup.mon, "work": setup.work})
    async with running_exporter(settings) as exp:
        both = await exp.samples()
        one = await exp.samples("/probe?target=work")
        assert (await exp.get("/probe?target=nope"))[0] == 404
        assert (await exp.get("/probe"))[0] == 400
        assert (await exp.get("/healthz"))[0] == 200
    assert {lab["target"] for lab, _ in both.get("pg_up")} == {"mon", "work"}
    assert both.value("pg_up", target="work") == 1
    assert {lab["target"] for lab, _ in one.get("pg_exporter_collector_up")} == {"work"}
    # `work` has no pg_stat_statements: only its statements collector is down.
    assert one.value("pg_exporter_collector_up", collector="statements") == 0
    assert both.value("pg_exporter_collector_up", target="mon", collector="statements") == 1


async def test_no_password_anywhere(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Pa55"
    good = setup.mon.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    bad = re.sub(r":\d+/", ":1/", good)  # nothing listens on port 1
    async with running_exporter(settings_for({"good": good, "bad": bad})) as exp:
        _, body = await exp.get()
        _, ready = await exp.get("/readyz")
    assert secret not in body and secret not in ready
    assert secret not in caplog.text
    assert "target.down target=bad" in caplog.text


async def test_gzip_only_when_asked_and_same_bytes(setup: Setup) -> None:
    settings = settings_for({"mon": setup.mon}, min_refresh_interval=60.0)
    async with running_exporter(settings) as exp, aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("Accept-Encoding",)) as raw:
        async with raw.get(exp.url + "/metrics") as resp:
            plain = await resp.read()
            assert "Content-Encoding" not in resp.headers
        bodies = []
        for _ in range(2):  # the second is served from the same round: the same gzip bytes
            async with raw.get(exp.url + "/metrics",
                               headers={"Accept-Encoding": "gzip, deflate"}) as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert resp.headers["Vary"] == "Accept-Encoding"
                bodies.append(await resp.read())
        assert exp.scraper("mon").rounds == 1
    assert bodies[0] == bodies[1]
    assert gzip.decompress(bodies[0]) == plain
    assert b"pg_stat_statements_calls_total{" in plain
