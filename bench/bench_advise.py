"""`pgarchitect advise` per statement (issue 21): each statement of the shop workload
(bench/advice_shop.py) advised on alone, against PostgreSQL 15 with hypopg, the way a CI job
runs `advise` on a migration's statements. Baseline, in the same run on the same session: one
generic plan of the same statement through the analyzer's executor (analyzer/explain.py), the
least any advisor must do. Figures go to docs/benchmarks.md (section `advise`)."""

from __future__ import annotations

import os
import re
import statistics
import time

import psycopg

from analyzer.advise.inputs import from_arguments
from analyzer.advise.run import advise
from analyzer.explain import generic_plan
from bench import advice_shop as shop
from bench.report import write_section
from pgarchitect.config import AnalyzerSettings
from pgarchitect.demo.embedded import embedded_postgres

RUNS = 5  # each statement advised on this many times (the median is reported)


def as_query(sql: str) -> str:
    """The shop's psycopg placeholders as the server's $n."""
    count = iter(range(1, 100))
    return re.sub(r"%s", lambda _: f"${next(count)}", sql)


def main() -> None:
    """Advise on each shop statement alone; write the section."""
    settings = AnalyzerSettings()
    load0 = os.getloadavg()[0]
    rows: list[tuple[str, float, float, str]] = []
    with embedded_postgres(15) as pg:
        pg.execute(f"CREATE ROLE {shop.APP_ROLE} LOGIN")
        dsn = pg.create_database("shop", extensions=("pg_stat_statements", "hypopg"))
        shop.build(dsn)
        shop.drop_planted(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in shop.STATEMENTS:
                text = as_query(statement.sql)
                stmts = from_arguments([text])
                advised, planned = [], []
                answer = "none"
                result = None
                for _ in range(RUNS):
                    t0 = time.perf_counter()
                    result = advise(conn, stmts, settings)
                    advised.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    generic_plan(conn, text, 10.0, 1.0)
                    planned.append(time.perf_counter() - t0)
                assert result is not None
                index = result.advice[0].index
                if index is not None:
                    answer = f"`{index['ddl']}`"
                rows.append((statement.name, statistics.median(advised) * 1000,
                             statistics.median(planned) * 1000, answer))
    ratios = [a / p for _, a, p, _ in rows if p > 0]
    lines = ["## `advise` per statement (PostgreSQL 15, hypopg, shop statements)", "",
             f"Each of the {len(rows)} statements of the shop workload advised on alone "
             "(`analyzer.advise.run.advise`, what `pgarchitect advise STATEMENT --dsn` runs, "
             f"validation `{settings.validation.mode}`), median of {RUNS}; baseline: one "
             "generic plan of the same statement through `analyzer/explain.py` on the same "
             "session. The shop's two planted indexes are dropped, the never-created ones "
             "absent.", "",
             "| statement | advise ms | one plan ms | advise / plan | index advised |",
             "|---|---|---|---|---|"]
    lines += [f"| `{n}` | {a:.1f} | {p:.2f} | {a / p:.0f}x | {ans} |" for n, a, p, ans in rows]
    lines += ["", f"Median over the statements: {statistics.median(r[1] for r in rows):.1f} ms "
              f"per statement, {statistics.median(ratios):.0f}x one plan. "
              f"{sum(1 for r in rows if r[3] != 'none')} of {len(rows)} statements get an "
              f"index. Load average (1 min): {load0:.1f} before, {os.getloadavg()[0]:.1f} "
              "after."]
    text = "\n".join(lines)
    print(text)
    write_section("advise", text)


if __name__ == "__main__":
    main()
