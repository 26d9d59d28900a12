"""Executor benchmark: the cost of planning a target's statement text safely (analyzer/explain.py:
parse check, extended protocol, read-only transaction, one pipeline) against the way plans were
sent before (one simple-protocol string: settings, PREPARE, EXPLAIN EXECUTE, DEALLOCATE), on
the same connection, alternating, so that a busy machine slows both alike. Figures go to
docs/benchmarks.md (section `explain`); the baseline is the old way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from analyzer.explain import generic_plan
from bench.report import write_section
from pgarchitect.demo.embedded import embedded_postgres

ROWS = 10_000
TEXTS = [f"SELECT id FROM t WHERE a = $1 AND b > $2 AND c < {n}" for n in range(100)] + [
    f"UPDATE t SET b = $1 WHERE id = $2 AND c <> {n}" for n in range(100)]
ROUNDS = 7


def _old_way(conn: psycopg.Connection[Any], text: str) -> None:
    """The unsafe pre-executor path, for measurement only (trusted texts of this benchmark)."""
    params = ", ".join(["NULL"] * text.count("$"))
    parts = ["SET LOCAL statement_timeout = 5000", "SET LOCAL lock_timeout = 1000",
             "SET LOCAL plan_cache_mode = force_generic_plan",
             f"PREPARE bench_old AS {text}",
             f"EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE bench_old({params})",
             "DEALLOCATE bench_old"]
    cur = conn.execute("; ".join(parts).encode(), prepare=False)
    plan = None
    while True:  # as validation read it: the EXPLAIN's document
        if cur.statusmessage == "EXPLAIN":
            plan = cur.fetchone()
        if not cur.nextset():
            break
    assert plan is not None


def _new_way(conn: psycopg.Connection[Any], text: str) -> None:
    assert generic_plan(conn, text, 5.0, 1.0) is not None


def _per_plan(conn: psycopg.Connection[Any], way: Callable[[psycopg.Connection[Any], str], None]
              ) -> float:
    started = time.perf_counter()
    for text in TEXTS:
        way(conn, text)
    return (time.perf_counter() - started) / len(TEXTS)


def _measure(version: int) -> tuple[float, float]:
    with embedded_postgres(version) as pg:
        dsn = pg.create_database("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b int, c int)")
            conn.execute(f"INSERT INTO t SELECT g, g % 100, g % 7, g FROM generate_series(1, "
                         f"{ROWS}) g".encode())
            conn.execute("VACUUM ANALYZE t")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = on")
            old, new = [], []
            for _ in range(ROUNDS):  # alternating: the machine's load falls on both
                old.append(_per_plan(conn, _old_way))
                new.append(_per_plan(conn, _new_way))
    return sorted(old)[ROUNDS // 2], sorted(new)[ROUNDS // 2]


def main() -> None:
    """Measure on PostgreSQL 15 and 18 and write the docs/benchmarks.md section."""
    rows = []
    for version in (15, 18):
        old, new = _measure(version)
        rows.append(f"| PostgreSQL {version} | {old * 1000:.2f} ms | {new * 1000:.2f} ms | "
                    f"{new / old:.2f} x |")
    text = "\n".join([
        "## Planning a target's statement text",
        "",
        f"{len(TEXTS)} generic plans per round, {ROUNDS} rounds alternating on one connection "
        "(median per plan). Baseline: the text pasted into one simple-protocol string "
        "(settings, PREPARE, EXPLAIN EXECUTE, DEALLOCATE), as before issue 20 -- unsafe with a "
        "planted text. Executor: pglast's check, then the same steps in a read-only "
        "transaction, one extended-protocol command each, queued in one pipeline "
        "(analyzer/explain.py, docs/security.md).",
        "",
        "| server | baseline per plan | executor per plan | ratio |",
        "|---|---|---|---|",
        *rows,
    ])
    print(text)
    write_section("explain", text)


if __name__ == "__main__":
    main()
