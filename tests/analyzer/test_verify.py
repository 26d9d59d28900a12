"""The verify-after-apply loop on real servers: a planted missing index is proposed, written
out by `propose`, applied with psql, seen applied by the next snapshot's catalog, and verified
with the gain measured from real snapshots of a real workload; an index that does not help
its statements is measured ineffective and its revert is proposed; dropping the indexes
makes the recommendations reverted. Targets: PostgreSQL 15 and 18; the store: 18."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from analyzer.memory import HashingEmbedder, remember
from analyzer.recommend.model import Recommendation
from analyzer.snapshots.model import SnapshotMeta
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store import recommendations
from analyzer.store.connection import connect_store
from analyzer.verify import measure, observe_catalog, verify
from pgarchitect.cli import main
from pgarchitect.config import AnalyzerSettings, RegressionSettings, VerificationSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from tests.analyzer import planted

# A helpful index makes these lookups ~100x faster, a useless one ~1x; a bar of 3x keeps a
# busy machine's phase-to-phase noise (seen: 1.5x) from passing for a gain.
SETTINGS = replace(AnalyzerSettings(), verification=VerificationSettings(min_calls=30),
                   regression=replace(RegressionSettings(), min_ratio=3.0))
EMBEDDER = HashingEmbedder()
ORDERS = ("orders_by_customer", "orders_last")
EVENTS = ("events_by_session",)

VALID_INDEXES = """
SELECT n.nspname || '.' || c.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""


def valid_indexes(dsn: str) -> dict[str, str]:
    """The target's valid indexes as the catalog snapshot gives them: name -> definition."""
    with psycopg.connect(dsn) as conn:
        return {str(r[0]): str(r[1]) for r in conn.execute(VALID_INDEXES).fetchall()}


def snapshot(app: str, store: str) -> SnapshotMeta:
    with connect_target(Dsn(app), "target", SETTINGS) as tconn, \
            connect_store(Dsn(store)) as sconn:
        return take_snapshot(StatementSource(tconn), sconn, "app", SETTINGS.retention).snapshot


def queryids_of(store: str, names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The queryids and normalised texts the store has for planted statements."""
    texts = [planted.ALL[n].replace("%s", "$1", 1).replace("%s", "$2") for n in names]
    with psycopg.connect(store) as conn:
        rows = conn.execute("SELECT queryid, query FROM pgarchitect.statement_text"
                            " WHERE query = ANY(%s) ORDER BY queryid", (texts,)).fetchall()
    assert len(rows) == len(names), rows
    return tuple(str(r[0]) for r in rows), tuple(str(r[1]) for r in rows)


def index_rec(table: str, column: str, name: str, queryids: tuple[str, ...],
              statements: tuple[str, ...]) -> Recommendation:
    return Recommendation(
        kind="create_index", table=f"public.{table}", columns=(column,),
        ddl=f'CREATE INDEX CONCURRENTLY "{name}" ON "public"."{table}" ("{column}")',
        revert_ddl=f'DROP INDEX CONCURRENTLY "public"."{name}"',
        rationale=f"{len(queryids)} statements filter {table} by {column}.",
        confidence=0.95, queryids=queryids, statements=statements,
        evidence={"statements": [{"queryid": q, "query": s} for q, s in
                                 zip(queryids, statements, strict=True)]},
        estimated_cost_before=4000.0, estimated_cost_after=8.5, validated_by="hypopg",
    )


def psql(server: PgServer, dsn: str, *args: str) -> str:
    done = subprocess.run([str(server.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1",
                           "-d", dsn, *args], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def traffic(app: str, names: tuple[str, ...], seed: int) -> None:
    planted.run(app, planted.Phase(rounds=40, statements=names, seed=seed))


def test_applied_verified_ineffective_reverted(
    pg_server: PgServer, app: str, store: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted.drop_indexes(app)  # the planted missing indexes: lookups scan 200,000 rows
    planted.run(app, planted.Phase(rounds=3, statements=ORDERS + EVENTS))  # warm the cache
    snapshot(app, store)
    traffic(app, ORDERS + EVENTS, seed=1)
    snapshot(app, store)

    orders_q, orders_s = queryids_of(store, ORDERS)
    events_q, events_s = queryids_of(store, EVENTS)
    helps = index_rec("orders", "customer_id", "pga_orders_customer_id_idx", orders_q, orders_s)
    # An index on events.kind does nothing for a lookup by session_id.
    useless = index_rec("events", "kind", "pga_events_kind_idx", events_q, events_s)
    with connect_store(Dsn(store)) as conn, conn.transaction():
        ids = [remember(conn, "app", r, embedder=EMBEDDER, settings=SETTINGS).id
               for r in (helps, useless)]
    good, bad = (int(i or 0) for i in ids)

    # `propose` writes the migrations; psql applies them as they are.
    for rec_id in (good, bad):
        assert main(["propose", str(rec_id), "--store", store, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    for path in sorted(tmp_path.glob("*.sql")):
        psql(pg_server, app, "-f", str(path))
    assert {"public.pga_orders_customer_id_idx", "public.pga_events_kind_idx"} <= \
        set(valid_indexes(app))

    # The next snapshot's catalog shows both indexes valid: applied, at that moment.
    s2 = snapshot(app, store)
    with connect_store(Dsn(store)) as conn:
        changes = observe_catalog(conn, "app", valid_indexes(app), at=s2.taken_at)
        assert sorted((c.recommendation_id, c.to_status) for c in changes) == \
            [(good, "applied"), (bad, "applied")]
        applied = recommendations.get(conn, good)
        assert applied.applied_at == s2.taken_at
        assert applied.history[-1].changed_by == "analyzer"
        assert "pga_orders_customer_id_idx found valid" in str(applied.history[-1].note)
        # Seen again: nothing changes twice.
        assert observe_catalog(conn, "app", valid_indexes(app), at=s2.taken_at) == []
        # No calls since: pending, with the count said.
        early = measure(conn, "app", applied, SETTINGS)
        assert early.status == "pending" and early.calls_after == 0
        assert early.calls_before == 80 and "0 of 30 calls" in early.note

    traffic(app, ORDERS + EVENTS, seed=2)
    snapshot(app, store)
    with connect_store(Dsn(store)) as conn:
        with conn.transaction():
            result = verify(conn, "app", SETTINGS, embedder=EMBEDDER)
        by_id = {v.id: v for v in result.verifications}
        v = by_id[good]
        assert v.status == "verified", v.note
        assert (v.calls_before, v.calls_after) == (80, 80)
        assert v.before_mean_ms is not None and v.after_mean_ms is not None
        assert v.ratio is not None and v.ratio < 1 / SETTINGS.regression.min_ratio
        assert v.p_value is not None and v.p_value <= SETTINGS.regression.max_p_value
        assert set(v.queryids) == set(orders_q)
        w = by_id[bad]
        assert w.status == "ineffective", w.note
        assert w.calls_after == 40 and w.ratio is not None and w.ratio > 0.5

        stored = recommendations.get(conn, good)
        assert stored.status == "verified" and stored.measured_change == v.to_json()
        assert [h.to_status for h in stored.history] == ["proposed", "applied", "verified"]
        assert recommendations.get(conn, bad).status == "ineffective"
        # The revert of the ineffective one is proposed with the measured evidence.
        (revert,) = result.reverts
        assert revert.action == "proposed" and revert.id is not None
        rv = recommendations.get(conn, revert.id)
        assert rv.recommendation.kind == "drop_index" and rv.reverts_id == bad
        assert rv.recommendation.ddl == \
            'DROP INDEX CONCURRENTLY IF EXISTS "public"."pga_events_kind_idx"'
        assert rv.recommendation.evidence["measured"] == w.to_json()
        assert "measured ineffective" in rv.recommendation.rationale
        # Verified and ineffective ones are not measured again.
        assert verify(conn, "app", SETTINGS, embedder=EMBEDDER).verifications == ()

    code = main(["recommendations", "--store", store, "--target", "app", "--json"])
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)
              ["recommendations"]}
    assert code == 0 and listed[str(good)]["measured"]["status"] == "verified"
    assert listed[str(revert.id)]["status"] == "proposed"

    # Dropping the helpful index, and applying the revert of the useless one.
    psql(pg_server, app, "-c", "DROP INDEX CONCURRENTLY pga_orders_customer_id_idx")
    assert main(["propose", str(revert.id), "--store", store, "--out",
                 str(tmp_path / "revert")]) == 0
    (revert_file,) = (tmp_path / "revert").glob("*.sql")
    psql(pg_server, app, "-f", str(revert_file))
    s4 = snapshot(app, store)
    with connect_store(Dsn(store)) as conn:
        changes = observe_catalog(conn, "app", valid_indexes(app), at=s4.taken_at)
        assert sorted((c.recommendation_id, c.to_status) for c in changes) == \
            sorted([(good, "reverted"), (bad, "reverted"), (revert.id, "applied")])



def test_verification_entries_have_the_report_fields() -> None:
    from datetime import UTC, datetime

    from analyzer.verify import Verification

    v = Verification(3, "verified", datetime(2026, 1, 5, tzinfo=UTC), ("1", "-2"), 80, 90,
                     8.1234567, 0.0812345, 0.01, 1.23456e-30, "8.1 ms -> 0.08 ms")
    entry = v.to_json()
    assert {"id", "status", "applied_at", "queryids", "calls_after", "before_mean_ms",
            "after_mean_ms", "ratio", "p_value"} <= set(entry)
    assert entry["id"] == "3" and entry["queryids"] == ["1", "-2"]
    assert entry["applied_at"] == "2026-01-05T00:00:00+00:00"
    assert (entry["before_mean_ms"], entry["after_mean_ms"], entry["p_value"]) == \
        (8.1235, 0.0812, 1.23e-30)
    json.dumps(entry)  # plain JSON
