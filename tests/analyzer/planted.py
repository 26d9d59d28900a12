"""A small application for the analyzer's integration tests: two tables of 200,000 rows, five
statements that depend on two indexes (three on one table, two on the other) and controls
that do not. Dropping the indexes turns index lookups into sequential scans."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.types.numeric import Int2, Int4, Int8

ROWS = 200_000
CUSTOMERS = 10_000
SESSIONS = 10_000

SCHEMA = f"""
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL, status text NOT NULL, amount numeric NOT NULL,
    created_at timestamptz NOT NULL);
INSERT INTO orders (customer_id, status, amount, created_at)
SELECT 1 + g % {CUSTOMERS}, (ARRAY['new','paid','shipped','done'])[1 + g % 4], g % 1000,
       now() - g * interval '1 minute' FROM generate_series(1, {ROWS}) g;
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id integer NOT NULL, kind text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO events (session_id, kind, created_at)
SELECT 1 + (g * 7919) % {SESSIONS}, (ARRAY['view','click','scroll'])[1 + g % 3],
       now() - g * interval '1 second' FROM generate_series(1, {ROWS}) g;
CREATE INDEX events_session_id_idx ON events (session_id);
"""

# name -> (SQL, number of integer key parameters, extra text parameters)
ORDERS_STATEMENTS = {
    "orders_by_customer": "SELECT id, status, amount FROM orders WHERE customer_id = %s",
    "orders_count_status": "SELECT count(*) FROM orders WHERE customer_id = %s AND status = %s",
    "orders_last": "SELECT max(created_at) FROM orders WHERE customer_id = %s",
}
EVENTS_STATEMENTS = {
    "events_by_session": "SELECT id, kind FROM events WHERE session_id = %s",
    "events_count_kind": "SELECT count(*) FROM events WHERE session_id = %s AND kind = %s",
}
CONTROL_STATEMENTS = {
    "order_by_id": "SELECT customer_id, amount FROM orders WHERE id = %s",
    "event_by_id": "SELECT session_id, kind FROM events WHERE id = %s",
}
REGRESSING = {**ORDERS_STATEMENTS, **EVENTS_STATEMENTS}
ALL = {**REGRESSING, **CONTROL_STATEMENTS}
STATUS = ("new", "paid", "shipped", "done")
KINDS = ("view", "click", "scroll")

IntType = type[Int2] | type[Int4] | type[Int8]


def create(dsn: str) -> None:
    """Create and fill the tables and their indexes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.encode())
        conn.execute("VACUUM ANALYZE orders")
        conn.execute("VACUUM ANALYZE events")


def drop_indexes(dsn: str) -> None:
    """Plant the two regressions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX orders_customer_id_idx")
        conn.execute("DROP INDEX events_session_id_idx")


@dataclass(frozen=True)
class Phase:
    """How often each statement runs, and with which integer parameter types."""

    rounds: int = 40
    int_types: Sequence[IntType] = (Int4,)
    statements: Sequence[str] = tuple(ALL)
    seed: int = 1


def run(dsn: str, phase: Phase, application_name: str = "test-app") -> int:
    """Run every statement `rounds` times; returns the number of statements executed."""
    rng = random.Random(phase.seed)
    done = 0
    with psycopg.connect(dsn, autocommit=True, application_name=application_name) as conn:
        for i in range(phase.rounds):
            for name in phase.statements:
                sql = ALL[name]
                wrap = phase.int_types[(i + done) % len(phase.int_types)]
                key = wrap(rng.randint(1, min(CUSTOMERS, SESSIONS)))
                params: tuple[object, ...] = (key,)
                if sql.count("%s") == 2:
                    params += (rng.choice(STATUS if "status =" in sql else KINDS),)
                conn.execute(sql.encode(), params).fetchall()
                done += 1
    return done
