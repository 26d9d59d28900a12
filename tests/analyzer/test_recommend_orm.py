"""Recommendations for an ORM's statements as pg_stat_statements records them (quoted,
table-qualified names, casts inside functions, IN lists, joins), on PostgreSQL 15 (hypopg)
and 18 (transaction): built for that class of workload, not for hand-written fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from analyzer.recommend.engine import recommend
from analyzer.recommend.model import StatementEvidence
from analyzer.snapshots.catalog import read_catalog
from pgarchitect.config import AnalyzerSettings, ValidationSettings
from pgarchitect.demo.embedded import PgServer
from tests.conftest import drop_database, new_database

SCHEMA = """
CREATE TABLE shop_customer (id serial PRIMARY KEY, email varchar(200) NOT NULL,
                            created timestamptz);
INSERT INTO shop_customer (email, created)
    SELECT 'U' || g || '@x.org', now() - g * interval '1 min' FROM generate_series(1, 30000) g;
CREATE TABLE shop_product (id serial PRIMARY KEY, sku varchar(40) NOT NULL, active boolean);
INSERT INTO shop_product (sku, active) SELECT 'S' || g, g % 10 <> 0
    FROM generate_series(1, 30000) g;
CREATE TABLE shop_order (id bigserial PRIMARY KEY,
                         customer_id int NOT NULL REFERENCES shop_customer,
                         state varchar(12) NOT NULL, placed_at timestamptz NOT NULL);
INSERT INTO shop_order (customer_id, state, placed_at)
    SELECT 1 + g % 30000, (ARRAY['cart','paid','sent','back','done'])[1 + g % 5],
           now() - g * interval '10 s' FROM generate_series(1, 150000) g;
CREATE TABLE shop_orderline (id bigserial PRIMARY KEY, order_id bigint NOT NULL,
                             product_id int NOT NULL, qty int);
INSERT INTO shop_orderline (order_id, product_id, qty)
    SELECT 1 + g % 150000, 1 + g % 30000, 1 + g % 3 FROM generate_series(1, 300000) g;
CREATE INDEX shop_orderline_order_id ON shop_orderline (order_id);
CREATE INDEX shop_product_sku_active ON shop_product (sku, active);
CREATE INDEX shop_product_sku ON shop_product (sku);
"""

NOW = datetime.now(UTC)
WORKLOAD = [
    ('SELECT "shop_order"."id", "shop_order"."state" FROM "shop_order" WHERE '
     '"shop_order"."customer_id" = %s ORDER BY "shop_order"."placed_at" DESC LIMIT 20',
     lambda i: (1 + i,)),
    ('SELECT "shop_customer"."id" FROM "shop_customer" WHERE '
     'UPPER("shop_customer"."email"::text) = UPPER(%s)', lambda i: (f"u{i}@x.org",)),
    ('SELECT COUNT(*) FROM "shop_order" WHERE "shop_order"."state" IN (%s, %s) AND '
     '"shop_order"."placed_at" BETWEEN %s AND %s',
     lambda i: ("paid", "sent", NOW - timedelta(hours=2), NOW)),
    ('SELECT "shop_orderline"."qty", "shop_product"."sku" FROM "shop_orderline" INNER JOIN '
     '"shop_product" ON ("shop_orderline"."product_id" = "shop_product"."id") WHERE '
     '"shop_orderline"."order_id" = %s', lambda i: (1 + i,)),
    ('SELECT "shop_product"."id" FROM "shop_product" WHERE "shop_product"."sku" = %s',
     lambda i: (f"S{i}",)),
    ("SELECT o.id FROM shop_order o JOIN shop_orderline l ON l.order_id = o.id "
     "WHERE l.product_id = %s", lambda i: (1 + i,)),
]


@pytest.fixture(scope="module")
def orm(pg_server: PgServer) -> Iterator[tuple[str, list[StatementEvidence]]]:
    """The shop, its workload run, and the statements as pg_stat_statements has them."""
    hypopg = ("hypopg",) if pg_server.version < 16 else ()
    dsn = new_database(pg_server, "orm", ("pg_stat_statements", *hypopg))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.encode())
        conn.execute("VACUUM ANALYZE")
        for i in range(20):
            for sql, params in WORKLOAD:
                conn.execute(sql.encode(), params(i)).fetchall()
        rows = conn.execute(
            "SELECT queryid, query, calls, total_exec_time, rows FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query LIKE '%%shop\\_%%' AND query NOT LIKE '%%INSERT%%' "
            "AND query NOT LIKE '%%CREATE%%'").fetchall()
    evidence = [StatementEvidence(1, (int(r[0]),), str(r[0]), str(r[1]), int(r[2]),
                                  float(r[3]), float(r[3]) / int(r[2]), int(r[4]))
                for r in rows]
    assert len(evidence) >= len(WORKLOAD)
    yield dsn, evidence
    drop_database(pg_server, dsn)


def test_orm_statements(orm: tuple[str, list[StatementEvidence]], pg_server: PgServer) -> None:
    dsn, evidence = orm
    mode = "hypopg" if pg_server.version < 16 else "transaction"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        result = recommend(conn, evidence, read_catalog(conn), (),
                           AnalyzerSettings(validation=ValidationSettings(mode=mode)),
                           conn.info.server_version, observed_since=NOW - timedelta(days=8),
                           table_writes={}, window_seconds=3600.0)
    proposed = {(r.table, r.columns) for r in result.proposed if r.kind == "create_index"}
    assert proposed >= {
        ("public.shop_order", ("customer_id", "placed_at")),  # filter + ORDER BY … LIMIT
        ("public.shop_customer", ("upper((email)::text)",)),  # a function around a cast
        ("public.shop_orderline", ("product_id",)),  # the filter, not the indexed join key
    }
    considered = proposed | {(n.table, n.columns) for n in result.not_proposed}
    assert ("public.shop_order", ("state", "placed_at")) in considered  # IN list + range
    skipped = {(n.table, n.columns, n.reason) for n in result.not_proposed}
    assert ("public.shop_orderline", ("order_id",), "covered_by_existing_index") in skipped
    assert ("public.shop_product", ("sku",), "covered_by_existing_index") in skipped
    drops = {r.evidence["index"]: r.evidence["why"] for r in result.proposed
             if r.kind == "drop_index"}
    assert drops.get("public.shop_product_sku") == "duplicate"
    assert "public.shop_product_sku_active" not in drops
