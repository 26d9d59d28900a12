"""Recommendation benchmark: candidates for 5,000 statements on 200 tables, every one
validated, hypopg against a rolled-back transaction on the same PostgreSQL 15 database (and the
transaction path on 18). Figures go to docs/benchmarks.md (section `recommend`); the baseline
is the hypopg run, the cheaper of the two what-if methods."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from analyzer.recommend.engine import recommend
from analyzer.recommend.model import RecommendResult, StatementEvidence
from analyzer.snapshots.catalog import read_catalog
from bench.report import write_section
from pgarchitect.config import AnalyzerSettings, ValidationSettings
from pgarchitect.demo.embedded import embedded_postgres

TABLES = 200
ROWS = 10_000
SHAPES = (
    "a = $1",  # merges with the next into (a, b)
    "a = $1 AND b = $2",
    "b = $1 AND c BETWEEN $2 AND $3",
    "a = $1 ORDER BY c DESC LIMIT 10",
    "lower(d) = $1",
)
SELECTS = ("id", "id, a", "id, b", "id, c", "id, d")  # 5 x 5 = 25 texts per table


def _schema(conn: psycopg.Connection[Any]) -> None:
    for t in range(TABLES):
        conn.execute(
            f"CREATE TABLE t{t} (id int PRIMARY KEY, a int, b int, c timestamptz, d text);"
            f"INSERT INTO t{t} SELECT g, g % 2000, g % 20, now() - g * interval '1 min', "
            f"'U' || g FROM generate_series(1, {ROWS}) g".encode())
    conn.execute("VACUUM ANALYZE")


def statements() -> list[StatementEvidence]:
    """25 statements per table, 5,000 in all, each with its own share of the time."""
    out = []
    n = 0
    for t in range(TABLES):
        for shape in SHAPES:
            for cols in SELECTS:
                n += 1
                calls = 100 + n % 400
                out.append(StatementEvidence(
                    1, (n,), f"fp{n}", f"SELECT {cols} FROM t{t} WHERE {shape}", calls,
                    calls * 2.0, 2.0, calls))
    return out


def _run(dsn: str, mode: str) -> tuple[RecommendResult, float]:
    settings = AnalyzerSettings(validation=ValidationSettings(mode=mode))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = on")
        catalog = read_catalog(conn)
        t0 = time.perf_counter()
        result = recommend(conn, statements(), catalog, (), settings, conn.info.server_version,
                           now=datetime.now(UTC), observed_since=datetime.now(UTC)
                           - timedelta(days=1), table_writes={}, window_seconds=3600.0)
        return result, time.perf_counter() - t0


def _row(label: str, r: RecommendResult, took: float, base: float | None) -> str:
    per = r.validation_seconds / max(r.validations, 1)
    ratio = "baseline" if base is None else f"{per / base:.1f} x hypopg"
    created = sum(1 for p in r.proposed if p.kind == "create_index")
    return (f"| {label} | {took:.1f} s | {r.validations:,} | {r.plans:,} | "
            f"{per * 1000:.1f} ms | {ratio} | {created:,} proposed, "
            f"{len(r.not_proposed):,} not |")


def main() -> None:
    """Run both methods and write the docs/benchmarks.md section."""
    rows = []
    with embedded_postgres(15) as pg:
        dsn = pg.create_database("bench", extensions=("hypopg",))
        with psycopg.connect(dsn, autocommit=True) as conn:
            _schema(conn)
        hypo, took = _run(dsn, "hypopg")
        base = hypo.validation_seconds / max(hypo.validations, 1)
        rows.append(_row("PostgreSQL 15, hypopg", hypo, took, None))
        tx, took = _run(dsn, "transaction")
        rows.append(_row("PostgreSQL 15, transaction", tx, took, base))
    with embedded_postgres(18) as pg:
        dsn = pg.create_database("bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            _schema(conn)
        tx18, took = _run(dsn, "transaction")
        rows.append(_row("PostgreSQL 18, transaction", tx18, took, base))
    lines = [
        "## Recommendations and validation",
        "",
        f"{len(statements()):,} statements on {TABLES} tables of {ROWS:,} rows (25 per table,"
        " five predicate shapes), every candidate validated; `recommend()` alone (candidate "
        "generation, column statistics, plans before and with each index, confidence). Time "
        "per validation includes its plans; the baseline is hypopg's.",
        "",
        "| run | total | validations | plans | per validation | ratio | outcome |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    write_section("recommend", text)


if __name__ == "__main__":
    main()
