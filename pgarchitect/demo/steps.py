"""The demo's steps, in the order the story tells them (`STEPS`).

Each step is `async (Run, Story) -> Told`: it uses what earlier steps found (the `Story`), does
one thing, and returns its title, its one-line result, what it prints below that line, and
the story with what it found. To add a step, write such a function and put it in `STEPS`
where it belongs; the numbering and the count follow from the list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from prometheus_client import CollectorRegistry

from pgarchitect.demo.embedded import embedded_postgres
from pgarchitect.demo.figures import FOOTNOTE
from pgarchitect.demo.processes import die_with_parent
from pgarchitect.demo.scene import (
    ALERT,
    RATE,
    Api,
    Database,
    Run,
    Services,
    Step,
    Story,
    Told,
    alert_state,
    serving,
    traffic_phase,
)
from pgarchitect.demo.stack import start_children, wait_children_ready
from pgarchitect.demo.workload import DEFAULT_PLANT, create_schema
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from pgarchitect.table import render_table

# The server writes jsonlog (statement durations for the `app` database), which the demo's
# tailer reads for the server-side column of the ORM-path table.
ORM_JSONLOG = {"logging_collector": "on", "log_destination": "jsonlog", "log_directory": "log",
               "lc_messages": "C"}


async def start_postgres(run: Run, story: Story) -> Told:
    server = run.servers.enter_context(embedded_postgres(18, settings=ORM_JSONLOG))
    app_dsn = server.create_database("app", extensions=("pg_stat_statements",))
    store_dsn = server.create_database("pgarchitect")
    applied = migrate(Dsn(store_dsn))
    server.execute("ALTER DATABASE app SET log_min_duration_statement = 0")
    return Told("start an embedded PostgreSQL 18 and the store",
                dataclasses.replace(story, database=Database(server, app_dsn, store_dsn)),
                (f"127.0.0.1:{server.port} (data in {server.directory}); "
                 f"store migrations {', '.join(applied)}",))


async def load_data(run: Run, story: Story) -> Told:
    db, options = story.db, run.options
    conn = await asyncpg.connect(db.app_dsn)
    try:
        await create_schema(conn, users=options.users, logs=options.logs)
        # Freshly loaded tables have no statistics: analysed now, so that the audits
        # propose what the story is about and not an ANALYZE of them. The load's row counts
        # are flushed to the cumulative statistics first (at the end of the next statement),
        # or a late flush would count the rows as changed since this ANALYZE.
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("ANALYZE users, behavior_logs")
    finally:
        await conn.close()
    # The validation sandbox: a copy of `app` (schema, data, statistics) made while nothing
    # is connected to it, kept in step with the target's schema by the steps below.
    await asyncio.to_thread(db.server.execute, "CREATE DATABASE sandbox TEMPLATE app")
    return Told(f"load {options.users:,} users and {options.logs:,} behavior logs, analyse them",
                dataclasses.replace(story, database=dataclasses.replace(
                    db, sandbox_dsn=db.server.dsn("sandbox"))),
                ("copied into the validation sandbox (database sandbox)",))


async def start_services(run: Run, story: Story) -> Told:
    from exporter.app import make_app as exporter_app
    from exporter.logtail import LogTailer
    from pgarchitect.config import load_settings
    from pgarchitect.demo.refapp.app import RefAppOptions
    from pgarchitect.demo.refapp.app import make_app as refapp_app
    from pgarchitect.demo.refapp.traffic import demo_tailer_settings

    db = story.db
    refapp_registry, tailer_registry = CollectorRegistry(), CollectorRegistry()
    tailer = LogTailer(demo_tailer_settings(db.server.datadir / "log"), tailer_registry)
    tailer.poll_once()  # from the end of the log on
    exporter_settings = load_settings(None, {"targets": [{"name": "app", "dsn": db.app_dsn}],
                                             "exporter": {"min_refresh_interval": "1s"}}, {})
    exporter_url = await run.servers.enter_async_context(
        serving(exporter_app(exporter_settings)))
    refapp_url = await run.servers.enter_async_context(
        serving(refapp_app(RefAppOptions(db.app_dsn), refapp_registry)))
    children = start_children(
        run.directory, app_dsn=db.app_dsn, store_dsn=db.store_dsn, sandbox_dsn=db.sandbox_dsn,
        scrape={"pgarchitect-exporter": exporter_url.removeprefix("http://"),
                "pgarchitect-refapp": refapp_url.removeprefix("http://")},
        token=run.token, monitoring=run.options.monitoring,
        started=lambda child: run.servers.callback(child.stop))
    for data in (run.directory / "prometheus" / "data", run.directory / "alertmanager" / "data"):
        run.servers.callback(_remove, data)  # after the children stop
    await asyncio.to_thread(wait_children_ready, children)
    live = Services(exporter_url, refapp_url, refapp_registry, tailer, tailer_registry,
                    children, Api(run.session, children.analyzer.url, run.token))
    parts = [f"analyzer API {children.analyzer.url} (token generated for this run)",
             f"Prometheus {children.prometheus.url}" if children.prometheus is not None
             else f"no Prometheus / Alertmanager: {children.why_not}"]
    return Told("start the exporter, the reference app, the analyzer service"
                + (", Prometheus and Alertmanager" if run.options.monitoring else ""),
                dataclasses.replace(story, services=live), (", ".join(parts),))


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


async def healthy_traffic(run: Run, story: Story) -> Told:
    seconds = run.options.seconds
    phase = await traffic_phase(story.live, seconds, run.options.users)
    slow = phase.over_target()
    return Told(f"healthy traffic on the three ORM paths ({seconds:.0f}s)", story,
                (f"{phase.requests:,} requests; " + (
                    f"p95 over 50 ms on {', '.join(slow)}" if slow
                    else "every path's p95 within the 50 ms target"),),
                (phase.table(), FOOTNOTE))


async def plant_regression(run: Run, story: Story) -> Told:
    plant = DEFAULT_PLANT if run.options.plant_regression else ()
    for name in plant:
        for dbname in ("app", "sandbox"):
            await asyncio.to_thread(story.db.server.execute, f'DROP INDEX "{name}"', dbname)
    return Told("plant a regression", story, (
        f"dropped index {', '.join(plant)} (on the validation sandbox too)" if plant
        else "nothing (--no-regression)",))


async def traffic_after_drop(run: Run, story: Story) -> Told:
    seconds, live = run.options.seconds, story.live
    prometheus, alertmanager = live.children.prometheus, live.children.alertmanager

    # What Prometheus and Alertmanager showed while the traffic ran: once it stops, the next
    # rule evaluation may see no requests at all and resolve the alert, so it is not asked
    # again afterwards.
    seen: tuple[list[str], bool] = ([], False)

    async def fired() -> bool:
        nonlocal seen
        assert prometheus is not None and alertmanager is not None
        seen = await alert_state(run.session, prometheus, alertmanager)
        return bool(seen[0]) and seen[1]

    monitored = prometheus is not None and alertmanager is not None
    phase = await traffic_phase(live, seconds, run.options.users, fired if monitored else None)
    slow = phase.over_target()
    results = [f"{phase.requests:,} requests; " + (
        f"p95 over 50 ms on {', '.join(slow)}" if slow
        else "every path's p95 still within target")]
    if prometheus is not None and alertmanager is not None:
        firing, received = seen
        results.append(
            f"{ALERT} firing in Prometheus for orm_path {', '.join(firing)} and received by "
            "Alertmanager" if firing and received else
            f"{ALERT} not firing yet (firing: {', '.join(firing) or 'none'}, in Alertmanager: "
            f"{'yes' if received else 'no'}; see {prometheus.url}/alerts)")
    title = f"traffic after the drop ({seconds:.0f}s"
    title += ", then on until the burn-rate alert fires)" if monitored else ")"
    return Told(title, story, tuple(results), (phase.table(),))


async def audit(run: Run, story: Story) -> Told:
    report = await story.live.api.audit()
    recs = [r for r in (report.get("recommendations") or []) if r["kind"] == "create_index"]
    causes = tuple(c["cause"] for c in report["clusters"] if c.get("cause"))
    return Told("audit through the analyzer service (POST /admin/database/run-audit)",
                dataclasses.replace(story, report=report, causes=causes,
                                    recommendation=recs[0] if recs else None),
                (f"audit {report['audit_id']}: {len(report['regressions'])} regressions in "
                 f"{len(report['clusters'])} clusters, {len(causes)} with a cause, "
                 f"{len(recs)} index recommendation(s)",),
                tuple(report_lines(report)))


async def propose(run: Run, story: Story) -> Told:
    title = "propose the recommendation as a migration and a PR text"
    rec = story.recommendation
    if rec is None:
        return Told(title, story,
                    ("the recommendation step found nothing to propose; nothing to write",))
    proposal = run.directory / "proposal"
    wrote = await asyncio.to_thread(_propose, story.db.store_dsn, rec["id"], proposal)
    sql = next(proposal.glob("*.sql")).read_text().splitlines()
    pr_title = next(proposal.glob("*.md")).read_text().splitlines()[0]
    return Told(title, dataclasses.replace(story, proposal=proposal), (wrote,), (
        f"     migration: {next(ln for ln in sql if ln and not ln.startswith('--'))}",
        f"     PR text:   {pr_title.lstrip('# ')}"))


async def apply_migration(run: Run, story: Story) -> Told:
    title = "apply the migration to the demo's own database"
    rec, db, api = story.recommendation, story.db, story.live.api
    if rec is None or story.proposal is None:
        ddl = next((c["definition"] for c in story.causes if c.get("definition")), None)
        if not ddl:
            return Told(title, story, ("no recommendation and no dropped index to restore",))
        for dbname in ("app", "sandbox"):
            await asyncio.to_thread(db.server.execute, ddl, dbname)
        return Told(title, story, ("no recommendation to apply; restored the dropped index "
                                   f"from the cause's definition instead: {ddl}",))
    sql_file = next(story.proposal.glob("*.sql"))
    for dsn in (db.app_dsn, db.sandbox_dsn):
        await asyncio.to_thread(_apply, dsn, sql_file)
    status, doc = await api.call("POST", f"/admin/database/recommendations/{rec['id']}/status",
                                 {"status": "applied", "note": "applied by pgarchitect demo"})
    if status == 200:
        return Told(title, story, (f"ran {sql_file.name}; recommendation {rec['id']} is now "
                                   f"{doc['status']} (recorded through the API)",))
    # The service's snapshot saw the new index first and recorded it itself.
    _, doc = await api.call("GET", f"/admin/database/recommendations/{rec['id']}")
    return Told(title, story, (f"ran {sql_file.name}; recommendation {rec['id']} is now "
                               f"{doc.get('status')} (the analyzer's snapshot saw the index)",))


async def traffic_after_fix(run: Run, story: Story) -> Told:
    seconds = run.options.seconds
    phase = await traffic_phase(story.live, seconds, run.options.users)
    slow = phase.over_target()
    return Told(f"traffic after the fix ({seconds:.0f}s)", story,
                (f"{phase.requests:,} requests; " + (
                    f"p95 still over 50 ms on {', '.join(slow)}" if slow
                    else "every path's p95 back within the 50 ms target"),),
                (phase.table(),))


async def verify(run: Run, story: Story) -> Told:
    from pgarchitect.demo.refapp.traffic import drive

    rec, live = story.recommendation, story.live
    report = await live.api.audit()

    def mine(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [v for v in (report.get("verifications") or []) if rec and v["id"] == rec["id"]]

    for _ in range(3):  # pending until enough calls after the change: traffic, again
        if not mine(report) or mine(report)[0]["status"] != "pending":
            break
        await drive(live.refapp_url, run.options.seconds / 2, run.options.users, rate=RATE)
        report = await live.api.audit()
    title = "the next audit verifies the recommendation"
    story = dataclasses.replace(story, report=report)
    if mine(report):
        v = mine(report)[0]
        return Told(title, story, (
            f"recommendation {v['id']} {v['status']}: {_num(v.get('before_mean_ms'), '.2f')} ms "
            f"→ {_num(v.get('after_mean_ms'), '.2f')} ms per call over "
            f"{_num(v.get('calls_after'), ',')} calls after it was applied "
            f"(p = {_num(v.get('p_value'), '.1e')})",))
    return Told(title, story, (
        f"audit {report['audit_id']}: {len(report['regressions'])} regressions; "
        + ("nothing to verify (no recommendation was applied)" if rec is None
           else f"no verification of recommendation {rec['id']} in the report"),))


async def audit_page(run: Run, story: Story) -> Told:
    from analyzer.page import write_audit_page
    from analyzer.page.link import MAX_TTL, signed_url

    if story.report is None:
        return Told("the audit as a page", story, ("no audit to show",))
    audit_id = int(story.report["audit_id"])
    path = await asyncio.to_thread(write_audit_page, Dsn(story.db.store_dsn), audit_id,
                                   run.directory / f"audit-{audit_id}.html")
    results = [f"wrote {path} (open it in a browser: self-contained, no network)"]
    if run.options.keep_running:
        # Signed with the run's token; it lasts as long as a link may (the stack keeps running).
        results.append("served by the analyzer at " + signed_url(
            story.live.children.analyzer.url, run.token, audit_id, ttl=MAX_TTL))
    return Told(f"the audit as a page (audit {audit_id}: timelines, causes, before/after)",
                story, tuple(results))


async def ask_about_it(run: Run, story: Story) -> Told:
    from analyzer.ask.cli import ask_and_print

    buffer = io.StringIO()
    answers = await asyncio.to_thread(ask_and_print, Dsn(story.db.store_dsn), out=buffer)
    answered = sum(1 for a in answers if a["answered"])
    return Told("ask two questions about it (`pgarchitect ask`, offline retrieval, read-only)",
                story, (f"{answered} of {len(answers)} answered in SQL over the store",),
                tuple(buffer.getvalue().rstrip().splitlines()))


async def where_to_look(run: Run, story: Story) -> Told:
    results = [f"logs, proposal and audit page in {run.directory}"]
    if not run.options.keep_running:
        results.append("--keep-running leaves the stack up and prints every URL")
    return Told("where to look", story, tuple(results))


STEPS: tuple[Step, ...] = (
    start_postgres, load_data, start_services, healthy_traffic, plant_regression,
    traffic_after_drop, audit, propose, apply_migration, traffic_after_fix, verify,
    audit_page, ask_about_it, where_to_look,
)


def urls(run: Run, story: Story) -> str:
    """The table of everything that runs (for --keep-running)."""
    live, db = story.live, story.db
    children = live.children
    rows = [("exporter", live.exporter_url + "/metrics"),
            ("reference app", live.refapp_url + "/metrics"),
            ("analyzer API", f"{children.analyzer.url}/admin/database/audits "
                             f"(Authorization: Bearer {run.token})"),
            ("analyzer metrics", children.analyzer.url + "/metrics")]
    if children.prometheus is not None:
        rows.append(("Prometheus", children.prometheus.url + "/alerts"))
    if children.alertmanager is not None:
        rows.append(("Alertmanager", children.alertmanager.url + "/#/alerts"))
    rows += [("store", db.store_dsn), ("target", db.app_dsn)]
    return render_table(["what", "where"], rows)


def _short(text: object, width: int = 64) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _num(value: object, spec: str) -> str:
    """A figure of the report formatted, or "-" where the report has none."""
    return "-" if not isinstance(value, int | float) else format(value, spec)


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The parts of an audit report the story is about."""
    w = report.get("windows") or {}
    out = [f"     audit {report['audit_id']}: {report['statements_analyzed']} statements, "
           f"windows: {w.get('mode')} ({_short(w.get('note') or '', 100)})"]
    if report["regressions"]:
        out.append(render_table(
            ["cluster", "queryid", "calls", "before ms", "now ms", "ratio", "query"],
            [(r.get("cluster_id"), r["queryid"], r["calls"], round(r["baseline_mean_ms"], 2),
              round(r["current_mean_ms"], 2), round(r["ratio"], 1), _short(r["query"], 56))
             for r in report["regressions"]]))
    for c in report["clusters"]:
        cause = c.get("cause")
        out.append(f"     cluster {c['cluster_id']}: {len(c['queryids'])} statements on "
                   f"{', '.join(c['tables'])}")
        if cause:
            out.append(f"       cause: {cause['kind']}: index {cause['object']} was dropped at "
                       f"{cause['at']}" if cause["kind"] == "index_dropped" else
                       f"       cause: {cause['kind']} {cause['object']} at {cause['at']}")
    for r in (report.get("recommendations") or []):
        out.append(f"     recommendation {r['id']} ({r['status']}): {r['ddl']}")
        if r.get("estimated_cost_before") is None:
            continue
        out.append(f"       estimated cost {_num(r.get('estimated_cost_before'), '.0f')} → "
                   f"{_num(r.get('estimated_cost_after'), '.0f')} planner units "
                   f"({_num(r.get('estimated_improvement'), '.1%')} less), confidence "
                   f"{_num(r.get('confidence'), '.2f')}, validated by {r.get('validated_by')}")
    for n in (report.get("not_proposed") or []):
        out.append(f"     not proposed: {n['kind']} {n.get('table')} {n.get('columns')}: "
                   f"{n['reason']}")
    return out


def _propose(store_dsn: str, rec_id: str, out_dir: Path) -> str:
    """`pgarchitect propose ID --out DIR` as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "pgarchitect", "propose", str(rec_id),
                           "--store", store_dsn, "--out", str(out_dir)],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=die_with_parent())
    if proc.returncode != 0:
        raise RuntimeError(f"propose exited {proc.returncode}: {proc.stderr.strip()}")
    files = sorted(p.name for p in out_dir.iterdir())
    return f"wrote {', '.join(files)} into {out_dir}"


def _apply(dsn: str, sql_file: Path) -> None:
    """Run the migration as `psql -f` would (outside a transaction: CONCURRENTLY)."""
    with psycopg.connect(dsn, autocommit=True, application_name="demo-dba") as conn:
        conn.execute(sql_file.read_text().encode())
