"""Statement text from a target is data: planted texts are refused or explained, never run.

PostgreSQL 15 keeps a utility statement's literals in pg_stat_statements. An ordinary role
that writes `SELECT '…\\'; COMMIT; BEGIN READ WRITE; …; --' INTO TEMP t` under
standard_conforming_strings = off plants a text that reads as several statements in the
analyzer's session (standard strings on). Audits and validation must run none of them, with
an ordinary monitoring role and with a superuser one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from analyzer.audit import run_audit
from analyzer.explain import custom_plan, execute_one, explainable, generic_plan
from analyzer.recommend.model import StatementEvidence
from analyzer.recommend.validate import Validator
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store.connection import connect_store
from pgarchitect.config import AnalyzerSettings, Target, ValidationSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from tests.conftest import drop_database, new_database

SETTINGS = AnalyzerSettings()


@dataclass(frozen=True)
class Planted:
    dsn: str            # the target database, as its superuser
    dbname: str
    mallory: str        # the ordinary role that planted the text
    monitor: str        # an ordinary monitoring role (pg_monitor + SELECT)
    server: PgServer


def _attack(payload: str) -> str:
    """A SELECT INTO whose literal, read with standard strings on, ends and runs `payload`."""
    return f"SELECT 'x\\'; COMMIT; BEGIN READ WRITE; {payload}; COMMIT; --' AS a INTO TEMP planted"


@pytest.fixture
def planted(pg15: PgServer) -> Iterator[Planted]:
    dsn = new_database(pg15, "planted", extensions=("pg_stat_statements",))
    dbname = dsn.rsplit("/", 1)[1]
    mallory, monitor = f"mallory_{dbname}", f"monitor_{dbname}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {mallory} LOGIN".encode())
        conn.execute(f"CREATE ROLE {monitor} LOGIN IN ROLE pg_monitor".encode())
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, x int)")
        conn.execute(f"GRANT SELECT ON items TO {monitor}".encode())
        conn.execute(f"GRANT SELECT ON items TO {mallory}".encode())
        conn.execute("SELECT pg_stat_statements_reset()")
    try:
        yield Planted(dsn, dbname, mallory, monitor, pg15)
    finally:
        drop_database(pg15, dsn)
        with psycopg.connect(pg15.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {mallory}".encode())
            conn.execute(f"DROP ROLE IF EXISTS {monitor}".encode())
            conn.execute("ALTER ROLE postgres RESET ALL")  # in case an attack did succeed


def plant(p: Planted) -> None:
    """Mallory, in her own session with standard strings off, runs the two attacks."""
    texts = [_attack("ALTER ROLE CURRENT_USER SET work_mem = 77"),
             _attack(f"CREATE TABLE pwned_{p.dbname} (x int)")]
    with psycopg.connect(p.server.dsn(p.dbname, user=p.mallory), autocommit=True) as conn:
        conn.execute("SET standard_conforming_strings = off")
        for _ in range(3):
            for text in texts:
                conn.execute(text.encode())
                conn.execute("DROP TABLE planted")


def _planted_texts(p: Planted) -> list[str]:
    with psycopg.connect(p.dsn) as conn:
        rows = conn.execute("SELECT query FROM pg_stat_statements WHERE query LIKE '%BEGIN READ%'"
                            " AND query NOT LIKE '%pg_stat_statements%'").fetchall()
    return [str(r[0]) for r in rows]


def _nothing_ran(p: Planted, role: str) -> None:
    with psycopg.connect(p.dsn) as conn:
        settings = conn.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname = ANY(%s)", ([role, p.mallory],)).fetchall()
        tables = conn.execute("SELECT relname FROM pg_class WHERE relname LIKE 'pwned%%'"
                              ).fetchall()
    assert settings == [], f"a role setting was written: {settings}"
    assert tables == [], f"a table was created: {tables}"


def test_planted_texts_reach_pg_stat_statements_and_are_refused(planted: Planted) -> None:
    plant(planted)
    texts = _planted_texts(planted)
    assert len(texts) == 2  # the attack's precondition: PG15 kept the literals
    for text in texts:
        assert "COMMIT; BEGIN READ WRITE" in text
        assert explainable(text) is None  # several statements with standard strings on
    assert explainable("SELECT x FROM items WHERE id = $1") is not None
    for refused in ("SELECT 1 INTO TEMP t", "COMMIT", "SELECT 1; SELECT 2", "VACUUM items",
                    "EXPLAIN SELECT 1", "PREPARE p AS SELECT 1", "SET work_mem = 1", ""):
        assert explainable(refused) is None, refused


@pytest.mark.parametrize("superuser", [False, True], ids=["monitor", "superuser"])
def test_an_audit_runs_none_of_a_planted_text(planted: Planted, store: str,
                                               superuser: bool) -> None:
    role = "postgres" if superuser else planted.monitor
    dsn = planted.dsn if superuser else planted.server.dsn(planted.dbname, user=role)
    settings = AnalyzerSettings(plan_top_n=1000)
    run_audit(settings, Target("planted", Dsn(dsn)), Dsn(store))
    plant(planted)
    run_audit(settings, Target("planted", Dsn(dsn)), Dsn(store))
    _nothing_ran(planted, role)


@pytest.mark.parametrize("superuser", [False, True], ids=["monitor", "superuser"])
def test_the_executor_and_the_validator_run_none_of_a_planted_text(
        planted: Planted, superuser: bool) -> None:
    role = "postgres" if superuser else planted.monitor
    dsn = planted.dsn if superuser else planted.server.dsn(planted.dbname, user=role)
    plant(planted)
    texts = _planted_texts(planted)
    with connect_target(Dsn(dsn), "target", SETTINGS) as conn:
        version = conn.info.server_version
        for text in texts:
            assert generic_plan(conn, text, 5.0, 1.0) is None
            assert custom_plan(conn, text, [], 5.0, 1.0) is None
            # also the text as the attacker's session read it: one SELECT INTO, refused
            with pytest.raises(psycopg.Error):  # several commands: the extended protocol refuses
                conn.cursor().execute(("EXPLAIN " + text).encode(), binary=True)
        evidence = [StatementEvidence(dbid=0, queryids=(i,), fingerprint=str(i), query=t,
                                      calls=10, total_ms=10.0, mean_ms=1.0, rows=1)
                    for i, t in enumerate(texts)]
        for mode in ("hypopg", "transaction"):
            with Validator(conn, ValidationSettings(mode=mode), version) as v:
                for e in evidence:
                    assert v.cost_before(e) is None
                if superuser and mode == "transaction":
                    v.check([("CREATE INDEX ON items (x)", "items_x_idx")], "public.items",
                            evidence)
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
    _nothing_ran(planted, role)


def test_generic_and_custom_plans_through_the_executor(pg_server: PgServer) -> None:
    dsn = new_database(pg_server, "explain")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, k int)")
            conn.execute("INSERT INTO t SELECT g, g % 2 FROM generate_series(1, 5000) g")
            conn.execute("INSERT INTO t SELECT g, 7 FROM generate_series(5001, 5003) g")
            conn.execute("CREATE INDEX t_k ON t (k)")
            conn.execute("ANALYZE t")
        with connect_target(Dsn(dsn), "target", SETTINGS) as conn:
            query = "SELECT id FROM t WHERE k = $1"
            generic = generic_plan(conn, query, 5.0, 1.0)
            rare = custom_plan(conn, query, ["7"], 5.0, 1.0)
            common = custom_plan(conn, query, [1], 5.0, 1.0)
            assert custom_plan(conn, query, [], 5.0, 1.0) is None  # wrong number of values
            with pytest.raises(psycopg.Error):
                generic_plan(conn, "SELECT * FROM missing WHERE a = $1", 5.0, 1.0)
            assert generic_plan(conn, "VALUES ($1::int)", 5.0, 1.0) is not None
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with psycopg.connect(dsn, autocommit=True) as conn, \
                conn.transaction(force_rollback=True):  # a read-write caller: a savepoint
            with pytest.raises(psycopg.Error):
                generic_plan(conn, "SELECT * FROM missing WHERE a = $1", 5.0, 1.0)
            assert generic_plan(conn, query, 5.0, 1.0) is not None
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (5003,)
            assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
            conn.execute("CREATE TEMP TABLE still_writable (x int)")
        assert generic is not None and rare is not None and common is not None
        assert rare["Plan"]["Plan Rows"] < common["Plan"]["Plan Rows"]
        assert "Index" in rare["Plan"]["Node Type"] or rare["Plan"].get("Plans")
    finally:
        drop_database(pg_server, dsn)


def test_the_marker_hides_nothing_only_our_role_is_left_out(planted: Planted, store: str) -> None:
    marked = "/* pgarchitect */ SELECT count(*) FROM items WHERE x = 3"
    with psycopg.connect(planted.server.dsn(planted.dbname, user=planted.mallory),
                         autocommit=True) as conn:
        for _ in range(5):
            conn.execute(marked)
    monitor = Dsn(planted.server.dsn(planted.dbname, user=planted.monitor))
    with connect_target(monitor, "target", SETTINGS) as tconn, \
            connect_store(Dsn(store)) as sconn:
        take_snapshot(StatementSource(tconn), sconn, "planted", SETTINGS.retention)
        result = take_snapshot(StatementSource(tconn), sconn, "planted", SETTINGS.retention)
    assert result.own_skipped > 0  # the monitor's own reading of the view
    with psycopg.connect(store) as conn:
        users = conn.execute(
            "SELECT DISTINCT s.username, t.own FROM pgarchitect.statement_stat s"
            " JOIN pgarchitect.statement_text t USING (dbid, queryid)"
            " WHERE t.query LIKE '%FROM items WHERE x = $1%'").fetchall()
    assert users == [(planted.mallory, True)]  # a marked text, yet analysed: not our role


def test_the_validations_own_ddl_is_one_command_only(pg_server: PgServer) -> None:
    dsn = new_database(pg_server, "ddl")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int)")
            with conn.transaction(force_rollback=True), pytest.raises(psycopg.Error):
                execute_one(conn, "CREATE INDEX ON t (id); CREATE TABLE pwned (x int)")
            execute_one(conn, "ANALYZE t")
            assert conn.execute("SELECT to_regclass('pwned')").fetchone() == (None,)
    finally:
        drop_database(pg_server, dsn)
