"""The checkpointer collector (postgres_exporter's pg_stat_bgwriter_* names) on 15 and 18,
and collectors turned off in config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from exporter.collectors import NAMES
from pgarchitect.demo.embedded import PgServer
from tests.exporter.conftest import Samples, running_exporter, settings_for
from tests.waiting import eventually_async

# What each exported name is on the server, written here independently of the collector:
# pg_stat_bgwriter before 17; from 17 the checkpoint columns are in pg_stat_checkpointer and
# the backends' writes and fsyncs in pg_stat_io.
BEFORE_17 = """
SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time,
       buffers_checkpoint, buffers_clean, maxwritten_clean, buffers_backend,
       buffers_backend_fsync, buffers_alloc, extract(epoch FROM stats_reset)
FROM pg_stat_bgwriter"""
FROM_17 = """
SELECT num_timed, num_requested, write_time, sync_time, buffers_written,
       (SELECT buffers_clean FROM pg_stat_bgwriter),
       (SELECT maxwritten_clean FROM pg_stat_bgwriter),
       (SELECT sum(writes) FROM pg_stat_io
        WHERE object = 'relation' AND backend_type NOT IN ('checkpointer', 'background writer')),
       (SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io
        WHERE object = 'relation' AND backend_type NOT IN ('checkpointer', 'background writer')),
       (SELECT buffers_alloc FROM pg_stat_bgwriter),
       (SELECT extract(epoch FROM stats_reset) FROM pg_stat_bgwriter)
FROM pg_stat_checkpointer"""
NAMES_IN_ORDER = [f"pg_stat_bgwriter_{c}_total" for c in (
    "checkpoints_timed", "checkpoints_req", "checkpoint_write_time", "checkpoint_sync_time",
    "buffers_checkpoint", "buffers_clean", "maxwritten_clean", "buffers_backend",
    "buffers_backend_fsync", "buffers_alloc", "stats_reset")]


def server_values(dsn: str) -> dict[str, float]:
    """The server's figures under their exported names."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])
        row = conn.execute(FROM_17 if version >= 170000 else BEFORE_17).fetchone()
    return {name: float(v) for name, v in zip(NAMES_IN_ORDER, row, strict=True)}


async def test_values_match_the_server_view(pg_server: PgServer) -> None:
    dsn = pg_server.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ckpt_probe (v int)")
        conn.execute("INSERT INTO ckpt_probe SELECT generate_series(1, 1000)")
        conn.execute("CHECKPOINT")
    async with running_exporter(settings_for({"t": dsn})) as exp:
        before = server_values(dsn)
        got = await exp.samples()
        after = server_values(dsn)
        assert got.value("pg_exporter_collector_up", collector="checkpointer") == 1
        for name in NAMES_IN_ORDER:
            # Counters only grow: the scrape's value lies between two reads of the view.
            assert before[name] <= got.value(name, target="t") <= after[name], name
        assert got.value("pg_stat_bgwriter_checkpoints_req_total", target="t") >= 1
        assert got.value("pg_stat_bgwriter_buffers_checkpoint_total", target="t") > 0
        # A requested checkpoint shows up in the next scrapes (the checkpointer reports its
        # statistics once the checkpoint is done).
        requested = got.value("pg_stat_bgwriter_checkpoints_req_total", target="t")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        got = await eventually_async(
            exp.samples, "the requested checkpoint counted",
            until=lambda s: s.value("pg_stat_bgwriter_checkpoints_req_total") > requested)
        assert got.value("pg_stat_bgwriter_checkpoints_req_total") == requested + 1


async def test_disabled_collectors_export_nothing(pg_server: PgServer) -> None:
    settings = settings_for({"t": pg_server.dsn()},
                            disabled_collectors=["checkpointer", "tables"])
    async with running_exporter(settings) as exp:
        got: Samples = await exp.samples()
    assert not [n for n in got.by_name if n.startswith(("pg_stat_bgwriter_",
                                                         "pg_stat_user_tables_"))]
    up = {lab["collector"] for lab, _ in got.get("pg_exporter_collector_up")}
    assert up == set(NAMES) - {"checkpointer", "tables"}
    errors = {lab["collector"] for lab, _ in got.get("pg_exporter_collector_errors_total")}
    assert errors == up
    assert got.value("pg_exporter_collector_up", collector="indexes") == 1
    assert got.get("pg_locks_waiting")


@pytest.mark.parametrize(("name", "problem"), [
    ("nope", "unknown collector 'nope' (known: statements, activity"),
    ("server", "'server' is the probe"),
])
def test_bad_disabled_collector_is_one_line(tmp_path: Path, name: str, problem: str) -> None:
    config = tmp_path / "pgarchitect.yaml"
    config.write_text(f"exporter:\n  disabled_collectors: [{name}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pgarchitect", "exporter", "--config", str(config),
         "--dsn", "postgresql://u@127.0.0.1:1/app"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "config: exporter.disabled_collectors: " in line, line
    assert problem in line, line
