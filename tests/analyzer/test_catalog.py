"""The catalog reader on real PostgreSQL 15 and 18, and the structural diff between reads."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from analyzer.snapshots.catalog import Catalog, diff, read_catalog
from pgarchitect.demo.embedded import PgServer
from tests.conftest import drop_database, new_database

SCHEMA = """
CREATE TABLE "Order Items" (id bigint PRIMARY KEY, "Customer" int, email text,
                            "select" int UNIQUE, created timestamptz);
CREATE INDEX "Items By Email" ON "Order Items" (lower(email)) INCLUDE ("Customer");
CREATE INDEX items_customer_created ON "Order Items" ("Customer", created DESC)
    WHERE "Customer" > 0;
INSERT INTO "Order Items" SELECT g, g % 10, 'u' || g || '@x', g, now()
    FROM generate_series(1, 100) g;
"""


@pytest.fixture
def db(pg_server: PgServer) -> Iterator[str]:
    dsn = new_database(pg_server, "catalog")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield dsn
    drop_database(pg_server, dsn)


def test_reads_indexes_tables_and_settings(db: str) -> None:
    with psycopg.connect(db) as conn:
        cat = read_catalog(conn)
    by_name = {i.name: i for i in cat.indexes}
    assert set(by_name) == {"Order Items_pkey", "Order Items_select_key", "Items By Email",
                            "items_customer_created"}
    expr = by_name["Items By Email"]
    assert expr.columns == ("lower(email)",)
    assert expr.include == ('"Customer"',)
    assert expr.qualified_table == 'public."Order Items"'
    assert expr.definition.startswith('CREATE INDEX "Items By Email" ON public."Order Items"')
    assert not expr.unique and not expr.constraint and expr.valid
    partial = by_name["items_customer_created"]
    assert partial.columns == ('"Customer"', "created")  # no sort order: see IndexInfo
    assert partial.predicate == '"Customer" > 0'
    assert by_name["Order Items_pkey"].primary and by_name["Order Items_pkey"].constraint
    assert by_name["Order Items_select_key"].unique and by_name["Order Items_select_key"].constraint
    table = cat.table('public."Order Items"')
    assert table is not None and table.inserts == 100 and table.size_bytes > 0
    assert set(cat.settings) >= {"work_mem", "random_page_cost", "enable_seqscan"}
    assert Catalog.from_json(cat.to_json()) == cat


def test_diff_sees_drop_create_analyze_and_settings(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        before = read_catalog(conn)
        conn.execute('DROP INDEX "Items By Email"')
        conn.execute('CREATE INDEX items_created ON "Order Items" (created)')
        conn.execute('ANALYZE "Order Items"')
        conn.execute("SET random_page_cost = 1.1")
        after = read_catalog(conn)
    changes = {(c.kind, c.object) for c in diff(before, after)}
    assert ("index_dropped", 'public."Items By Email"') in changes
    assert ("index_created", "public.items_created") in changes
    assert ("analyzed", 'public."Order Items"') in changes
    assert ("setting_changed", "random_page_cost") in changes
    dropped = next(c for c in diff(before, after) if c.kind == "index_dropped")
    assert dropped.definition is not None and "lower(email)" in dropped.definition
    assert dropped.table == 'public."Order Items"'
    assert diff(after, after) == ()
    assert before.structure() != after.structure()
