"""A real outage: the server stops and comes back on the same port; the exporter carries on."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from pgarchitect.demo.embedded import embedded_postgres, free_port
from tests.conftest import PG_VERSIONS
from tests.exporter.conftest import running_exporter, settings_for


@pytest.mark.parametrize("version", PG_VERSIONS, ids=lambda v: f"pg{v}")
async def test_outage_and_recovery(version: int, data_dir: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    tmp_path = data_dir
    port = str(free_port())
    with embedded_postgres(version, directory=tmp_path, settings={"port": port}) as server:
        dsn = server.create_database("app", extensions=("pg_stat_statements",))
        server.execute("SELECT 1", "app")
    settings = settings_for({"app": dsn})
    async with running_exporter(settings) as exp:
        # Down from the start: the exporter runs anyway and says so.
        got = await exp.samples()
        assert got.value("pg_up", target="app") == 0
        assert (await exp.get("/readyz"))[0] == 503
        with embedded_postgres(version, directory=tmp_path, settings={"port": port}):
            got = await exp.samples()
            assert got.value("pg_up", target="app") == 1
            assert got.get("pg_stat_statements_calls_total")
            assert (await exp.get("/readyz"))[0] == 200
        # Stopped under a running exporter holding pooled connections.
        caplog.clear()
        caplog.set_level(logging.INFO, logger="pgarchitect.exporter")
        started = time.monotonic()
        got = await exp.samples()
        elapsed = time.monotonic() - started
        assert got.value("pg_up", target="app") == 0
        for lab, value in got.get("pg_exporter_collector_up", target="app"):
            assert value == 0, lab
        assert got.value("pg_exporter_collector_errors_total", collector="statements",
                         reason="connect") >= 2
        assert not got.get("pg_stat_statements_calls_total")
        # A refused connection is reported at once, not after connect_timeout.
        print(f"answer while down: {elapsed * 1000:.0f} ms")
        # One line says the target is down; no collector logs its own failure.
        lines = [r.getMessage() for r in caplog.records
                 if r.name.startswith("pgarchitect.exporter.scrape")]
        assert len(lines) == 1 and "target.down" in lines[0] and "reason=connect" in lines[0], \
            lines
        with embedded_postgres(version, directory=tmp_path, settings={"port": port}):
            got = await exp.samples()
            assert got.value("pg_up", target="app") == 1
            assert got.value("pg_exporter_collector_up", collector="statements") == 1
            assert got.get("pg_stat_statements_calls_total")
