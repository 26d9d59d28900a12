"""Windows that adapt to short histories, and causes read from catalog snapshots, against
real PostgreSQL 15 and 18 targets and a real store."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from analyzer.audit import run_audit, run_quick_check
from analyzer.report import render
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.dsn import Dsn
from tests.analyzer import planted
from tests.analyzer.test_audit import cli, competitor, normalized, rows, snapshot

SETTINGS = AnalyzerSettings()  # default windows: 7 d baseline + 1 d current
INDEX = {"public.orders": "orders_customer_id_idx", "public.events": "events_session_id_idx"}
COLUMN = {"public.orders": "customer_id", "public.events": "session_id"}
__all__ = ["competitor"]  # the fixture, imported for the test below


def steady_history(app: str, store: str, snapshots: int = 3) -> None:
    """A few minutes of history: `snapshots` snapshots with the same workload between them."""
    snapshot(app, store)
    for seed in range(1, snapshots):
        planted.run(app, planted.Phase(rounds=25, seed=seed))
        snapshot(app, store)


def test_minutes_of_history_find_the_dropped_indexes_and_name_them(
    app: str, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    steady_history(app, store)
    planted.drop_indexes(app)
    planted.run(app, planted.Phase(rounds=25, seed=9))
    # No window pinned: the regressions happened between the last two snapshots (the third
    # and the one this audit takes), minutes after the first.
    code, out, err = cli(["audit", "--target", f"app={app}", "--store", store, "--json"],
                         capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["windows"]["mode"] == "change_point"
    assert "change point" in report["windows"]["note"]
    snapshots = [r[0] for r in rows(store, "SELECT id FROM pgarchitect.snapshot ORDER BY id")]
    assert len(snapshots) == 4
    assert {r["query"] for r in report["regressions"]} == {
        normalized(sql) for sql in planted.REGRESSING.values()}
    taken = dict(rows(store, "SELECT id, taken_at FROM pgarchitect.snapshot"))
    for r in report["regressions"]:
        assert r["changed_since"] == taken[snapshots[2]].isoformat()
    assert len(report["clusters"]) == 2
    for c in report["clusters"]:
        (table,) = c["tables"]
        cause = c["cause"]
        assert cause["kind"] == "index_dropped"
        assert cause["object"] == f"public.{INDEX[table]}"
        assert cause["definition"] == (f"CREATE INDEX {INDEX[table]} ON {table} USING btree "
                                       f"({COLUMN[table]})")
        assert cause["at"] == taken[snapshots[3]].isoformat()
        assert f", when index `{INDEX[table]}` was dropped: " in c["summary"]
    # The catalog was stored with the first snapshot and when the indexes went, not between.
    stored = rows(store, "SELECT snapshot_id FROM pgarchitect.catalog_snapshot ORDER BY id")
    assert stored == [(snapshots[0],), (snapshots[3],)]
    causes = rows(store, "SELECT cause->>'kind' FROM pgarchitect.regression_cluster")
    assert causes == [("index_dropped",), ("index_dropped",)]

    # The quick check after a snapshot sees the same, without plans or storing anything.
    audits = rows(store, "SELECT count(*) FROM pgarchitect.audit_run")
    check = run_quick_check(SETTINGS, Target("app", Dsn(app)), Dsn(store))
    assert (check.regressions, check.clusters) == (5, 2)
    assert check.windows["mode"] == "change_point"
    assert rows(store, "SELECT count(*) FROM pgarchitect.audit_run") == audits


def test_steady_short_history_with_cpu_competitor_finds_nothing(
    app: str, store: str, competitor: None
) -> None:
    steady_history(app, store, snapshots=4)
    planted.run(app, planted.Phase(rounds=25, seed=7))
    result = run_audit(SETTINGS, Target("app", Dsn(app)), Dsn(store))
    assert result.windows["mode"] == "change_point"
    assert result.statements_analyzed >= len(planted.ALL)
    assert [r.query for r in result.regressions] == []


def test_fewer_than_three_snapshots_say_there_is_no_baseline(app: str, store: str) -> None:
    snapshot(app, store)
    planted.run(app, planted.Phase(rounds=25))
    result = run_audit(SETTINGS, Target("app", Dsn(app)), Dsn(store))
    assert result.regressions == ()
    assert result.windows["mode"] == "no_baseline" and result.windows["baseline"] is None
    text = render(result).splitlines()
    assert [line for line in text if "baseline" in line] == [
        "no baseline yet: 2 snapshots, an audit needs at least 3 (take more with "
        "`pgarchitect snapshot`)"]
    assert result.to_json()["windows"]["note"] == text[1]


def test_setting_change_is_the_cause(app: str, store: str, pg_server: Any) -> None:
    steady_history(app, store)
    dbname = app.rsplit("/", 1)[1]
    with psycopg.connect(app, autocommit=True) as conn:
        # Random I/O made to look prohibitive: every index lookup becomes a sequential scan.
        conn.execute(f"ALTER DATABASE {dbname} SET random_page_cost = 100000".encode())
    planted.run(app, planted.Phase(rounds=25, seed=9))
    result = run_audit(SETTINGS, Target("app", Dsn(app)), Dsn(store))
    assert result.regressions and result.clusters
    for c in result.clusters:
        assert c.cause is not None, c.summary
        assert (c.cause.kind, c.cause.object, c.cause.before, c.cause.after) == (
            "setting_changed", "random_page_cost", "4", "100000")
        assert "when `random_page_cost` changed from 4 to 100000" in c.summary
    assert "cause: setting_changed random_page_cost at " in render(result)
