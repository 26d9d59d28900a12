"""Audits against real PostgreSQL 15 and 18 targets and a real store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.numeric import Int2, Int4, Int8

from analyzer import service
from analyzer.analysis.windows import WindowRequest
from analyzer.audit import STEPS, AuditFailed, run_audit, window_stats
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store import locks, snapshots
from analyzer.store.connection import connect_store
from pgarchitect.cli import main
from pgarchitect.config import AnalyzerSettings, Settings, StoreSettings, Target, ValidationSettings
from pgarchitect.dsn import Dsn
from tests.analyzer import planted

SETTINGS = AnalyzerSettings()
# Validated on the target itself (rolled back), so the dropped index is proposed back on both
# versions whatever autovacuum did meanwhile (the embedded 18 has no hypopg).
VALIDATED = AnalyzerSettings(validation=ValidationSettings(mode="transaction"))


def normalized(sql: str) -> str:
    """The text pg_stat_statements shows for one of the planted statements."""
    n = iter(range(1, 10))
    return re.sub(r"%s", lambda _: f"${next(n)}", sql)


def snapshot(app: str, store: str) -> int:
    with connect_target(Dsn(app), "target", SETTINGS) as tconn, \
            connect_store(Dsn(store)) as sconn:
        return take_snapshot(StatementSource(tconn), sconn, "app", SETTINGS.retention).snapshot.id


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def rows(store: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(store) as conn:
        return conn.execute(sql.encode(), params).fetchall()


@pytest.fixture
def competitor() -> Iterator[None]:
    """A CPU-bound process competing with the workload for the machine's cores."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def test_planted_regressions_found_and_clustered_by_cause(
    app: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s0 = snapshot(app, store)
    planted.run(app, planted.Phase(int_types=(Int8,)))
    # The weekly audit before the change: it records the plans of the top statements.
    before = run_audit(SETTINGS, Target("app", Dsn(app)), Dsn(store))
    assert before.regressions == () and before.snapshot_id is not None
    s1 = before.snapshot_id
    planted.drop_indexes(app)
    # The ORM now binds its integer parameters as int2, int4 or int8: new queryids.
    planted.run(app, planted.Phase(int_types=(Int2, Int4, Int8), seed=2))
    code, out, err = cli(["audit", "--target", f"app={app}", "--store", store, "--json",
                          "--baseline", f"{s0}:{s1}", "--current", f"{s1}:"], capsys)
    assert code == 0, err
    report = json.loads(out)

    found = {r["query"]: r for r in report["regressions"]}
    assert set(found) == {normalized(sql) for sql in planted.REGRESSING.values()}
    for r in report["regressions"]:
        assert len(r["queryids"]) == 3  # one group across int2/int4/int8 bindings
        assert r["queryid"] in r["queryids"] and isinstance(r["queryid"], str)
        assert r["ratio"] >= 1.5 and r["current_mean_ms"] - r["baseline_mean_ms"] >= 1.0
        assert r["p_value"] <= 0.01 and r["calls"] >= 20
    assert len(report["clusters"]) == 2
    by_table = {tuple(c["tables"]): c for c in report["clusters"]}
    assert set(by_table) == {("public.orders",), ("public.events",)}
    for table, statements in (("public.orders", planted.ORDERS_STATEMENTS),
                              ("public.events", planted.EVENTS_STATEMENTS)):
        cluster = by_table[(table,)]
        members = {r["query"] for r in report["regressions"]
                   if r["cluster_id"] == cluster["cluster_id"]}
        assert members == {normalized(sql) for sql in statements.values()}
        assert f"{len(statements)} statements on `{table}`" in cluster["summary"]
        index = "orders_customer_id_idx" if table == "public.orders" else "events_session_id_idx"
        summary = cluster["summary"]
        assert re.search(r"plans switched from [A-Za-z ,]*(Bitmap Heap|Index) Scan[A-Za-z ,]* to "
                         rf"Seq Scan .*no longer using {index}", summary), summary
        key = "customer_id" if table == "public.orders" else "session_id"
        assert f"no index leads with {table}.{key}" in cluster["summary"]
        assert cluster["cause"]["kind"] == "index_dropped"
        assert cluster["cause"]["object"] == f"public.{index}"
        assert f"({key})" in cluster["cause"]["definition"]
    # No hypopg in this database and no sandbox: `auto` validates nothing. The dropped
    # indexes still come back, from their catalog definitions, carried by the measured
    # history (the regressions their drop caused), with the measured before/after.
    back = {(r["table"], tuple(r["columns"])): r for r in report["recommendations"]
            if r["kind"] == "create_index"}
    assert set(back) == {("public.orders", ("customer_id",)),
                         ("public.events", ("session_id",))}, report["not_proposed"]
    for (table, _), r in back.items():
        index = "orders_customer_id_idx" if table == "public.orders" else "events_session_id_idx"
        assert r["evidence_kind"] == "measured_history" and r["validated_by"] == "none"
        assert r["ddl"] == by_table[(table,)]["cause"]["definition"].replace(
            "CREATE INDEX ", "CREATE INDEX CONCURRENTLY ", 1)
        assert r["confidence"] >= 0.99 and r["benefit_ms_per_day"] > 0
        assert f"Index {index} was dropped" in r["rationale"]
        measured = r["evidence"]["measured"]
        assert measured and all(m["after_mean_ms"] > m["before_mean_ms"] for m in measured)
    assert report["workload"]["ms_per_day_after"] < report["workload"]["ms_per_day_before"]
    assert report["validation"]["method"] == "none"
    assert set(report) >= {"audit_id", "target", "server_version", "started_at", "finished_at",
                           "duration_seconds", "statements_analyzed"}

    stored = rows(store, "SELECT status, regression_count, cluster_count, report IS NOT NULL"
                  " FROM pgarchitect.audit_run WHERE id = %s", int(report["audit_id"]))
    assert int(report["audit_id"]) == before.audit_id + 1
    assert stored == [("succeeded", 5, 2, True)]
    assert rows(store, "SELECT count(*) FROM pgarchitect.regression_cluster")[0][0] == 2


def test_steady_workload_with_cpu_competitor_is_not_a_regression(
    app: str, store: str, competitor: None
) -> None:
    s0 = snapshot(app, store)
    planted.run(app, planted.Phase(int_types=(Int4,)))
    s1 = snapshot(app, store)
    planted.run(app, planted.Phase(int_types=(Int4,), seed=2))
    result = run_audit(SETTINGS, Target("app", Dsn(app)), Dsn(store),
                       WindowRequest(s0, s1, s1, None))
    assert result.statements_analyzed >= len(planted.ALL)
    assert [r.query for r in result.regressions] == []
    assert result.clusters == ()


def test_store_going_away_mid_audit_keeps_the_previous_audit(
    pg18: Any, app: str, store: str
) -> None:
    target = Target("app", Dsn(app))
    s0 = snapshot(app, store)
    planted.run(app, planted.Phase(rounds=25, statements=tuple(planted.ORDERS_STATEMENTS)))
    s1 = snapshot(app, store)
    planted.drop_indexes(app)
    planted.run(app, planted.Phase(rounds=25, statements=tuple(planted.ORDERS_STATEMENTS)))
    # An audit left 'running' by a process that died (its store went away first), and one
    # whose process is alive (it holds its target's lock).
    with psycopg.connect(store, autocommit=True) as other:
        other.execute("INSERT INTO pgarchitect.audit_run (target, status, started_at)"
                      " VALUES ('gone', 'running', now()), ('alive', 'running', now())")
        assert locks.try_lock_target(other, "alive")
        steps: list[str] = []
        first = run_audit(VALIDATED, target, Dsn(store), WindowRequest(s0, s1, s1, None),
                          on_step=steps.append)
        assert rows(store, "SELECT target, status, error FROM pgarchitect.audit_run"
                    " WHERE target IN ('gone', 'alive') ORDER BY target") == [
            ("alive", "running", None),
            ("gone", "failed", "abandoned: the audit process stopped before it finished")]
    # The step list is what an audit goes through, in order.
    assert tuple(steps) == STEPS
    assert len(first.regressions) == 3
    recommendations = "SELECT id, status, times_seen, last_audit_id FROM" \
        " pgarchitect.optimization_log ORDER BY id"
    proposed = rows(store, recommendations)
    assert proposed, "the first audit proposed something for the failed one to merge"

    def store_goes_away(step: str) -> None:
        if step == "store.regressions":
            with psycopg.connect(pg18.dsn(), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = 'pgarchitect-analyzer'",
                    (store.rsplit("/", 1)[1],))

    with pytest.raises(AuditFailed, match="failed"):
        run_audit(VALIDATED, target, Dsn(store), WindowRequest(s0, s1, s1, None),
                  on_step=store_goes_away)
    audits = rows(store, "SELECT id, status, regression_count, error IS NOT NULL"
                  " FROM pgarchitect.audit_run WHERE target = 'app' ORDER BY id")
    assert audits[0] == (first.audit_id, "succeeded", 3, False)
    assert audits[1][1:] == ("failed", None, True)
    per_audit = dict(rows(store, "SELECT audit_id, count(*) FROM pgarchitect.regression"
                          " GROUP BY audit_id"))
    assert per_audit == {first.audit_id: 3}
    # The failed audit's memory writes (merging the repeats) went with its transaction.
    assert rows(store, recommendations) == proposed


def test_snapshot_command_leaves_own_statements_out(
    app: str, store: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    config = tmp_path / "pgarchitect.yaml"
    config.write_text("analyzer:\n  checkpoint_interval: 1h\n")
    planted.run(app, planted.Phase(rounds=2))
    argv = ["snapshot", "--config", str(config), "--target", f"app={app}", "--store", store]
    code, out, err = cli(argv, capsys)
    assert code == 0, err
    assert re.match(r"snapshot \d+ of app: \d+ statements", out)
    # Enough of our own traffic by now (probe, reading, texts) to be in the view.
    code, out, _ = cli(argv, capsys)
    assert code == 0
    assert rows(store, "SELECT count(*) FROM pgarchitect.statement_text WHERE own")[0][0] > 0
    mixed = rows(store, "SELECT t.query FROM pgarchitect.statement_stat s"
                 " JOIN pgarchitect.statement_text t USING (dbid, queryid) WHERE t.own")
    assert mixed == []
    texts = rows(store, "SELECT query FROM pgarchitect.statement_text WHERE NOT own")
    assert not [q for (q,) in texts if "showtext =>" in q or ("pg_stat_statements_info" in q
                and q.startswith("SELECT"))]
    ids = [r[0] for r in rows(store, "SELECT id FROM pgarchitect.snapshot ORDER BY id")]
    assert len(ids) == 2
    # Retention drops whole time partitions: tests/analyzer/test_store.py.


def test_target_without_pg_stat_statements_is_one_line(
    pg_server: Any, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import drop_database, new_database

    bare = new_database(pg_server, "bare")
    try:
        code, _out, err = cli(["snapshot", "--target", bare, "--store", store], capsys)
    finally:
        drop_database(pg_server, bare)
    assert code == 2
    assert err.count("\n") == 1 and "pg_stat_statements is not installed" in err


def test_unmigrated_store_is_one_line(
    app: str, store_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("snapshot", "audit"):
        code, _out, err = cli([command, "--target", app, "--store", store_dsn], capsys)
        assert code == 2
        assert err.count("\n") == 1 and "pgarchitect migrate" in err


def test_reset_and_evicted_entries_are_no_regression(app: str, store: str) -> None:
    s0 = snapshot(app, store)
    planted.run(app, planted.Phase(rounds=30))
    s1 = snapshot(app, store)
    planted.run(app, planted.Phase(rounds=15, seed=2))
    with psycopg.connect(app, autocommit=True) as conn:
        # One entry removed by hand (as an eviction would), then re-added by the workload.
        queryid = conn.execute(
            "SELECT queryid FROM pg_stat_statements WHERE query LIKE 'SELECT id, kind%'"
            " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY calls DESC LIMIT 1").fetchone()
        assert queryid is not None
        conn.execute("SELECT pg_stat_statements_reset(0, 0, %s)", (queryid[0],))
    planted.run(app, planted.Phase(rounds=15, seed=3))
    s2 = snapshot(app, store)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")  # the whole view, by someone else
    planted.run(app, planted.Phase(rounds=15, seed=4))
    result = run_audit(SETTINGS, Target("app", Dsn(app)), Dsn(store),
                       WindowRequest(s0, s1, s1, None))
    assert result.regressions == ()
    assert result.windows["current"]["from_snapshot"] == s1
    assert s2 < result.windows["current"]["to_snapshot"]
    with connect_store(Dsn(store)) as sconn:
        metas = [m for m in snapshots.list_snapshots(sconn, "app") if m.id >= s1]
        window = window_stats(sconn, metas, {})
        texts = snapshots.load_texts(sconn, "app", {(k[0], k[2]) for k in window})
    calls: dict[str, int] = {}
    for key, stat in window.items():
        text = texts[(key[0], key[2])].query
        calls[text] = calls.get(text, 0) + stat.calls
        assert stat.moments.m2 >= 0 and stat.rows >= 0 and stat.shared_blks_hit >= 0
    for name, sql in planted.ALL.items():
        # 30 calls up to s2, 15 after the full reset; the evicted entry lost its first 15.
        expected = 30 if name == "events_by_session" else 45
        assert calls[normalized(sql)] == expected, name


def test_monitoring_role_without_superuser(
    pg_server: Any, app: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A role with pg_read_all_stats and SELECT only: the tool's EXPLAINs stay tracked (it may
    not turn tracking off), and their nested entries must not hide the application's."""
    dbname = app.rsplit("/", 1)[1]
    role = f"monitor_{dbname}"
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE pg_read_all_stats".encode())
        conn.execute(f"GRANT SELECT ON orders, events TO {role}".encode())
    monitor = pg_server.dsn(dbname, user=role)
    try:
        target = f"app={monitor}"
        code, out, err = cli(["snapshot", "--target", target, "--store", store], capsys)
        assert code == 0, err
        s0 = int(out.split()[1])
        planted.run(app, planted.Phase(rounds=30, int_types=(Int4,)))
        code, out, err = cli(["audit", "--target", target, "--store", store, "--json"], capsys)
        assert code == 0, err
        s1 = json.loads(out)["windows"]["current"]["to_snapshot"]
        planted.drop_indexes(app)
        planted.run(app, planted.Phase(rounds=30, int_types=(Int4,), seed=2))
        code, out, err = cli(["audit", "--target", target, "--store", store, "--json",
                              "--baseline", f"{s0}:{s1}", "--current", f"{s1}:"], capsys)
        assert code == 0, err
        report = json.loads(out)
        assert {r["query"] for r in report["regressions"]} == {
            normalized(sql) for sql in planted.REGRESSING.values()}
        for cluster in report["clusters"]:
            assert len(cluster["tables"]) == 1
        assert {c["tables"][0] for c in report["clusters"]} == {"public.orders", "public.events"}
        with psycopg.connect(app) as conn:
            nested = conn.execute(
                "SELECT count(*) FROM pg_stat_statements WHERE NOT toplevel"
                " AND query LIKE '%/* pgarchitect */%' AND dbid = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())").fetchone()
        assert nested is not None and nested[0] > 0  # the case this test is about did occur
    finally:
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}".encode())
            conn.execute(f"DROP ROLE {role}".encode())


def test_service_start_fails_audits_left_running(app: str, store: str) -> None:
    # A CLI audit whose store crashed before it could record its failure left its row.
    with psycopg.connect(store, autocommit=True) as c:
        c.execute("INSERT INTO pgarchitect.audit_run (target, status, started_at)"
                  " VALUES ('crashed', 'running', now())")
    service.check(Settings(targets=(Target("app", Dsn(app)),),
                           store=StoreSettings(Dsn(store))))
    assert rows(store, "SELECT status, error FROM pgarchitect.audit_run"
                " WHERE target = 'crashed'") == [
        ("failed", "abandoned: the audit process stopped before it finished")]
