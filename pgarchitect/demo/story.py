"""`pgarchitect demo`: an embedded PostgreSQL 18, a workload with a planted regression, and
what pgarchitect makes of it. Leaves no server running, also on Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import psycopg

from pgarchitect.db import mark
from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.demo.workload import DEFAULT_PLANT, create_schema, run_workload
from pgarchitect.dsn import Dsn
from pgarchitect.log import event
from pgarchitect.migrate import migrate
from pgarchitect.table import render_table

log = logging.getLogger("pgarchitect.demo")

TOP_STATEMENTS = mark("""
SELECT s.calls, s.total_exec_time, s.mean_exec_time, s.rows, s.query
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = %s AND strpos(s.query, '/* pgarchitect */') = 0
  AND s.toplevel AND s.queryid IS NOT NULL
ORDER BY s.total_exec_time DESC
LIMIT %s
""")


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults take about half a minute."""

    seconds: float = 20.0
    plant_regression: bool = True
    top: int = 10
    users: int = 20_000
    logs: int = 300_000


def _say(text: str = "") -> None:
    print(text, flush=True)


def top_statements(dsn: str, datname: str, limit: int) -> list[tuple[object, ...]]:
    """The statements with the highest total time, the tool's own left out."""
    with psycopg.connect(dsn, application_name="pgarchitect-demo") as conn:
        return conn.execute(TOP_STATEMENTS, (datname, limit)).fetchall()


def _short(query: object, width: int = 72) -> str:
    text = " ".join(str(query).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# Step "ORM paths": the server writes jsonlog (statement durations are switched on for the
# `app` database only during that step), the reference app's traffic runs in-process.
ORM_JSONLOG = {"logging_collector": "on", "log_destination": "jsonlog", "log_directory": "log",
               "lc_messages": "C"}


def orm_paths_step(server: PgServer, app_dsn: str, options: DemoOptions) -> None:
    """Run the reference app's traffic; show per-path p95 from its SDK and from the jsonlog."""
    from pgarchitect.demo.refapp.traffic import run_traffic

    seconds = max(3.0, min(10.0, options.seconds / 3))
    server.execute("ALTER DATABASE app SET log_min_duration_statement = 0")
    _say(f"ORM paths: {seconds:.0f}s of reference-app traffic (pgarchitect/demo/refapp: "
         "orm = SQLAlchemy, thin = asyncpg, analytics = psycopg) …")
    report = asyncio.run(run_traffic(app_dsn, seconds, options.users,
                                     jsonlog=server.datadir / "log"))
    server.execute("ALTER DATABASE app RESET log_min_duration_statement")
    _say(f"  requests: {', '.join(f'{k}: {v}' for k, v in sorted(report.requests.items()))}")
    server_side = {p.orm_path: p for p in report.server}

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f}"

    rows = []
    for p in report.app:
        s = server_side.get(p.orm_path)
        rows.append((p.orm_path, p.count, ms(p.p95),
                     "-" if p.slo_ratio is None else f"{p.slo_ratio:.1%}",
                     s.count if s else 0, ms(s.p95) if s else "-"))
    _say(render_table(["orm_path", "statements (SDK)", "p95 ms (SDK)", "<= 50 ms",
                       "statements (jsonlog)", "p95 ms (jsonlog)"], rows))
    _say("  (p95 from pg_orm_query_duration_seconds buckets, as histogram_quantile computes it)")
    _say()


def _demo_snapshot(app_dsn: str, store_dsn: str) -> int:
    """Analyzer step: one snapshot of the app database into the store; returns its id."""
    from analyzer.snapshots import repository
    from analyzer.snapshots.source import StatementSource, connect_target
    from analyzer.snapshots.take import take_snapshot
    from pgarchitect.config import AnalyzerSettings

    settings = AnalyzerSettings()
    with connect_target(Dsn(app_dsn), "target app", settings) as target, \
            repository.connect_store(Dsn(store_dsn)) as store:
        return take_snapshot(StatementSource(target), store, "app", settings.retention).snapshot.id


def _demo_audit_before(app_dsn: str, store_dsn: str) -> int:
    """Analyzer step: the audit before the index drop; returns the snapshot it took."""
    from analyzer.pipeline import run_audit
    from pgarchitect.config import AnalyzerSettings, Target

    result = run_audit(AnalyzerSettings(), Target("app", Dsn(app_dsn)), Dsn(store_dsn))
    _say(f"  audit {result.audit_id} before the drop: {result.statements_analyzed} statements, "
         f"{len(result.regressions)} regressions (plans recorded)")
    assert result.snapshot_id is not None
    return result.snapshot_id


def _demo_audit(app_dsn: str, store_dsn: str, snapshots: list[int]) -> None:
    """Analyzer step: audit the workload, baseline before the plant against after it."""
    from analyzer.analysis.windows import WindowRequest
    from analyzer.pipeline import run_audit
    from analyzer.report import render
    from pgarchitect.config import AnalyzerSettings, Target, ValidationSettings

    baseline_from, plant = snapshots[0], snapshots[-1]
    _say(f"Audit (baseline: snapshots {baseline_from}..{plant} before the index drop; "
         "current: from the drop to now):")
    # The embedded server has no hypopg: candidates are checked by a rolled-back build on the
    # demo's own database (docs/analyzer.md, "Validation").
    settings = AnalyzerSettings(validation=ValidationSettings(mode="transaction"))
    result = run_audit(settings, Target("app", Dsn(app_dsn)), Dsn(store_dsn),
                       WindowRequest(baseline_from, plant, plant, None))
    _say(render(result))


def run_demo(options: DemoOptions) -> int:
    """Run the demo end to end; returns the exit code."""
    started = time.monotonic()
    _say("pgarchitect demo — starting an embedded PostgreSQL 18 …")
    with embedded_postgres(18, settings=ORM_JSONLOG) as server:
        app_dsn = server.create_database("app", extensions=("pg_stat_statements",))
        store_dsn = server.create_database("pgarchitect")
        _say(f"  server:  PostgreSQL 18 on 127.0.0.1:{server.port} (data in {server.directory})")
        applied = migrate(Dsn(store_dsn))
        _say(f"  store:   {store_dsn} — migrations applied: {', '.join(applied) or 'none'}")

        snapshots: list[int] = []

        async def load_and_run() -> None:
            import asyncpg

            conn = await asyncpg.connect(app_dsn)
            try:
                t0 = time.monotonic()
                await create_schema(conn, users=options.users, logs=options.logs)
                _say(f"  data:    {options.users:,} users, {options.logs:,} behavior_logs "
                     f"({time.monotonic() - t0:.1f}s)")
            finally:
                await conn.close()
            snapshots.append(await asyncio.to_thread(_demo_snapshot, app_dsn, store_dsn))
            plant = DEFAULT_PLANT if options.plant_regression else ()
            _say(f"  workload: {options.seconds:.0f}s over api-orm, api-thin, analytics"
                 + (f"; dropping {', '.join(plant)} half-way" if plant else ""))
            async def before_plant() -> None:
                # An audit as the weekly schedule would run it: it also records the plans.
                snapshots.append(await asyncio.to_thread(_demo_audit_before, app_dsn, store_dsn))

            result = await run_workload(app_dsn, options.seconds, plant=plant,
                                        users=options.users, on_plant=before_plant)
            if not plant:  # no plant hook ran: split the workload at its end instead
                snapshots.append(await asyncio.to_thread(_demo_snapshot, app_dsn, store_dsn))
            total = sum(result.counts.values())
            _say(f"  ran {total:,} statements ({total / result.seconds:,.0f}/s), "
                 f"{sum(result.errors.values())} errors")

        asyncio.run(load_and_run())
        rows = top_statements(app_dsn, "app", options.top)
        _say()
        _say(f"Top {len(rows)} statements by total time (pg_stat_statements):")
        _say(render_table(
            ["calls", "total ms", "mean ms", "rows", "query"],
            [(r[0], r[1], r[2], r[3], _short(r[4])) for r in rows],
        ))
        _say()
        _demo_audit(app_dsn, store_dsn, snapshots)
        _say()
        # --- exporter (issue 3) ---
        from pgarchitect.demo.exporter_step import demo_step

        demo_step(app_dsn, _say)
        _say()
        # --- ORM paths (issue 4) ---
        orm_paths_step(server, app_dsn, options)
        log.info(event("demo.finished", seconds=round(time.monotonic() - started, 1)))
    _say(f"Done in {time.monotonic() - started:.0f}s; the embedded server is stopped.")
    return 0
