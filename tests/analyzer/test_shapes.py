"""Statement coverage on real servers, through the audit's recommend engine: PostgreSQL 15
validates with hypopg, 18 with a rolled-back transaction. Each shape with its expected
index and the negative next to it (the pure side is tests/analyzer/test_shapes_pure.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from analyzer.recommend import parameters
from analyzer.recommend.engine import recommend
from analyzer.recommend.model import RecommendResult, StatementEvidence
from analyzer.snapshots.catalog import read_catalog
from pgarchitect.config import AnalyzerSettings, ValidationSettings
from pgarchitect.demo.embedded import PgServer
from tests.conftest import drop_database, new_database

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, email text, name text COLLATE "{collation}",
                        country text);
INSERT INTO customers SELECT g, 'c' || g || '@example.com', 'Name ' || md5(g::text),
       (ARRAY['de', 'fr', 'it'])[1 + g % 3] FROM generate_series(1, 20000) g;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, status text,
                     created_at timestamptz, note text COLLATE "{collation}", data jsonb,
                     shipped_at timestamptz);
INSERT INTO orders SELECT g, 1 + g % 20000,
       (ARRAY['open', 'paid', 'sent', 'done', 'void'])[1 + g % 5],
       timestamptz '2026-01-01' + g * interval '1 minute', 'ref-' || lpad(g::text, 6, '0'),
       CASE WHEN g % 1000 = 0 THEN jsonb_build_object('vip', true, 'n', g)
            ELSE '{"vip": false}' END,
       CASE WHEN g % 50 = 0 THEN NULL ELSE timestamptz '2026-01-02' END
FROM generate_series(1, 100000) g;
CREATE TABLE profiles (customer_id int, bio text);
INSERT INTO profiles SELECT g, repeat('x', 50) FROM generate_series(1, 20000) g;
CREATE TABLE events (id int, tenant_id int, created_at timestamptz, kind text)
    PARTITION BY RANGE (created_at);
CREATE TABLE events_h1 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE events_h2 PARTITION OF events FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
INSERT INTO events SELECT g, g % 500, timestamptz '2026-01-01' + g * interval '5 minutes', 'k'
FROM generate_series(1, 100000) g;
CREATE TABLE "Audit Log" (id int, "actorId" int, at timestamptz);
INSERT INTO "Audit Log" SELECT g, g % 5000, timestamptz '2026-01-01' + g * interval '1 minute'
FROM generate_series(1, 100000) g;
CREATE VIEW "Recent Audit" AS SELECT a."actorId" AS actor, a.at FROM "Audit Log" a;
CREATE VIEW open_orders AS
    SELECT o.id, o.customer_id AS buyer, o.created_at FROM orders o WHERE o.shipped_at IS NULL;
CREATE VIEW recent_open AS SELECT v.id, v.buyer FROM open_orders v;
ANALYZE;
"""

# statement -> the index it should get: (table, columns, USING/WHERE fragment of the DDL)
SHAPES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "SELECT * FROM recent_open WHERE buyer = 42":
        ("public.orders", ("customer_id",), "(customer_id)"),
    "WITH c AS (SELECT * FROM orders WHERE created_at > '2026-02-01') "
    "SELECT * FROM c WHERE customer_id = 42":
        ("public.orders", ("customer_id", "created_at"), ""),
    "WITH c AS NOT MATERIALIZED (SELECT * FROM orders WHERE created_at > '2026-02-01') "
    "SELECT * FROM c WHERE customer_id = 42":
        ("public.orders", ("customer_id", "created_at"), ""),
    "SELECT * FROM events WHERE tenant_id = 7 AND created_at > '2026-09-01'":
        ("public.events", ("tenant_id", "created_at"), ""),
    "UPDATE orders SET note = 'x' WHERE customer_id = 42":
        ("public.orders", ("customer_id",), ""),
    "DELETE FROM orders WHERE created_at < '2026-01-02'":
        ("public.orders", ("created_at",), ""),
    "SELECT id, created_at FROM orders WHERE customer_id = 42 ORDER BY 2 DESC LIMIT 10":
        ("public.orders", ("customer_id", "created_at"), ""),
    "SELECT id, created_at AS placed FROM orders WHERE customer_id = 42 "
    "ORDER BY placed DESC LIMIT 10":
        ("public.orders", ("customer_id", "created_at"), ""),
    "SELECT * FROM orders JOIN profiles USING (customer_id) WHERE orders.id = 42":
        ("public.profiles", ("customer_id",), ""),
    "SELECT * FROM orders WHERE customer_id IN "
    "(SELECT id FROM customers WHERE email = 'c42@example.com')":
        ("public.orders", ("customer_id",), ""),
    "SELECT * FROM orders WHERE customer_id = ANY('{1,2,3}'::int[])":
        ("public.orders", ("customer_id",), ""),
    "SELECT * FROM orders WHERE note LIKE 'ref-00042%'":
        ("public.orders", ("note",), "(note text_pattern_ops)"),
    "SELECT * FROM orders WHERE customer_id = 42 AND shipped_at IS NULL":
        ("public.orders", ("customer_id",), "WHERE shipped_at IS NULL"),
    # names PostgreSQL prints quoted, through a view of the same kind
    'SELECT * FROM "Recent Audit" WHERE actor = 42':
        ('public."Audit Log"', ('"actorId"',), 'ON public."Audit Log" ("actorId")'),
}
# GIN: hypopg cannot make a hypothetical GIN index; a rolled-back transaction builds one
GIN = {
    "SELECT * FROM orders WHERE data @> '{\"vip\": true}'":
        ("public.orders", ("data",), "USING gin (data)"),
    "SELECT * FROM customers WHERE name ILIKE '%A1D0C6E83F%'":  # md5('42')
        ("public.customers", ("name",), "USING gin (name gin_trgm_ops)"),
}
# statement -> (a column set it must not get, the not_proposed reason that says why)
NEGATIVES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "WITH c AS MATERIALIZED (SELECT * FROM orders WHERE created_at > '2026-02-01') "
    "SELECT * FROM c WHERE customer_id = 42":
        ("public.orders", ("customer_id",), "shape_not_handled"),
    "SELECT * FROM orders WHERE status = 'open'":
        ("public.orders", ("status",), "low_selectivity"),
    "SELECT * FROM orders WHERE note LIKE '%42'":  # two characters: no trigram to look up
        ("public.orders", ("note",), "shape_not_handled"),
    "SELECT * FROM orders WHERE customer_id = 42 OR created_at > '2026-03-01'":
        ("public.orders", ("customer_id",), "shape_not_handled"),
}
_ids = itertools.count(1)


def _shapes_db(server: PgServer) -> str:
    extensions = ("hypopg", "pg_trgm") if server.version == 15 else ("pg_trgm",)
    dsn = new_database(server, "shapes", extensions)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # a libc collation that is not C (the embedded 18 has no ICU): LIKE 'prefix%' needs
        # text_pattern_ops under it
        conn.execute(SCHEMA.replace("{collation}", "C.utf8").encode())
    return dsn


@pytest.fixture(scope="module")
def shapes(pg_server: PgServer) -> Iterator[tuple[str, int]]:
    dsn = _shapes_db(pg_server)
    yield dsn, pg_server.version
    drop_database(pg_server, dsn)


def _evidence(query: str) -> StatementEvidence:
    qid = next(_ids)
    return StatementEvidence(1, (qid,), f"fp-shape-{qid}", query, 1000, 20000.0, 20.0, 1000)


def _recommend(conn: psycopg.Connection[Any], version: int, query: str,
               logged: tuple[tuple[str, ...], ...] = ()) -> RecommendResult:
    """`logged`: bind parameters of `query` as the server's log would give them."""
    mode = "hypopg" if version == 15 else "transaction"
    settings = AnalyzerSettings(validation=ValidationSettings(mode=mode))
    return recommend(conn, [_evidence(query)], read_catalog(conn), (), settings,
                     conn.info.server_version, table_writes={},
                     logged_parameters=parameters.logged_values((query, v) for v in logged))


@pytest.fixture
def target(shapes: tuple[str, int]) -> Iterator[tuple[psycopg.Connection[Any], int]]:
    conn = psycopg.connect(shapes[0], autocommit=True)
    conn.execute("SET default_transaction_read_only = on")
    yield conn, shapes[1]
    conn.close()


@pytest.mark.parametrize("query", list(SHAPES), ids=range(len(SHAPES)))
def test_each_shape_gets_its_index(target: tuple[psycopg.Connection[Any], int],
                                   query: str) -> None:
    conn, version = target
    table, columns, fragment = SHAPES[query]
    result = _recommend(conn, version, query)
    created = {(r.table, r.columns): r for r in result.proposed if r.kind == "create_index"}
    assert (table, columns) in created, (sorted(created), [n.to_json() for n in
                                                           result.not_proposed])
    rec = created[(table, columns)]
    assert rec.ddl is not None and fragment in rec.ddl, rec.ddl
    assert rec.validated_by == ("hypopg" if version == 15 else "transaction")
    assert rec.estimated_cost_after is not None and rec.estimated_cost_before is not None
    assert rec.estimated_cost_after < rec.estimated_cost_before / 2


@pytest.mark.parametrize("query", list(GIN), ids=range(len(GIN)))
def test_gin_indexes(target: tuple[psycopg.Connection[Any], int], query: str) -> None:
    conn, version = target
    table, columns, fragment = GIN[query]
    result = _recommend(conn, version, query)
    if version == 15:  # hypopg has no GIN: said so, not proposed unvalidated
        skipped = [n for n in result.not_proposed if (n.table, n.columns) == (table, columns)]
        assert skipped and skipped[0].reason == "validation_failed"
        assert "gin" in (skipped[0].detail or "")
        return
    created = {(r.table, r.columns): r for r in result.proposed if r.kind == "create_index"}
    assert (table, columns) in created, [n.to_json() for n in result.not_proposed]
    assert fragment in (created[(table, columns)].ddl or "")


@pytest.mark.parametrize("query", list(NEGATIVES), ids=range(len(NEGATIVES)))
def test_each_negative_says_why(target: tuple[psycopg.Connection[Any], int],
                                query: str) -> None:
    conn, version = target
    table, columns, reason = NEGATIVES[query]
    result = _recommend(conn, version, query)
    assert not any(r.table == table and r.columns[:len(columns)] == columns
                   for r in result.proposed if r.kind == "create_index")
    reasons = {n.reason for n in result.not_proposed if n.table == table}
    assert reason in reasons, [n.to_json() for n in result.not_proposed]


SEARCH = "SELECT id, note FROM orders WHERE note LIKE $1 ORDER BY note LIMIT $2"


def test_a_like_parameter_whose_samples_are_prefixes_gets_pattern_ops(
        target: tuple[psycopg.Connection[Any], int]) -> None:
    conn, version = target
    result = _recommend(conn, version, SEARCH, (("ref-00042%", "20"), ("ref-0913%", "20")))
    created = {r.columns: r for r in result.proposed if r.table == "public.orders"}
    assert ("note",) in created, [n.to_json() for n in result.not_proposed]
    rec = created[("note",)]
    assert rec.ddl is not None and "(note text_pattern_ops)" in rec.ddl
    assert rec.evidence_kind == "custom_plan"  # planned with the logged patterns
    assert rec.evidence["statements"][0]["parameters"] == "server_log"
    # a substring among the samples: no btree serves it; pg_trgm is installed here, so the
    # samples are planned against a trigram index instead (tests/analyzer/test_shapes_pure.py
    # has the reason given without pg_trgm)
    mixed = _recommend(conn, version, SEARCH, (("ref-00042%", "20"), ("%0042%", "20")))
    assert not any(r.table == "public.orders" and r.columns == ("note",)
                   and "text_pattern_ops" in (r.ddl or "") for r in mixed.proposed)
    trigram = [r for r in mixed.proposed if "gin_trgm_ops" in (r.ddl or "")]
    if version == 15:  # validated with hypopg, which cannot make a GIN index (documented)
        assert any(n.reason == "validation_failed" for n in mixed.not_proposed), \
            [n.to_json() for n in mixed.not_proposed]
    else:
        assert trigram and trigram[0].evidence_kind == "custom_plan", \
            [n.to_json() for n in mixed.not_proposed]
