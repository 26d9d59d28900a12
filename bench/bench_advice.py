"""Applied-advice benchmark (issue 21): on a shop-like workload of its own (bench/advice_shop.py)
on PostgreSQL 15 with hypopg and pg_qualstats, the mean statement time before and after
applying every DDL that pgarchitect's audit proposes, next to pg_qualstats' index advisor and
the planted truth applied the same way, each on its own copy of the same database state, all
in the same run. Figures go to docs/benchmarks.md (section `advice`).

pgarchitect sees what a new user's audit sees: `pgarchitect snapshot` four times, the workload
between them, two of the designed indexes dropped between the last two snapshots (the others
never created), then `pgarchitect audit --json` with the defaults (store on PostgreSQL 18 with
pgvector). The peer gets the same workload phase with pg_qualstats sampling every statement,
then `pg_qualstats_index_advisor()` with its defaults."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import advice_shop as shop
from bench.advice_measure import (
    Index,
    Phase,
    apply,
    counters,
    diff,
    duplicates,
    indexes,
    overlapping,
)
from bench.report import write_section
from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 30  # rounds of the statement mix per phase (each statement 1-3 times a round)
EXTENSIONS = ("pg_stat_statements", "hypopg", "pg_qualstats")
# Every statement sampled by pg_qualstats (its default samples 1 / max_connections).
SERVER = {"pg_qualstats.sample_rate": "1"}


@dataclass
class Method:
    """One method's run on its own copy: the workload before and after its DDL."""

    name: str
    before: Phase
    after: Phase
    created: list[Index]
    dropped: list[Index]
    applied: list[str]
    failed: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        """Proposed DDL statements that repeat an earlier one word for word."""
        ddl = self.applied + self.failed_ddl
        return len(ddl) - len(set(ddl))

    @property
    def failed_ddl(self) -> list[str]:
        return [f.split(": ", 1)[0] for f in self.failed]

    @property
    def change(self) -> float:
        return self.after.mean_ms / self.before.mean_ms - 1 if self.before.mean_ms else 0.0


def _copy(pg: PgServer, name: str) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE shop_template").format(
            sql.Identifier(name)))
    return pg.dsn(name)


def _phase(dsn: str, seed: int) -> Phase:
    start = counters(dsn)
    shop.run(dsn, ROUNDS, seed)
    return diff(start, counters(dsn))


def _cli(*argv: str) -> str:
    """`pgarchitect ARGV` as a user runs it (its own process, no PGARCHITECT_* settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGARCHITECT_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "pgarchitect", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"pgarchitect {argv[0]} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _apply_and_measure(name: str, dsn: str, before: Phase, ddl: Sequence[str]) -> Method:
    """Apply `ddl` as given, then the same workload phase again."""
    inventory = indexes(dsn)
    applied, failed = apply(dsn, ddl)
    now = indexes(dsn)
    created = [i for o, i in now.items() if o not in inventory]
    dropped = [i for o, i in inventory.items() if o not in now]
    return Method(name, before, _phase(dsn, seed=4), created, dropped, applied, failed)


def run_pgarchitect(pg: PgServer, store: str) -> Method:
    """Four snapshots with the workload between them, the planted drop before the last
    phase, one audit with the defaults, every proposed DDL applied."""
    dsn = _copy(pg, "shop_pgarchitect")
    target = ["--target", f"shop={dsn}", "--store", store]
    _cli("snapshot", *target)
    for seed in (1, 2):
        shop.run(dsn, ROUNDS, seed)
        _cli("snapshot", *target)
    shop.drop_planted(dsn)
    before = _phase(dsn, seed=3)
    _cli("snapshot", *target)
    t0 = time.perf_counter()
    report: dict[str, Any] = json.loads(_cli("audit", "--json", *target))
    took = time.perf_counter() - t0
    recs = report.get("recommendations", [])
    method = _apply_and_measure("pgarchitect audit", dsn, before,
                                [str(r["ddl"]) for r in recs if r.get("ddl")])
    kinds = collections.Counter(str(r["kind"]) for r in recs)
    reasons = collections.Counter(str(n["reason"]) for n in report.get("not_proposed", []))
    causes = [c["cause"]["object"] for c in report.get("clusters", []) if c.get("cause")
              and c["cause"].get("kind") == "index_dropped"]
    method.notes += [
        f"audit {took:.1f} s (`pgarchitect audit --json`, validation "
        f"`{report.get('validation', {}).get('method')}`), windows "
        f"`{report.get('windows', {}).get('mode')}`; {len(report.get('regressions', []))} "
        f"regressions in {len(report.get('clusters', []))} clusters, dropped index named as "
        f"cause: {', '.join(sorted(causes)) or 'none'}",
        "proposed: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "nothing"),
        "not proposed: " + (", ".join(f"{k} {n}" for k, n in sorted(reasons.items()))
                            or "nothing"),
    ]
    return method


def run_peer(pg: PgServer) -> Method:
    """pg_qualstats collecting over the same phase, then its advisor's indexes applied."""
    dsn = _copy(pg, "shop_qualstats")
    shop.drop_planted(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_qualstats_reset()")
    before = _phase(dsn, seed=3)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_qualstats_index_advisor()::text").fetchone()
    advice = json.loads(str(row[0])) if row else {}
    method = _apply_and_measure("pg_qualstats_index_advisor()", dsn, before,
                                [str(d) for d in advice.get("indexes") or []])
    method.notes.append(f"{len(advice.get('unoptimised') or [])} quals it reports as "
                        "unoptimisable")
    return method


def run_truth(pg: PgServer) -> Method:
    """The indexes the shop was designed with, all of them."""
    dsn = _copy(pg, "shop_truth")
    shop.drop_planted(dsn)
    before = _phase(dsn, seed=3)
    return _apply_and_measure("planted truth", dsn, before, [t.ddl for t in shop.TRUTH])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fixed(before: float | None, after: float | None) -> str:
    if before is None or after is None or not before:
        return "-"
    change = after / before - 1
    return f"{change * 100:+.0f} %" + (" ✓" if change <= -0.5 else "")


def render(methods: list[Method], loads: tuple[float, float], seconds: float) -> str:
    """The docs/benchmarks.md section."""
    per_round = sum(s.per_round for s in shop.STATEMENTS)
    dropped = [t.name for t in shop.TRUTH if t.dropped]
    lines = [
        "## Applied advice (PostgreSQL 15, shop workload)",
        "",
        f"A shop of its own (`bench/advice_shop.py`): customers {shop.CUSTOMERS:,}, products "
        f"{shop.PRODUCTS:,}, orders {shop.ORDERS:,}, order_items {shop.ITEMS:,}, sessions "
        f"{shop.SESSIONS:,}, events {shop.EVENTS:,} rows; {len(shop.STATEMENTS)} statements "
        f"(lookups, recent-time ranges, joins, ORDER BY … LIMIT, a status filter, a LIKE "
        f"prefix, inserts and updates), {per_round} per round in a shuffled order, "
        f"{ROUNDS} rounds per phase, through psycopg's extended protocol (prepared after 5 "
        f"executions) with varied parameters, as a role of their own. The planted truth is "
        f"the {len(shop.TRUTH)} indexes it was designed with: {' and '.join(dropped)} exist "
        f"for the first two phases and are dropped before the third (between the 3rd and 4th "
        f"of 4 `pgarchitect snapshot`s), the other {len(shop.TRUTH) - len(dropped)} are "
        f"never created. Each method runs on its own copy of the same database (`CREATE "
        f"DATABASE … TEMPLATE`), in the state after the drop; *before* is that state's phase, "
        f"*after* the same phase again once the method's DDL is applied exactly as proposed "
        f"(pgarchitect: every `recommendations[].ddl`; pg_qualstats: every statement of "
        f"`pg_qualstats_index_advisor()`'s `indexes`, its defaults, every statement sampled). "
        f"Mean = the application's statements' total execution time / calls in "
        f"pg_stat_statements (counters diffed around the phase). *Overlapping*: created "
        f"indexes another created index makes redundant (same table, key columns equal or a "
        f"prefix); *duplicates*: the same table and key columns twice; both count a proposed DDL "
        f"that repeats an earlier one word for word (it fails: the name exists).",
        "",
        "| method | indexes created | dropped | overlapping | duplicates | mean ms before | "
        "mean ms after | change |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        lines.append(
            f"| {m.name} | {len(m.created)} | {len(m.dropped)} | "
            f"{overlapping(m.created) + m.repeats} | {duplicates(m.created) + m.repeats} | "
            f"{m.before.mean_ms:.3f} | {m.after.mean_ms:.3f} | "
            f"{m.change * 100:+.1f} % |")
    by = {m.name: m for m in methods}
    lines += ["", "Bar (issue 21): better than the peer; goal <= -85 %, 0 overlapping.", ""]
    for m in methods:
        lines.append(f"- **{m.name}**: " + "; ".join(
            [*m.notes, "created: " + (", ".join(f"`{i.definition}`" for i in m.created)
                                      or "none")]
            + ([f"dropped: {', '.join(f'`{i.definition}`' for i in m.dropped)}"]
               if m.dropped else [])
            + ([f"failed: {'; '.join(m.failed)}"] if m.failed else [])))
    names = list(by)
    lines += ["", "Per statement, mean ms before → after (✓: at least halved):", "",
              "| statement | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for s in shop.STATEMENTS:
        cells = []
        for m in methods:
            b, a = m.before.statement_mean(s.name), m.after.statement_mean(s.name)
            cells.append(f"{_ms(b)} → {_ms(a)} ({_fixed(b, a)})")
        lines.append(f"| `{s.name}` | " + " | ".join(cells) + " |")
    lines += ["", f"The whole run took {seconds:.0f} s. Load average (1 min) of the shared "
              f"machine: {loads[0]:.1f} before, {loads[1]:.1f} after; the phases run one "
              "after another, so the methods' figures share the machine's state only roughly."]
    return "\n".join(lines)


def main() -> None:
    """Build the shop, run the three methods, write the docs/benchmarks.md section."""
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    with embedded_postgres(15, settings=SERVER) as pg, embedded_postgres(18) as store_pg:
        pg.execute(f"CREATE ROLE {shop.APP_ROLE} LOGIN")
        shop.build(pg.create_database("shop_template", extensions=EXTENSIONS))
        store = store_pg.create_database("store")
        migrate(Dsn(store))
        methods = [run_pgarchitect(pg, store), run_peer(pg), run_truth(pg)]
    text = render(methods, (load0, os.getloadavg()[0]), time.perf_counter() - t0)
    print(text)
    write_section("advice", text)


if __name__ == "__main__":
    main()
