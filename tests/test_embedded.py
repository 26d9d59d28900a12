"""The embedded server helper starts and stops both PostgreSQL versions, and cleans up."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest

from pgarchitect.demo.embedded import PgServer, embedded_postgres, standby_of
from tests.conftest import PG_VERSIONS
from tests.waiting import eventually


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_settings_and_extensions(pg_server: PgServer) -> None:
    with psycopg.connect(pg_server.dsn()) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        assert preload is not None and "pg_stat_statements" in preload[0]
        for name in ("compute_query_id", "track_io_timing"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row == ("on",)
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) // 10000 == pg_server.version
        ext = conn.execute(
            "SELECT name FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
        ).fetchall()
        assert ext == [("pg_stat_statements",)]
    assert pg_server.host == "127.0.0.1"


def test_pg18_ships_pgvector(pg18: PgServer) -> None:
    rows = pg18.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    assert rows == [(1,)]


def test_pg15_preloads_qualstats_and_has_hypopg(pg15: PgServer) -> None:
    preload = pg15.execute("SHOW shared_preload_libraries")[0][0]
    assert "pg_qualstats" in str(preload)
    rows = pg15.execute(
        "SELECT name FROM pg_available_extensions WHERE name IN ('hypopg', 'pg_qualstats')"
        " ORDER BY 1")
    assert rows == [("hypopg",), ("pg_qualstats",)]


@pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when the tests run as root")
def test_runs_unprivileged_when_root(pg_server: PgServer) -> None:
    assert _uid_of(pg_server.pid) != 0


@pytest.mark.parametrize("version", PG_VERSIONS)
def test_stops_server_and_removes_tempdir_when_body_raises(version: int) -> None:
    seen: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="boom"), embedded_postgres(version) as server:
        seen["server"] = server
        assert server.is_running()
        server.execute("SELECT 1")
        raise RuntimeError("boom")
    server = seen["server"]
    assert isinstance(server, PgServer)
    assert not server.is_running()
    assert not server.directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn(), connect_timeout=2)


@pytest.mark.parametrize("version", PG_VERSIONS)
def test_given_directory_is_kept_and_reused(data_dir: Path, version: int) -> None:
    directory = data_dir / f"pg{version}"
    with embedded_postgres(version, directory) as server:
        server.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        first_port = server.port
    assert (directory / "data" / "PG_VERSION").exists()
    assert not server.is_running()
    with embedded_postgres(version, directory) as again:
        assert again.execute("SELECT x FROM kept") == [(42,)]
        assert again.pid != server.pid or again.port != first_port


def test_two_servers_side_by_side_stop_only_themselves() -> None:
    with embedded_postgres(18) as a:
        with embedded_postgres(18) as b:
            assert a.port != b.port
        assert not b.is_running()
        assert a.is_running()
        assert a.execute("SELECT 1") == [(1,)]


def test_extra_settings_apply(tmp_path: Path) -> None:
    with embedded_postgres(18, settings={"work_mem": "7MB"}) as server:
        assert server.execute("SHOW work_mem") == [("7MB",)]


@pytest.mark.parametrize("version", PG_VERSIONS)
def test_standby_of_streams_from_its_primary_and_stops_first(version: int) -> None:
    with embedded_postgres(version) as primary:
        assert "pg_basebackup" in primary.run_tool("pg_basebackup", "--version")
        primary.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        with standby_of(primary, application_name="s1") as standby:
            assert standby.port != primary.port
            assert standby.execute("SELECT pg_is_in_recovery()") == [(True,)]
            assert standby.execute("SELECT x FROM t") == [(1,)]
            eventually(lambda: primary.execute("SELECT application_name FROM pg_stat_replication"),
                       "the standby in the primary's pg_stat_replication",
                       until=lambda rows: rows == [("s1",)])
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                standby.execute("INSERT INTO t VALUES (2)")
        assert not standby.is_running()
        assert not standby.directory.exists()
        assert primary.is_running()


def test_run_tool_failure_names_the_tool(pg18: PgServer) -> None:
    with pytest.raises(RuntimeError, match="pg_basebackup failed"):
        pg18.run_tool("pg_basebackup", "--no-such-option")


def test_is_running_is_false_once_the_server_exited_even_unreaped() -> None:
    with embedded_postgres(18) as server:
        os.kill(server.pid, signal.SIGINT)  # fast shutdown; the Popen is not waited on yet
        eventually(lambda: not server.is_running(), "the server to stop after SIGINT")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn(), connect_timeout=2)
