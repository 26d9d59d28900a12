"""A small shop for the recommendation tests: missing indexes of four shapes, the negatives
(a low-selectivity column, a column an index already leads, a tiny table), unused and
redundant indexes next to ones that must never be dropped, and hostile identifiers."""

from __future__ import annotations

import itertools

from analyzer.recommend.model import StatementEvidence

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, region text NOT NULL,
                        created_at timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'User' || g || '@Example.com', 'r' || g % 5,
       now() - g * interval '1 hour' FROM generate_series(1, 20000) g;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,
                     status text NOT NULL, total numeric NOT NULL,
                     created_at timestamptz NOT NULL, note text);
INSERT INTO orders SELECT g, 1 + g % 20000, (ARRAY['new','paid','shipped','done'])[1 + g % 4],
       g % 500, now() - g * interval '1 minute', 'n' || g FROM generate_series(1, 100000) g;
CREATE INDEX orders_total_idx ON orders (total);
CREATE UNIQUE INDEX orders_note_key ON orders (note);
CREATE TABLE events (id bigint PRIMARY KEY, session_id int NOT NULL, kind text NOT NULL,
                     created_at timestamptz NOT NULL);
INSERT INTO events SELECT g, 1 + (g * 7919) % 10000, (ARRAY['view','click','buy'])[1 + g % 3],
       now() - g * interval '1 second' FROM generate_series(1, 100000) g;
CREATE TABLE products (id int PRIMARY KEY, sku text NOT NULL, warehouse int NOT NULL,
                       name text NOT NULL, CONSTRAINT products_name_key UNIQUE (name));
INSERT INTO products SELECT g, 'SKU' || g, g % 7, 'product ' || g
       FROM generate_series(1, 20000) g;
CREATE INDEX products_sku_warehouse_idx ON products (sku, warehouse);
CREATE INDEX products_sku_idx ON products (sku);
CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO countries SELECT 'c' || g, 'Country ' || g FROM generate_series(1, 50) g;
CREATE TABLE carts (id int PRIMARY KEY, qty int NOT NULL) WITH (autovacuum_enabled = off);
INSERT INTO carts SELECT g, 1 FROM generate_series(1, 30000) g;
CREATE SCHEMA "My Shop";
CREATE TABLE "My Shop"."Order Items" ("Id" bigint PRIMARY KEY, "Customer Id" int NOT NULL,
                                     "select" int NOT NULL, "E-Mail" text NOT NULL);
INSERT INTO "My Shop"."Order Items" SELECT g, g % 20000, g % 1000, 'X' || g || '@y'
       FROM generate_series(1, 100000) g;

"""

# Run after VACUUM ANALYZE: every cart row changed, leaving dead rows and stale statistics.
CHURN = "UPDATE carts SET qty = qty + 1"

STATEMENTS = {
    # planted: each needs an index of its own shape
    "fk_join": "SELECT c.email, o.total FROM customers c JOIN orders o ON o.customer_id = c.id "
               "WHERE c.id = $1",
    "filter_sort": "SELECT id, kind FROM events WHERE session_id = $1 "
                   "ORDER BY created_at DESC LIMIT 20",
    "lower_email": "SELECT id FROM customers WHERE lower(email) = $1",
    "status_range": "SELECT count(*) FROM orders WHERE status = $1 "
                    "AND created_at BETWEEN $2 AND $3",
    # negatives
    "low_selectivity": "SELECT count(*) FROM orders WHERE status = $1",
    "led_by_index": "SELECT id, name FROM products WHERE sku = $1",
    "tiny_table": "SELECT code FROM countries WHERE name = $1",
    # hostile identifiers
    "hostile": 'SELECT "Id" FROM "My Shop"."Order Items" WHERE "Customer Id" = $1 '
               'AND "select" = $2',
    "hostile_expr": 'SELECT "Id" FROM "My Shop"."Order Items" WHERE lower("E-Mail") = $1',
}

_ids = itertools.count(1000)


def evidence(name: str, calls: int = 2000, mean_ms: float = 5.0, rows_per_call: float = 3.0,
             regressed: bool = False, **extra: object) -> StatementEvidence:
    """The audit's view of one planted statement."""
    query = STATEMENTS.get(name, name)
    qid = next(_ids)
    return StatementEvidence(
        dbid=1, queryids=(qid,), fingerprint=f"fp-{name}-{qid}", query=query, calls=calls,
        total_ms=calls * mean_ms, mean_ms=mean_ms, rows=int(calls * rows_per_call),
        regressed=regressed, **extra)  # type: ignore[arg-type]
