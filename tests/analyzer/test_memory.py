"""Recommendation memory: the default embedder, pgvector recall through the HNSW index, and
the memory rules (merge, lower, not again) across audits, on a real PostgreSQL 18 store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import psycopg
import pytest
from pgvector import Vector

from analyzer import memory
from analyzer.memory import HashingEmbedder, normalise_index_definition, remember
from analyzer.recommend.model import Recommendation
from analyzer.store import audits, recommendations
from analyzer.store.connection import Conn, connect_store, register_vector
from pgarchitect.config import AnalyzerSettings, MemorySettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.errors import ConfigError, UserError
from tests.conftest import drop_database, new_database

SETTINGS = AnalyzerSettings()
EMBEDDER = HashingEmbedder()


def index_rec(table: str, *columns: str, confidence: float = 0.95,
              statements: tuple[str, ...] = (), queryids: tuple[str, ...] = ("1",),
              evidence: dict[str, object] | None = None) -> Recommendation:
    """A create_index recommendation as the generator would give it (identifiers quoted)."""
    schema, _, name = table.partition(".")
    cols = ", ".join(f'"{c}"' for c in columns)
    idx = f'"{name}_{"_".join(columns)}_idx"'
    return Recommendation(
        kind="create_index", table=table, columns=columns,
        ddl=f'CREATE INDEX CONCURRENTLY {idx} ON "{schema}"."{name}" ({cols})',
        revert_ddl=f'DROP INDEX CONCURRENTLY "{schema}".{idx}',
        rationale=f"{len(statements) or 1} statements filter {table} on {', '.join(columns)}.",
        confidence=confidence, queryids=queryids,
        statements=statements or (f"SELECT * FROM {name} WHERE {columns[0]} = $1",),
        evidence=evidence or {"statements": [{"queryid": queryids[0], "calls": 100}]},
        estimated_cost_before=4000.0, estimated_cost_after=8.0, validated_by="hypopg",
    )


# --- the embedder ----------------------------------------------------------------------------

def test_embedder_gives_unit_vectors_of_384_dimensions() -> None:
    vectors = EMBEDDER.embed([index_rec("public.orders", "customer_id"),
                              index_rec("public.events", "session_id", "kind")])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_embedder_is_the_same_in_every_process() -> None:
    """FeatureHasher uses MurmurHash3 with a fixed seed, not Python's salted hash()."""
    code = ("from analyzer.memory import HashingEmbedder; from tests.analyzer.test_memory import"
            " index_rec; v = HashingEmbedder().embed([index_rec('public.orders', 'customer_id',"
            " 'status')])[0]; print(v.tobytes().hex())")
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True, timeout=120)
        outs.append(done.stdout.strip())
    assert outs[0] == outs[1]
    here = EMBEDDER.embed([index_rec("public.orders", "customer_id", "status")])[0]
    assert here.tobytes().hex() == outs[0]


def test_similar_recommendations_are_nearer_than_unrelated_ones() -> None:
    a = index_rec("public.orders", "customer_id")
    near = index_rec("public.orders", "customer_id", "status")
    far = index_rec("public.events", "session_id")
    va, vn, vf = EMBEDDER.embed([a, near, far])
    assert float(va @ vn) > float(va @ vf)
    assert float(va @ EMBEDDER.embed([a])[0]) == pytest.approx(1.0)


def test_load_embedder_checks_the_class() -> None:
    assert isinstance(memory.load_embedder("analyzer.memory.HashingEmbedder"), HashingEmbedder)
    with pytest.raises(ConfigError, match=r"analyzer\.embedder: cannot load 'no\.such\.Thing'"):
        memory.load_embedder("no.such.Thing")
    with pytest.raises(ConfigError, match="has no dimensions and embed"):
        memory.load_embedder("collections.OrderedDict")


def test_index_definitions_match_whatever_the_name() -> None:
    ours = 'CREATE INDEX CONCURRENTLY "orders_customer_id_idx" ON "public"."orders" ("customer_id")'
    theirs = "CREATE INDEX my_own_name ON public.orders USING btree (customer_id)"
    other = "CREATE INDEX my_own_name ON public.orders USING btree (customer_id, status)"
    assert normalise_index_definition(ours) == normalise_index_definition(theirs)
    assert normalise_index_definition(ours) != normalise_index_definition(other)
    assert normalise_index_definition("CREATE INDEX ON orders (customer_id)") == \
        normalise_index_definition(theirs)
    hostile = 'CREATE INDEX "i" ON "public"."Or""der; --" ("a b", (lower("E-mail")))'
    assert normalise_index_definition(hostile) == \
        'CREATE INDEX ON public."Or""der; --" ("a b", (lower("E-mail")))'
    partial = "CREATE INDEX CONCURRENTLY \"i\" ON \"public\".\"o\" (\"s\") WHERE s = 'done'"
    catalog = "CREATE INDEX i ON public.o USING btree (s) WHERE (s = 'done'::text)"
    assert normalise_index_definition(partial) == normalise_index_definition(catalog)
    assert normalise_index_definition("DROP TABLE x") is None
    assert normalise_index_definition("not sql") is None


# --- on a real store -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store_db(pg18: PgServer) -> Iterator[str]:
    """One migrated store for this module's tests (each uses its own target name)."""
    from pgarchitect.migrate import migrate

    dsn = new_database(pg18, "memstore")
    migrate(Dsn(dsn))
    yield dsn
    drop_database(pg18, dsn)


@pytest.fixture
def conn(store_db: str) -> Iterator[Conn]:
    with connect_store(Dsn(store_db)) as c:
        yield c


def audit(conn: Conn, target: str) -> int:
    return audits.start_audit(conn, target)[0]


def test_codecs_need_the_extension(pg18: PgServer) -> None:
    dsn = new_database(pg18, "novector")
    try:
        with psycopg.connect(dsn) as c, \
                pytest.raises(UserError, match=r"no pgvector extension.*pgarchitect migrate"):
            register_vector(c)
    finally:
        drop_database(pg18, dsn)


def test_vectors_come_back_decoded(conn: Conn) -> None:
    row = conn.execute("SELECT '[1,2,3]'::vector").fetchone()
    assert row is not None and isinstance(row[0], Vector)
    assert row[0].to_numpy().tolist() == [1.0, 2.0, 3.0]


def test_recall_returns_the_true_nearest_in_order(conn: Conn) -> None:
    target = "recall"
    tables = [f"public.t{i}" for i in range(6)]
    cols = ["a", "b", "c", "d"]
    recs = [index_rec(tables[i % 6], *cols[: 1 + (i % 3)], queryids=(str(i),),
                      statements=(f"SELECT * FROM t{i % 6} WHERE {cols[i // 6]} = $1",))
            for i in range(18)]  # all different
    with conn.transaction():
        for r in recs:
            memory._insert(conn, target, r, memory.embed_one(EMBEDDER, r), (), None)
        conn.execute("INSERT INTO pgarchitect.optimization_log (kind, target, rationale,"
                     " confidence, embedding) VALUES ('analyze', 'elsewhere', 'x', 0.9, %s)",
                     (memory.embed_one(EMBEDDER, recs[0]).astype(np.float32),))
    rows = conn.execute("SELECT id, embedding FROM pgarchitect.optimization_log"
                        " WHERE target = %s", (target,)).fetchall()
    ids = [int(r[0]) for r in rows]
    matrix = np.array([r[1].to_numpy() for r in rows], dtype=np.float64)
    probe = index_rec("public.t2", "a", "b", statements=("SELECT * FROM t2 WHERE c = $1",))
    v = memory.embed_one(EMBEDDER, probe)
    sims = matrix @ v / np.linalg.norm(matrix, axis=1)
    truth = [ids[i] for i in np.argsort(-sims, kind="stable")[:5]]
    found = recommendations.recall(conn, target, v, 5)
    assert [f.id for f in found] == truth
    assert [f.similarity for f in found] == pytest.approx(sorted(sims, reverse=True)[:5],
                                                          abs=1e-5)
    assert all(f.status == "proposed" for f in found)


def test_recall_uses_the_hnsw_index(conn: Conn) -> None:
    """The recall query as written (ORDER BY the cosine distance, LIMIT) is answered by the
    HNSW index. With a few hundred rows a sequential scan and a sort are cheaper, and the
    planner rightly takes them (the index is for a store that remembers a fleet); from about
    two thousand rows of the target on, it takes the index by itself -- no planner setting
    is forced here."""
    target = "plan"
    rng = np.random.default_rng(0)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO pgarchitect.optimization_log (kind, target, table_name, rationale,"
            " confidence, embedding) VALUES ('create_index', %s, 'public.t', 'x', 0.9, %s)",
            [(target, rng.random(384).astype(np.float32)) for _ in range(2000)])
    conn.execute("ANALYZE pgarchitect.optimization_log")
    plan = conn.execute(("EXPLAIN " + recommendations.RECALL).encode(),
                        {"v": rng.random(384).astype(np.float32), "target": target,
                         "exclude": 0, "limit": 5}).fetchall()
    lines = [str(r[0])[:100] for r in plan]
    assert any("Index Scan using optimization_log_embedding_idx" in ln for ln in lines), lines
    found = recommendations.recall(conn, target, rng.random(384), 5)
    assert len(found) == 5
    assert [f.similarity for f in found] == sorted((f.similarity for f in found), reverse=True)
    # A target with three recommendations far from the probe, in a store full of another
    # target's near ones: all three are still found.
    with conn.transaction():
        for _ in range(3):
            conn.execute("INSERT INTO pgarchitect.optimization_log (kind, target, rationale,"
                         " confidence, embedding) VALUES ('vacuum', 'tiny', 'x', 0.9, %s)",
                         (-rng.random(384).astype(np.float32),))
    assert len(recommendations.recall(conn, "tiny", rng.random(384), 5)) == 3


def test_a_repeat_of_a_pending_one_is_merged(conn: Conn) -> None:
    target = "merge"
    first = index_rec("public.orders", "customer_id", queryids=("11",))
    with conn.transaction():
        a = remember(conn, target, first, embedder=EMBEDDER, settings=SETTINGS,
                     audit_id=audit(conn, target))
    assert a.action == "proposed" and a.id is not None
    recommendations.set_status(conn, a.id, "accepted", "cli", "looks right")
    before = recommendations.get(conn, a.id)
    again = replace(first, queryids=("12",), confidence=0.97, ddl=first.ddl.replace("_idx", "_i"),
                    evidence={"statements": [{"queryid": "12", "calls": 900}]})
    audit2 = audit(conn, target)
    with conn.transaction():
        b = remember(conn, target, again, embedder=EMBEDDER, settings=SETTINGS,
                     audit_id=audit2)
    assert (b.action, b.id, b.status) == ("merged", a.id, "accepted")
    rows = conn.execute("SELECT count(*) FROM pgarchitect.optimization_log WHERE target = %s",
                        (target,)).fetchone()
    assert rows == (1,)
    after = recommendations.get(conn, a.id)
    assert after.times_seen == 2 and after.last_seen_at > before.last_seen_at
    assert after.recommendation.queryids == ("11", "12")
    assert after.recommendation.confidence == 0.97
    assert after.recommendation.evidence["statements"] == [{"queryid": "12", "calls": 900}]
    assert after.status == "accepted" and after.audit_id != audit2
    assert after.recommendation.ddl == first.ddl == b.recommendation.ddl  # as accepted
    assert b.to_json()["merged"] is True and b.to_json()["id"] == str(a.id)


def test_a_repeat_of_a_rejected_one_is_lowered_and_says_why(conn: Conn) -> None:
    target = "reject"
    rec = index_rec("public.orders", "status")
    with conn.transaction():
        a = remember(conn, target, rec, embedder=EMBEDDER, settings=SETTINGS,
                     audit_id=audit(conn, target))
    assert a.id is not None
    recommendations.set_status(conn, a.id, "rejected", "cli", "status has four values")
    with conn.transaction():
        b = remember(conn, target, rec, embedder=EMBEDDER, settings=SETTINGS,
                     audit_id=audit(conn, target))
    assert b.action == "not_proposed" and b.reason == "repeat_of_rejected"
    assert b.recommendation.confidence == pytest.approx(0.95 * 0.5)
    assert b.note is not None and f"recommendation {a.id}" in b.note
    assert "status has four values" in b.note
    assert b.similar_past[0].id == a.id and b.similar_past[0].status == "rejected"
    assert b.to_json()["reason"] == "repeat_of_rejected"

    # A milder penalty keeps it above the bar: proposed again, lowered, with the reason.
    mild = replace(SETTINGS, memory=MemorySettings(rejected_penalty=0.1))
    with conn.transaction():
        c = remember(conn, target, replace(rec, confidence=1.0), embedder=EMBEDDER,
                     settings=mild, audit_id=audit(conn, target))
    assert c.action == "proposed" and c.id != a.id
    assert c.recommendation.confidence == pytest.approx(0.9)
    assert f"recommendation {a.id}" in c.recommendation.rationale
    assert "was rejected: status has four values" in c.recommendation.rationale


def test_a_near_repeat_of_a_rejected_one_is_lowered_by_its_similarity(
        conn: Conn) -> None:
    target = "near"
    rec = index_rec("public.orders", "status", "amount",
                    statements=("SELECT * FROM orders WHERE status = $1 AND amount > $2",))
    with conn.transaction():
        a = remember(conn, target, rec, embedder=EMBEDDER, settings=SETTINGS)
    assert a.id is not None
    recommendations.set_status(conn, a.id, "rejected", "api", None)
    near = index_rec("public.orders", "status", "amount", "id",
                     statements=("SELECT * FROM orders WHERE status = $1 AND amount > $2",))
    sim = float(memory.embed_one(EMBEDDER, rec) @ memory.embed_one(EMBEDDER, near))
    loose = replace(SETTINGS, memory=MemorySettings(repeat_similarity=sim - 0.01))
    with conn.transaction():
        b = remember(conn, target, near, embedder=EMBEDDER, settings=loose)
    assert b.action == "not_proposed" and b.reason == "repeat_of_rejected"
    assert b.recommendation.confidence == pytest.approx(0.95 * (1 - 0.5 * sim), abs=1e-3)
    strict = replace(SETTINGS, memory=MemorySettings(repeat_similarity=min(sim + 0.01, 1.0)))
    with conn.transaction():
        c = remember(conn, target, near, embedder=EMBEDDER, settings=strict)
    assert c.action == "proposed" and c.recommendation.confidence == 0.95
    assert [(s.id, s.status) for s in c.similar_past][:1] == [(a.id, "rejected")]


def test_one_that_proved_ineffective_is_not_proposed_again(conn: Conn) -> None:
    target = "ineffective"
    rec = index_rec("public.events", "kind")
    with conn.transaction():
        a = remember(conn, target, rec, embedder=EMBEDDER, settings=SETTINGS)
    assert a.id is not None
    recommendations.set_status(conn, a.id, "applied", "cli", "deployed")
    with conn.transaction():
        b = remember(conn, target, rec, embedder=EMBEDDER, settings=SETTINGS)
    assert (b.action, b.reason) == ("not_proposed", "already_applied")
    recommendations.set_status(conn, a.id, "ineffective", "analyzer", "no gain")
    recommendations.set_status(conn, a.id, "reverted", "analyzer", "index dropped")
    for _ in range(2):  # still not, in every later audit, though it is now `reverted`
        with conn.transaction():
            c = remember(conn, target, rec, embedder=EMBEDDER, settings=SETTINGS,
                         audit_id=audit(conn, target))
        assert (c.action, c.reason) == ("not_proposed", "proved_ineffective")
        assert c.similar_past[0].id == a.id and c.similar_past[0].status == "reverted"
    count = conn.execute("SELECT count(*) FROM pgarchitect.optimization_log WHERE target = %s",
                         (target,)).fetchone()
    assert count == (1,)


def test_every_proposal_lists_its_nearest_past(conn: Conn) -> None:
    target = "similar"
    ids = []
    for cols in (("customer_id",), ("customer_id", "status"), ("created_at",)):
        with conn.transaction():
            out = remember(conn, target, index_rec("public.orders", *cols), embedder=EMBEDDER,
                           settings=SETTINGS)
        ids.append(out.id)
    assert out.similar_past and {s.id for s in out.similar_past} == set(ids[:2])
    first = out.similar_past[0]
    assert 0 < first.similarity <= 1 and first.status == "proposed"
    stored = recommendations.get(conn, int(ids[2] or 0))
    assert stored.recommendation.evidence["similar_past"] == \
        [s.to_json() for s in out.similar_past]
    history = stored.history
    assert [(h.from_status, h.to_status, h.changed_by) for h in history] == \
        [(None, "proposed", "analyzer")]
