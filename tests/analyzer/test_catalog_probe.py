"""The catalog probe: its digest changes with the structure (DDL, ANALYZE, plan settings) and
not with traffic; a snapshot reads the catalog in full only then, and commits its catalog row
in its own transaction (never a snapshot without it)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from analyzer.snapshots.catalog_probe import probe
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store.connection import connect_store
from analyzer.store.writer import StatementWriter
from pgarchitect.config import AnalyzerSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from tests.conftest import drop_database, new_database

SETTINGS = AnalyzerSettings()


@pytest.fixture
def target(pg_server: PgServer) -> Iterator[str]:
    dsn = new_database(pg_server, "probe", extensions=("pg_stat_statements",))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a int PRIMARY KEY, b int, c text)")
        conn.execute("CREATE INDEX t_b ON t (b)")
        conn.execute("INSERT INTO t SELECT g, g, 'x' FROM generate_series(1, 100) g")
    yield dsn
    drop_database(pg_server, dsn)


def test_the_digest_changes_with_the_structure_and_not_with_traffic(target: str) -> None:
    with psycopg.connect(target, autocommit=True) as conn:
        first = probe(conn)
        assert first is not None
        for traffic in ("INSERT INTO t SELECT g, g, 'y' FROM generate_series(101, 200) g",
                        "UPDATE t SET c = 'z' WHERE a < 50", "SELECT count(*) FROM t",
                        "SELECT * FROM t WHERE b = 3", "DELETE FROM t WHERE a > 190"):
            conn.execute(traffic.encode())
            assert probe(conn) == first, traffic
        conn.execute("CREATE SCHEMA s2")  # an empty schema is no structure of ours
        assert probe(conn) == first
        for change in ("CREATE INDEX t_c ON t (c)", "ALTER INDEX t_c RENAME TO t_c2",
                       "ALTER TABLE t RENAME COLUMN b TO bb", "ANALYZE t",
                       "SET random_page_cost = 1.7", "DROP INDEX t_c2",
                       "CREATE TABLE u (x int)", "ALTER TABLE u RENAME TO u2",
                       "ALTER TABLE u2 SET SCHEMA s2"):
            before = probe(conn)
            conn.execute(change.encode())
            assert probe(conn) != before, change


def test_a_snapshot_reads_the_catalog_only_when_the_probe_changed(target: str,
                                                                   store: str) -> None:
    with connect_target(Dsn(target), "target", SETTINGS) as tconn, \
            connect_store(Dsn(store)) as sconn, \
            psycopg.connect(target, autocommit=True) as app:
        source = StatementSource(tconn)
        writer = StatementWriter()

        def snapshot(fresh: bool = False) -> tuple[bool, bool, set[str]]:
            r = take_snapshot(source, sconn, "probe", SETTINGS.retention, writer, fresh)
            assert set(r.phases) == {"fetch", "compare", "write", "catalog"}
            return r.catalog_read, r.catalog_stored, {i.name for i in r.catalog.indexes}

        assert snapshot() == (True, True, {"t_pkey", "t_b"})
        app.execute("SELECT * FROM t WHERE b = 1")
        assert snapshot() == (False, False, {"t_pkey", "t_b"})  # traffic only
        app.execute("CREATE INDEX t_c ON t (c)")
        assert snapshot() == (True, True, {"t_pkey", "t_b", "t_c"})
        assert snapshot(fresh=True) == (True, False, {"t_pkey", "t_b", "t_c"})
        # Another writer (a replica, whose session plans with other settings) stored a
        # catalog meanwhile: this writer's digest is unchanged, but it reads and stores again.
        with connect_target(Dsn(target), "replica", SETTINGS) as other:
            other.execute("SET random_page_cost = 1.7")
            theirs = take_snapshot(StatementSource(other), sconn, "probe", SETTINGS.retention,
                                   StatementWriter())
            assert theirs.catalog_stored
        assert snapshot() == (True, True, {"t_pkey", "t_b", "t_c"})
        assert snapshot() == (False, False, {"t_pkey", "t_b", "t_c"})
        rows = sconn.execute("SELECT count(*) FROM pgarchitect.catalog_snapshot"
                             " WHERE target = 'probe'").fetchone()
        assert rows is not None and rows[0] == 4


def test_a_snapshot_is_never_committed_without_its_catalog_row(target: str, store: str) -> None:
    # The store refuses the catalog row (a real failure of the real store).
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.refuse_catalog() RETURNS trigger"
                     " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'catalog row refused';"
                     " END$$")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON pgarchitect.catalog_snapshot"
                     " FOR EACH ROW EXECUTE FUNCTION public.refuse_catalog()")
    with connect_target(Dsn(target), "target", SETTINGS) as tconn, \
            connect_store(Dsn(store)) as sconn:
        with pytest.raises(psycopg.errors.RaiseException, match="catalog row refused"):
            take_snapshot(StatementSource(tconn), sconn, "atomic", SETTINGS.retention)
        row = sconn.execute("SELECT count(*) FROM pgarchitect.snapshot"
                            " WHERE target = 'atomic'").fetchone()
        assert row is not None and row[0] == 0
