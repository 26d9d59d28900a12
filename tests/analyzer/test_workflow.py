"""The whole audit workflow on real servers, through `pgarchitect snapshot` and `audit --json`:
an index dropped → its regression cluster with cause index_dropped and a validated
create_index recommendation recreating it (costs before / after), stored as proposed; a second
audit merges the repeat; the DDL applied on the target, the next snapshot sees it applied, and
after more traffic the next audit verifies it. PostgreSQL 15 validates with hypopg (auto),
the embedded 18 has no hypopg and validates with `--validation transaction`.

Then a held-out-style shop (tests/analyzer/shop.py) run as a real workload: the audit proposes
indexes of different shapes, drops an unused and a redundant index and maintains a churned
table, without crashing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from analyzer.audit import run_audit
from pgarchitect.cli import main
from pgarchitect.config import AnalyzerSettings, Target, ValidationSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from tests.analyzer import planted, shop
from tests.conftest import drop_database, new_database

ORDERS = tuple(planted.ORDERS_STATEMENTS)
INDEX = "orders_customer_id_idx"


@pytest.fixture(params=(15, 18), ids=lambda v: f"pg{v}")
def workflow_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The planted app on 15 (with hypopg) or 18; (dsn, the validation flag it needs)."""
    server: PgServer = request.getfixturevalue(f"pg{request.param}")
    extensions = ("pg_stat_statements", "hypopg") if request.param == 15 else (
        "pg_stat_statements",)
    dsn = new_database(server, "flow", extensions)
    planted.create(dsn)
    yield dsn, ("auto" if request.param == 15 else "transaction")
    drop_database(server, dsn)


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def rows(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def test_dropped_index_recommended_merged_applied_verified(
    workflow_target: tuple[str, str], store: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, mode = workflow_target
    config = tmp_path / "pgarchitect.yaml"
    config.write_text("analyzer:\n  verification:\n    min_calls: 60\n")
    common = ["--config", str(config), "--target", f"app={app}", "--store", store]
    audit = ["audit", *common, "--json", "--validation", mode]

    def snapshot() -> str:
        return cli(["snapshot", *common], capsys)

    s0 = int(snapshot().split()[1])
    planted.run(app, planted.Phase(rounds=25, statements=ORDERS))
    s1 = int(snapshot().split()[1])
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {INDEX}".encode())
    planted.run(app, planted.Phase(rounds=25, statements=ORDERS, seed=2))
    windows = ["--baseline", f"{s0}:{s1}", "--current", f"{s1}:"]
    report = json.loads(cli([*audit, *windows], capsys))

    (cluster,) = report["clusters"]
    assert cluster["cause"]["kind"] == "index_dropped"
    assert cluster["cause"]["object"] == f"public.{INDEX}"
    # The dropped index proposed back (a wider one for the status count may come too).
    created = [r for r in report["recommendations"] if r["kind"] == "create_index"
               and r["columns"] == ["customer_id"]]
    assert len(created) == 1, json.dumps(report["not_proposed"])
    (rec,) = created
    expected = "transaction" if mode == "transaction" else "hypopg"
    assert report["validation"]["method"] == expected and report["validation"]["plans"] > 0
    assert (rec["table"], rec["columns"], rec["status"]) == ("public.orders", ["customer_id"],
                                                            "proposed")
    assert rec["validated_by"] == expected and rec["merged"] is False
    assert rec["ddl"] == f"CREATE INDEX CONCURRENTLY {INDEX} ON public.orders USING btree " \
                         "(customer_id)"
    assert rec["estimated_cost_after"] < rec["estimated_cost_before"] / 10
    assert rec["confidence"] >= 0.8 and rec["similar_past"] == []
    assert f"Index {INDEX} was dropped" in rec["rationale"]
    assert set(rec["queryids"]) == set(cluster["queryids"])
    stored = rows(store, "SELECT id, status, audit_id, times_seen FROM"
                  " pgarchitect.optimization_log WHERE kind = 'create_index'"
                  " AND columns = '{customer_id}'")
    assert stored == [(int(rec["id"]), "proposed", int(report["audit_id"]), 1)]

    # The same audit again: the repeat is merged into the pending row.
    again = json.loads(cli([*audit, *windows], capsys))
    (repeat,) = [r for r in again["recommendations"] if r["id"] == rec["id"]]
    assert repeat["merged"] is True and repeat["status"] == "proposed"
    assert rows(store, "SELECT count(*), max(times_seen), max(last_audit_id) FROM"
                " pgarchitect.optimization_log WHERE kind = 'create_index'"
                " AND columns = '{customer_id}'") == [(1, 2, int(again["audit_id"]))]
    # Nothing was proposed twice.
    assert rows(store, "SELECT count(*) FROM pgarchitect.optimization_log") == \
        [(len(report["recommendations"]),)]

    # Applied on the target as proposed; the next snapshot's catalog shows it.
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute(rec["ddl"].encode())
    assert f"recommendation {rec['id']} is applied" in snapshot()
    planted.run(app, planted.Phase(rounds=25, statements=ORDERS, seed=3))
    final = json.loads(cli(audit, capsys))
    (v,) = final["verifications"]
    assert (v["id"], v["status"]) == (rec["id"], "verified"), v
    assert v["calls_after"] >= 60 and v["ratio"] < 1 / 1.5
    assert rec["id"] not in {r["id"] for r in final["recommendations"]}
    history = rows(store, "SELECT to_status FROM pgarchitect.optimization_history"
                   " WHERE recommendation_id = %s ORDER BY id", int(rec["id"]))
    assert [h[0] for h in history] == ["proposed", "applied", "verified"]


# -- the held-out-style shop -------------------------------------------------------------

def _params(name: str, i: int) -> tuple[object, ...]:
    now = datetime.now(UTC)
    return {
        "fk_join": (1 + i * 37 % 20000,),
        "filter_sort": (1 + i * 13 % 10000,),
        "lower_email": (f"user{1 + i * 7 % 20000}@example.com",),
        "status_range": ("paid", now - timedelta(hours=2 + i % 5), now - timedelta(hours=1)),
        "low_selectivity": (("new", "paid", "shipped", "done")[i % 4],),
        "led_by_index": (f"SKU{1 + i}",),
        "tiny_table": (f"Country {1 + i % 50}",),
        "hostile": (i % 20000, i % 1000),
        "hostile_expr": (f"x{i}@y",),
    }[name]


def _traffic(dsn: str, rounds: int, seed: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(seed, seed + rounds):
            for name, text in shop.STATEMENTS.items():
                conn.execute(re.sub(r"\$\d+", "%s", text).encode(), _params(name, i)).fetchall()


@pytest.fixture
def shop15(pg15: PgServer) -> Iterator[str]:
    dsn = new_database(pg15, "heldout", ("pg_stat_statements", "hypopg"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(shop.SCHEMA.encode())
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("VACUUM ANALYZE")
        conn.execute(shop.CHURN)
    yield dsn
    drop_database(pg15, dsn)


def test_shop_audit_proposes_sensible_things(shop15: str, store: str) -> None:
    settings = replace(AnalyzerSettings(), unused_index_min_age=0.0,
                       validation=ValidationSettings(mode="auto"))
    target = Target("shop", Dsn(shop15))
    run_audit(settings, target, Dsn(store))  # the first snapshot
    _traffic(shop15, 15, seed=1)
    result = run_audit(settings, target, Dsn(store))
    report = result.to_json()
    json.dumps(report)  # plain JSON
    assert report["validation"]["method"] == "hypopg"
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in report["recommendations"]:
        by_kind.setdefault(r["kind"], []).append(r)
        assert r["id"] and r["status"] == "proposed" and 0.8 <= r["confidence"] <= 1
    leading = {(r["table"], r["columns"][0]) for r in by_kind.get("create_index", [])}
    assert {("public.orders", "customer_id"), ("public.events", "session_id"),
            ("public.customers", "lower(email)")} <= leading, leading
    for r in by_kind["create_index"]:
        assert r["validated_by"] == "hypopg"
        assert r["estimated_cost_after"] < r["estimated_cost_before"]
    # The negatives are not proposed.
    assert not {("public.orders", "status"), ("public.products", "sku"),
                ("public.countries", "name")} & {
        (r["table"], r["columns"][0]) for r in by_kind["create_index"]
        if len(r["columns"]) == 1}
    drops = {r["evidence"]["index"] for r in by_kind.get("drop_index", [])}
    assert {"public.orders_total_idx", "public.products_sku_idx"} <= drops, drops
    assert not {"public.orders_pkey", "public.orders_note_key"} & drops
    churned = {r["table"] for k in ("vacuum", "analyze") for r in by_kind.get(k, [])}
    assert "public.carts" in churned, by_kind.keys()
    reasons = {n["reason"] for n in report["not_proposed"]}
    assert reasons & {"low_selectivity", "covered_by_existing_index", "table_too_small"}
    stored = rows(store, "SELECT count(*) FROM pgarchitect.optimization_log"
                  " WHERE target = 'shop' AND status = 'proposed'")
    assert stored == [(len(report["recommendations"]),)]


def test_human_report_prints_recommendations_not_proposed_and_verifications() -> None:
    from analyzer.audit import AuditResult
    from analyzer.report import render

    now = datetime.now(UTC)
    result = AuditResult(
        audit_id=3, target="app", status="succeeded", server_version="15.1", started_at=now,
        finished_at=now, duration_seconds=1.2, snapshot_id=4, snapshot_duration_seconds=0.1,
        statements_analyzed=7, regressions=(), clusters=(),
        recommendations=({"id": "12", "kind": "create_index", "status": "proposed",
                          "merged": True, "table": "public.orders", "confidence": 0.99,
                          "validated_by": "hypopg", "estimated_cost_before": 4350.2,
                          "estimated_cost_after": 12.9, "rationale": "Index x was dropped.",
                          "ddl": "CREATE INDEX CONCURRENTLY x ON public.orders (customer_id)",
                          "similar_past": [{"id": "7", "similarity": 0.93,
                                            "status": "rejected"}]},),
        not_proposed=({"kind": "create_index", "table": "public.orders", "columns": ["status"],
                       "reason": "low_selectivity", "detail": "4 distinct values"},),
        verifications=({"id": "9", "status": "verified", "applied_at": now.isoformat(),
                        "calls_before": 80, "calls_after": 75, "before_mean_ms": 14.2,
                        "after_mean_ms": 0.05, "note": "14.2 ms -> 0.05 ms"},),
        validation={"method": "hypopg", "validations": 4, "plans": 14, "seconds": 0.021})
    text = render(result)
    assert "Recommendations (validated by hypopg: 4 validations, 14 plans" in text
    assert "#12 create_index public.orders [proposed (seen before: merged)]" in text
    assert "planned cost 4,350 → 13" in text and "similar past: #7 rejected (0.93)" in text
    assert "CREATE INDEX CONCURRENTLY x ON public.orders (customer_id)" in text
    assert "low_selectivity" in text and "4 distinct values" in text
    assert "#9" in text and "verified" in text and "14.2 ms -> 0.05 ms" in text
