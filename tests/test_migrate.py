"""Store migrations: idempotent, safe concurrently, refuse an edited applied file."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from pgarchitect.cli import main
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.errors import MigrationError
from pgarchitect.migrate import default_directory, discover, migrate
from tests.conftest import drop_database, new_database

EXPECTED_TABLES = {
    "snapshot", "statement_stat", "statement_text", "audit_run", "regression",
    "regression_cluster", "optimization_log", "schema_migrations",
    "statement_plan",  # 0002_analyzer
    "optimization_history",  # 0006_memory
    "catalog_snapshot",  # 0003_catalog
    "regression_check",  # 0005_job_engine
    "time_partition",  # 0004_partitions
    "ask_knowledge", "ask_question", "embedding_space", "embedding_migration",  # 0007_ask
}


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pgarchitect'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_creates_store_schema(store_dsn: str) -> None:
    applied = migrate(Dsn(store_dsn))
    assert applied == [m.name for m in discover(default_directory())]
    assert tables(store_dsn) == EXPECTED_TABLES
    with psycopg.connect(store_dsn) as conn:  # the job engine's schema came with 0005
        assert conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone() == (
            "procrastinate_jobs",)
    with psycopg.connect(store_dsn) as conn:
        idx = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'optimization_log_embedding_idx'"
        ).fetchone()
        assert idx is not None and "USING hnsw" in idx[0]
        typ = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'pgarchitect.optimization_log'::regclass AND attname = 'embedding'"
        ).fetchone()
        assert typ == ("vector(384)",)


def test_migrate_twice_is_a_no_op(store_dsn: str) -> None:
    first = migrate(Dsn(store_dsn))
    assert first
    assert migrate(Dsn(store_dsn)) == []
    with psycopg.connect(store_dsn) as conn:
        count = conn.execute("SELECT count(*) FROM pgarchitect.schema_migrations").fetchone()
    assert count == (len(first),)


def test_two_migrates_at_once(store_dsn: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate(Dsn(store_dsn)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(len(r) for r in results) == [0, len(discover(default_directory()))]
    assert tables(store_dsn) == EXPECTED_TABLES


def test_edited_applied_migration_is_refused(store_dsn: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_directory(), directory)
    migrate(Dsn(store_dsn), directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
    with pytest.raises(MigrationError, match=f"{first.name} was edited after it was applied"):
        migrate(Dsn(store_dsn), directory)


def test_new_migration_is_applied_in_its_own_transaction(store_dsn: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_directory(), directory)
    migrate(Dsn(store_dsn), directory)
    (directory / "9001_good.sql").write_text("CREATE TABLE pgarchitect.extra (x int);")
    (directory / "9002_bad.sql").write_text(
        "CREATE TABLE pgarchitect.half (x int);\nSELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"9002_bad\.sql failed"):
        migrate(Dsn(store_dsn), directory)
    found = tables(store_dsn)
    assert "extra" in found and "half" not in found
    with psycopg.connect(store_dsn) as conn:
        versions = [r[0] for r in conn.execute(
            "SELECT version FROM pgarchitect.schema_migrations ORDER BY 1").fetchall()]
    assert 9001 in versions and 9002 not in versions


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(tmp_path)


def test_store_without_pgvector_gives_a_clear_error(pg15: PgServer) -> None:
    dsn = new_database(pg15, "nostore")
    try:
        with pytest.raises(MigrationError, match=r'extension "vector" is not available.*pgvector'):
            migrate(Dsn(dsn))
        # Nothing half-made: the failed file left no tables behind.
        assert tables(dsn) == {"schema_migrations"}
    finally:
        drop_database(pg15, dsn)


def test_cli_migrate(store_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--store", store_dsn]) == 0
    assert "migrations applied: 0001_store" in capsys.readouterr().out
    assert main(["migrate", "--store", store_dsn]) == 0
    assert "store is up to date" in capsys.readouterr().out


def test_cli_migrate_role_without_privileges(
    pg18: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = new_database(pg18, "locked")
    db = dsn.rsplit("/", 1)[1]
    pg18.execute("DROP ROLE IF EXISTS weakling; CREATE ROLE weakling LOGIN")
    pg18.execute(f'REVOKE CREATE ON DATABASE "{db}" FROM PUBLIC')
    try:
        code = main(["migrate", "--store", pg18.dsn(db, user="weakling")])
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert "permission denied" in err or "must be" in err
    finally:
        drop_database(pg18, dsn)
        pg18.execute("DROP ROLE IF EXISTS weakling")
