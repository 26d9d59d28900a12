"""`pgarchitect demo`: the whole loop on an embedded PostgreSQL 18, one progress line a step.

healthy traffic on three ORM paths → an index dropped → p95 over target (and the burn-rate
alert, where Prometheus and Alertmanager are installed) → an audit through the running
analyzer service → `propose` → the migration applied → traffic → the next audit verifies the
recommendation. Logs go to a file in the demo's directory; every server is stopped at the end,
on an error and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psycopg
from aiohttp import web
from prometheus_client import CollectorRegistry

from pgarchitect.demo.embedded import PgServer, embedded_postgres, free_port
from pgarchitect.demo.stack import (
    Child,
    alertmanager_child,
    analyzer_child,
    monitoring_available,
    prometheus_child,
    wait_ready,
)
from pgarchitect.demo.workload import DEFAULT_PLANT, create_schema
from pgarchitect.dsn import Dsn
from pgarchitect.log import event
from pgarchitect.migrate import migrate
from pgarchitect.table import render_table

log = logging.getLogger("pgarchitect.demo")

TARGET_SECONDS = 0.05  # the ORM paths' p95 target
# Requests a second the reference app is sent: users arrive at the same pace whether the
# database is fast or slow, so the share of slow queries (what the burn-rate alert measures)
# is not diluted by the many more requests a fast phase would fit in.
RATE = 50.0
STEPS = 11
ALERT = "OrmPathLatencyBudgetBurnFast"

# The server writes jsonlog (statement durations for the `app` database), which the demo's
# tailer reads for the server-side column of the ORM-path table.
ORM_JSONLOG = {"logging_collector": "on", "log_destination": "jsonlog", "log_directory": "log",
               "lc_messages": "C"}


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does; the defaults take about a minute on two cores."""

    seconds: float = 8.0  # traffic per phase (healthy, after the drop, after the fix)
    plant_regression: bool = True
    keep_running: bool = False
    verbose: bool = False
    monitoring: bool = True
    users: int = 20_000
    logs: int = 300_000


def _say(text: str = "") -> None:
    print(text, flush=True)


class Progress:
    """Numbered steps; each prints one line with its duration when it is over."""

    def __init__(self) -> None:
        self.number = 0
        self.started = time.monotonic()

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Run a step; the body appends its result to the yielded list (shown after ':')."""
        self.number += 1
        t0 = time.monotonic()
        result: list[str] = []
        log.info(event("demo.step_started", step=self.number, title=title))
        yield result
        seconds = time.monotonic() - t0
        text = f"[{self.number:>2}/{STEPS} {seconds:5.1f}s] {title}"
        _say(text + (": " + "; ".join(result) if result else ""))
        log.info(event("demo.step_finished", step=self.number, seconds=round(seconds, 2)))


# --------------------------------------------------------------------------------------
# ORM-path latency per phase: differences of the histograms' buckets between two moments


Buckets = dict[str, dict[float, float]]


def buckets(registry: CollectorRegistry) -> Buckets:
    """Cumulative pg_orm_query_duration_seconds buckets per orm_path (summed over labels)."""
    from pgarchitect.demo.refapp.traffic import HISTOGRAM

    out: Buckets = {}
    for family in registry.collect():
        if family.name != HISTOGRAM:
            continue
        for s in family.samples:
            if s.name == HISTOGRAM + "_bucket":
                per_le = out.setdefault(s.labels["orm_path"], {})
                le = float(s.labels["le"])
                per_le[le] = per_le.get(le, 0.0) + s.value
    return out


@dataclass(frozen=True)
class PathFigures:
    """One ORM path in one phase: statements observed, p95, share within the target."""

    count: int
    p95: float | None
    within: float | None


def figures(before: Buckets, after: Buckets) -> dict[str, PathFigures]:
    """Per orm_path, what happened between two bucket readings."""
    from pgarchitect.demo.refapp.traffic import histogram_quantile

    out = {}
    for path, per_le in after.items():
        old = before.get(path, {})
        cumulative = sorted((le, n - old.get(le, 0.0)) for le, n in per_le.items())
        total = cumulative[-1][1] if cumulative else 0.0
        within = dict(cumulative).get(TARGET_SECONDS, 0.0)
        out[path] = PathFigures(int(total), histogram_quantile(0.95, cumulative),
                                within / total if total else None)
    return out


def orm_table(sdk: dict[str, PathFigures], jsonlog: dict[str, PathFigures]) -> str:
    """The ORM-path table of one phase (SDK next to the server's jsonlog)."""
    def ms(p: PathFigures | None) -> str:
        return "-" if p is None or p.p95 is None else f"{p.p95 * 1000:.1f}"

    def ratio(p: PathFigures | None) -> str:
        return "-" if p is None or p.within is None else f"{p.within:.1%}"

    rows = []
    for path in sorted(set(sdk) | set(jsonlog)):
        s, j = sdk.get(path), jsonlog.get(path)
        verdict = "-" if s is None or s.p95 is None else (
            "within target" if s.p95 <= TARGET_SECONDS else "OVER TARGET")
        rows.append((path, s.count if s else 0, ms(s), ratio(s), j.count if j else 0, ms(j),
                     verdict))
    return render_table(["orm_path", "SDK statements", "SDK p95 ms", "SDK <= 50 ms",
                         "jsonlog statements", "jsonlog p95 ms", "p95 vs 50 ms"], rows)


def over_target(sdk: dict[str, PathFigures]) -> list[str]:
    """The paths whose p95 (SDK) is over the target."""
    return sorted(p for p, f in sdk.items() if f.p95 is not None and f.p95 > TARGET_SECONDS)


# --------------------------------------------------------------------------------------
# the running stack


@dataclass
class Stack:
    """What runs while the story is told, and where."""

    directory: Path
    server: PgServer
    app_dsn: str
    store_dsn: str
    token: str
    sandbox_dsn: str = ""
    exporter_url: str = ""
    refapp_url: str = ""
    analyzer: Child | None = None
    prometheus: Child | None = None
    alertmanager: Child | None = None
    refapp_registry: CollectorRegistry | None = None
    tailer: Any = None
    tailer_registry: CollectorRegistry | None = None

    def children(self) -> list[Child]:
        return [c for c in (self.prometheus, self.alertmanager, self.analyzer) if c is not None]

    def urls(self) -> list[tuple[str, str]]:
        out = [("exporter", self.exporter_url + "/metrics"),
               ("reference app", self.refapp_url + "/metrics")]
        if self.analyzer is not None:
            out.append(("analyzer API", f"{self.analyzer.url}/admin/database/audits "
                                        f"(Authorization: Bearer {self.token})"))
            out.append(("analyzer metrics", self.analyzer.url + "/metrics"))
        if self.prometheus is not None:
            out.append(("Prometheus", self.prometheus.url + "/alerts"))
        if self.alertmanager is not None:
            out.append(("Alertmanager", self.alertmanager.url + "/#/alerts"))
        out.append(("store", self.store_dsn))
        out.append(("target", self.app_dsn))
        return out


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port in this loop; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _read_jsonlog(stack: Stack) -> Buckets:
    """Read the server's jsonlog up to now (the logging collector writes asynchronously)."""
    if stack.tailer is None or stack.tailer_registry is None:
        return {}
    quiet = 0
    while quiet < 2:
        await asyncio.sleep(0.3)
        quiet = quiet + 1 if await asyncio.to_thread(stack.tailer.poll_once) == 0 else 0
    return buckets(stack.tailer_registry)


async def traffic_phase(stack: Stack, seconds: float, users: int,
                        until: Callable[[], Awaitable[bool]] | None = None, longest: float = 40.0
                        ) -> tuple[dict[str, PathFigures], dict[str, PathFigures], int]:
    """Drive the reference app for `seconds` (and then, with `until`, on until it is true or
    `longest` is over); the phase's figures from the SDK and the jsonlog."""
    from pgarchitect.demo.refapp.traffic import drive

    assert stack.refapp_registry is not None
    sdk0, log0 = buckets(stack.refapp_registry), await _read_jsonlog(stack)
    done = await drive(stack.refapp_url, seconds, users, rate=RATE)
    deadline = time.monotonic() + longest - seconds
    while until is not None and not await until() and time.monotonic() < deadline:
        done += await drive(stack.refapp_url, 1.0, users, rate=RATE)
    sdk1, log1 = buckets(stack.refapp_registry), await _read_jsonlog(stack)
    return figures(sdk0, sdk1), figures(log0, log1), sum(done.values())


# --------------------------------------------------------------------------------------
# the analyzer service's API


class Api:
    """The admin API of the running analyzer service."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session, self.base = session, base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body,
                                        headers=self.headers) as resp:
            return resp.status, await resp.json()

    async def audit(self, within: float = 180.0) -> dict[str, Any]:
        """POST run-audit, then poll the audit until it is over; returns its report."""
        status, doc = await self.call("POST", "/admin/database/run-audit", {"target": "app"})
        if status != 202:
            raise RuntimeError(f"run-audit answered {status}: {doc}")
        audit_id = doc["audit_id"]
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status, doc = await self.call("GET", f"/admin/database/audits/{audit_id}")
            if status == 200 and isinstance(doc.get("regressions"), list):  # the report
                return dict(doc)
            if status == 200 and doc.get("status") == "failed":
                raise RuntimeError(f"audit {audit_id} failed: {doc.get('error')}")
            await asyncio.sleep(0.3)
        raise RuntimeError(f"audit {audit_id} did not finish within {within:.0f}s")


def _short(text: object, width: int = 64) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _num(value: object, spec: str) -> str:
    """A figure of the report formatted, or "-" where the report has none."""
    return "-" if not isinstance(value, int | float) else format(value, spec)


def show_report(report: dict[str, Any]) -> None:
    """The parts of an audit report the story is about."""
    w = report.get("windows") or {}
    _say(f"     audit {report['audit_id']}: {report['statements_analyzed']} statements, "
         f"windows: {w.get('mode')} ({_short(w.get('note') or '', 100)})")
    if report["regressions"]:
        _say(render_table(
            ["cluster", "queryid", "calls", "before ms", "now ms", "ratio", "query"],
            [(r.get("cluster_id"), r["queryid"], r["calls"], round(r["baseline_mean_ms"], 2),
              round(r["current_mean_ms"], 2), round(r["ratio"], 1), _short(r["query"], 56))
             for r in report["regressions"]]))
    for c in report["clusters"]:
        cause = c.get("cause")
        _say(f"     cluster {c['cluster_id']}: {len(c['queryids'])} statements on "
             f"{', '.join(c['tables'])}")
        if cause:
            _say(f"       cause: {cause['kind']}: index {cause['object']} was dropped at "
                 f"{cause['at']}" if cause["kind"] == "index_dropped" else
                 f"       cause: {cause['kind']} {cause['object']} at {cause['at']}")
    for r in (report.get("recommendations") or []):
        _say(f"     recommendation {r['id']} ({r['status']}): {r['ddl']}")
        if r.get("estimated_cost_before") is None:
            continue
        _say(f"       estimated cost {_num(r.get('estimated_cost_before'), '.0f')} → "
             f"{_num(r.get('estimated_cost_after'), '.0f')} planner units "
             f"({_num(r.get('estimated_improvement'), '.1%')} less), confidence "
             f"{_num(r.get('confidence'), '.2f')}, validated by {r.get('validated_by')}")
    for n in (report.get("not_proposed") or []):
        _say(f"     not proposed: {n['kind']} {n.get('table')} {n.get('columns')}: {n['reason']}")


# --------------------------------------------------------------------------------------
# the story


def _setup_logging(directory: Path, verbose: bool) -> Path:
    """Log lines go to demo.log; to the console as well only with --verbose."""
    path = directory / "demo.log"
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    console = [h for h in root.handlers if not isinstance(h, logging.FileHandler)]
    if console:
        handler.setFormatter(console[0].formatter)
    root.handlers[:] = [handler, *(console if verbose else [])]
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return path


def run_demo(options: DemoOptions) -> int:
    """Run the demo end to end; returns the exit code."""
    directory = Path(tempfile.mkdtemp(prefix="pgarchitect-demo-"))
    log_path = _setup_logging(directory, options.verbose)
    _say(f"pgarchitect demo — logs in {log_path} (console log lines with --verbose)")
    progress = Progress()
    try:
        with contextlib.ExitStack() as servers:
            with progress.step("start an embedded PostgreSQL 18 and the store") as out:
                server = servers.enter_context(embedded_postgres(18, settings=ORM_JSONLOG))
                app_dsn = server.create_database("app", extensions=("pg_stat_statements",))
                store_dsn = server.create_database("pgarchitect")
                applied = migrate(Dsn(store_dsn))
                server.execute("ALTER DATABASE app SET log_min_duration_statement = 0")
                out.append(f"127.0.0.1:{server.port} (data in {server.directory}); "
                           f"store migrations {', '.join(applied)}")
            stack = Stack(directory, server, app_dsn, store_dsn, secrets.token_urlsafe(24))
            try:
                asyncio.run(_story(stack, options, progress))
            finally:
                # Again, now that no thread can start one any more (a Ctrl-C while the
                # children were starting cancels the story before its thread is done).
                for child in stack.children():
                    child.stop()
        _say(f"Done in {time.monotonic() - progress.started:.0f}s; every server is stopped. "
             f"Logs and the proposal are in {directory}")
        return 0
    except RuntimeError as exc:
        log.error(event("demo.failed", error=str(exc)))
        print(f"pgarchitect: demo failed: {exc} (logs in {log_path})", file=sys.stderr)
        return 1


async def _story(stack: Stack, options: DemoOptions, progress: Progress) -> None:
    from exporter.app import make_app as exporter_app
    from exporter.logtail import LogTailer
    from pgarchitect.config import load_settings
    from pgarchitect.demo.refapp.app import RefAppOptions
    from pgarchitect.demo.refapp.app import make_app as refapp_app
    from pgarchitect.demo.refapp.traffic import demo_tailer_settings

    conn = await asyncpg.connect(stack.app_dsn)
    try:
        t0 = time.monotonic()
        await create_schema(conn, users=options.users, logs=options.logs)
        log.info(event("demo.data_loaded", seconds=round(time.monotonic() - t0, 2)))
    finally:
        await conn.close()
    # The validation sandbox: a copy of `app` (schema, data, statistics) made while nothing
    # is connected to it, kept in step with the target's schema by the steps below.
    await asyncio.to_thread(stack.server.execute, 'CREATE DATABASE sandbox TEMPLATE app')
    stack.sandbox_dsn = stack.server.dsn("sandbox")

    exporter_settings = load_settings(None, {"targets": [{"name": "app", "dsn": stack.app_dsn}],
                                             "exporter": {"min_refresh_interval": "1s"}}, {})
    stack.refapp_registry = CollectorRegistry()
    stack.tailer_registry = CollectorRegistry()
    stack.tailer = LogTailer(demo_tailer_settings(stack.server.datadir / "log"),
                             stack.tailer_registry)
    stack.tailer.poll_once()  # from the end of the log on
    try:
        async with contextlib.AsyncExitStack() as running, aiohttp.ClientSession() as session:
            with progress.step("start the exporter, the reference app, the analyzer service"
                               + (", Prometheus and Alertmanager" if options.monitoring else "")
                               ) as out:
                stack.exporter_url = await running.enter_async_context(
                    serving(exporter_app(exporter_settings)))
                stack.refapp_url = await running.enter_async_context(serving(refapp_app(
                    RefAppOptions(stack.app_dsn), stack.refapp_registry)))
                out.append(await asyncio.to_thread(_start_children, stack, options))
            api = Api(session, stack.analyzer.url if stack.analyzer else "", stack.token)
            await _tell(stack, options, progress, api, session)
            if options.keep_running:
                _say("")
                _say("Everything keeps running:")
                _say(render_table(["what", "where"], stack.urls()))
                _say("Ctrl-C stops it all.")
                await asyncio.Event().wait()
    finally:
        for child in stack.children():
            child.stop()
        for data in (stack.directory / "prometheus" / "data",
                     stack.directory / "alertmanager" / "data"):
            shutil.rmtree(data, ignore_errors=True)


def _start_children(stack: Stack, options: DemoOptions) -> str:
    """Start the analyzer service (and Prometheus, Alertmanager); wait until they are ready."""
    port = free_port()
    why_not = monitoring_available() if options.monitoring else "--no-monitoring"
    am_port, prom_port = free_port(), free_port()
    config: dict[str, Any] = {
        "targets": [{"name": "app", "dsn": stack.app_dsn}],
        "store": {"dsn": stack.store_dsn},
        # A snapshot every 2 s instead of 5 min, and verification after 100 calls instead of
        # 200: the demo's phases last seconds (README, "The demo").
        "analyzer": {"listen": f"127.0.0.1:{port}", "snapshot_interval": "2s",
                     "verification": {"min_calls": 100},
                     "validation": {"mode": "sandbox", "sandbox_dsn": stack.sandbox_dsn}},
    }
    if why_not is None:
        config["analyzer"]["alertmanager_url"] = f"http://127.0.0.1:{am_port}"
    stack.analyzer = analyzer_child(stack.directory, config, port, stack.token).start()
    if why_not is None:
        stack.alertmanager = alertmanager_child(stack.directory, am_port).start()
        stack.prometheus = prometheus_child(stack.directory, prom_port, {
            "pgarchitect-exporter": [stack.exporter_url.removeprefix("http://")],
            "pgarchitect-refapp": [stack.refapp_url.removeprefix("http://")],
            "pgarchitect-analyzer": [f"127.0.0.1:{port}"],
        }, am_port).start()
        wait_ready(stack.alertmanager, "/-/ready")
        wait_ready(stack.prometheus, "/-/ready")
    wait_ready(stack.analyzer, "/readyz")
    parts = [f"analyzer API {stack.analyzer.url} (token generated for this run)"]
    if stack.prometheus is not None:
        parts.append(f"Prometheus {stack.prometheus.url}")
    else:
        parts.append(f"no Prometheus / Alertmanager: {why_not}")
    return ", ".join(parts)


async def _alert_state(session: aiohttp.ClientSession, stack: Stack) -> tuple[list[str], bool]:
    """Paths for which Prometheus fires the burn-rate alert; whether Alertmanager has it."""
    assert stack.prometheus is not None and stack.alertmanager is not None
    async with session.get(stack.prometheus.url + "/api/v1/alerts") as resp:
        alerts = (await resp.json())["data"]["alerts"]
    firing = sorted(a["labels"].get("orm_path", "?") for a in alerts
                    if a["labels"]["alertname"] == ALERT and a["state"] == "firing")
    async with session.get(stack.alertmanager.url + "/api/v2/alerts") as resp:
        received = any(a["labels"].get("alertname") == ALERT for a in await resp.json())
    return firing, received


async def _alert_fired(session: aiohttp.ClientSession, stack: Stack) -> bool:
    firing, received = await _alert_state(session, stack)
    return bool(firing) and received


async def _alert_line(session: aiohttp.ClientSession, stack: Stack) -> str:
    firing, received = await _alert_state(session, stack)
    if firing and received:
        return (f"{ALERT} firing in Prometheus for orm_path {', '.join(firing)} and "
                "received by Alertmanager")
    assert stack.prometheus is not None
    return (f"{ALERT} not firing yet (firing: {', '.join(firing) or 'none'}, in Alertmanager: "
            f"{'yes' if received else 'no'}; see {stack.prometheus.url}/alerts)")


def _footnote() -> None:
    _say("     SDK: statements the app's driver hooks timed (client side: one per query the app\n"
         "     sent). jsonlog: statements the server logged for the path's application_name\n"
         "     (server side, transaction control such as BEGIN/COMMIT included). p95 from the\n"
         "     buckets of this phase only, as histogram_quantile computes it.")


async def _tell(stack: Stack, options: DemoOptions, progress: Progress, api: Api,
                session: aiohttp.ClientSession) -> None:
    seconds, users = options.seconds, options.users
    with progress.step(f"healthy traffic on the three ORM paths ({seconds:.0f}s)") as out:
        sdk, jsonlog, n = await traffic_phase(stack, seconds, users)
        slow = over_target(sdk)
        out.append(f"{n:,} requests; " + (f"p95 over 50 ms on {', '.join(slow)}" if slow
                                          else "every path's p95 within the 50 ms target"))
    _say(orm_table(sdk, jsonlog))
    _footnote()

    plant = DEFAULT_PLANT if options.plant_regression else ()
    with progress.step("plant a regression") as out:
        for name in plant:
            for dbname in ("app", "sandbox"):
                await asyncio.to_thread(stack.server.execute, f'DROP INDEX "{name}"', dbname)
        out.append(f"dropped index {', '.join(plant)} (on the validation sandbox too)" if plant
                   else "nothing (--no-regression)")

    title = f"traffic after the drop ({seconds:.0f}s"
    title += ", then on until the burn-rate alert fires)" if stack.prometheus else ")"
    with progress.step(title) as out:
        until = (lambda: _alert_fired(session, stack)) if stack.prometheus else None
        sdk, jsonlog, n = await traffic_phase(stack, seconds, users, until)
        slow = over_target(sdk)
        out.append(f"{n:,} requests; " + (f"p95 over 50 ms on {', '.join(slow)}" if slow
                                          else "every path's p95 still within target"))
        if stack.prometheus is not None:
            out.append(await _alert_line(session, stack))
    _say(orm_table(sdk, jsonlog))

    with progress.step("audit through the analyzer service (POST /admin/database/run-audit)"
                       ) as out:
        report = await api.audit()
        recs = [r for r in (report.get("recommendations") or []) if r["kind"] == "create_index"]
        causes = [c["cause"] for c in report["clusters"] if c.get("cause")]
        out.append(f"audit {report['audit_id']}: {len(report['regressions'])} regressions in "
                   f"{len(report['clusters'])} clusters, {len(causes)} with a cause, "
                   f"{len(recs)} index recommendation(s)")
    show_report(report)

    rec = recs[0] if recs else None
    proposal = stack.directory / "proposal"
    with progress.step("propose the recommendation as a migration and a PR text") as out:
        if rec is None:
            out.append("the recommendation step found nothing to propose; nothing to write")
        else:
            out.append(await asyncio.to_thread(_propose, stack, rec["id"], proposal))
    if rec is not None:
        sql = next(proposal.glob("*.sql")).read_text().splitlines()
        title = next(proposal.glob("*.md")).read_text().splitlines()[0]
        _say(f"     migration: {next(ln for ln in sql if ln and not ln.startswith('--'))}")
        _say(f"     PR text:   {title.lstrip('# ')}")

    with progress.step("apply the migration to the demo's own database") as out:
        if rec is None:
            ddl = next((c["definition"] for c in causes if c.get("definition")), None)
            if ddl:
                for dbname in ("app", "sandbox"):
                    await asyncio.to_thread(stack.server.execute, ddl, dbname)
                out.append(f"no recommendation to apply; restored the dropped index from the "
                           f"cause's definition instead: {ddl}")
            else:
                out.append("no recommendation and no dropped index to restore")
        else:
            sql_file = next(proposal.glob("*.sql"))
            for dsn in (stack.app_dsn, stack.sandbox_dsn):
                await asyncio.to_thread(_apply, dsn, sql_file)
            status, doc = await api.call("POST", f"/admin/database/recommendations/{rec['id']}"
                                         "/status", {"status": "applied",
                                                     "note": "applied by pgarchitect demo"})
            if status == 200:
                out.append(f"ran {sql_file.name}; recommendation {rec['id']} is now "
                           f"{doc['status']} (recorded through the API)")
            else:  # the service's snapshot saw the new index first and recorded it itself
                _, doc = await api.call("GET", f"/admin/database/recommendations/{rec['id']}")
                out.append(f"ran {sql_file.name}; recommendation {rec['id']} is now "
                           f"{doc.get('status')} (the analyzer's snapshot saw the index)")

    with progress.step(f"traffic after the fix ({seconds:.0f}s)") as out:
        sdk, jsonlog, n = await traffic_phase(stack, seconds, users)
        slow = over_target(sdk)
        out.append(f"{n:,} requests; " + (f"p95 still over 50 ms on {', '.join(slow)}" if slow
                                          else "every path's p95 back within the 50 ms target"))
    _say(orm_table(sdk, jsonlog))

    with progress.step("the next audit verifies the recommendation") as out:
        from pgarchitect.demo.refapp.traffic import drive

        report = await api.audit()
        mine = [v for v in (report.get("verifications") or []) if rec and v["id"] == rec["id"]]
        for _ in range(3):  # pending until enough calls after the change: traffic, again
            if not mine or mine[0]["status"] != "pending":
                break
            await drive(stack.refapp_url, seconds / 2, users, rate=RATE)
            report = await api.audit()
            mine = [v for v in (report.get("verifications") or []) if rec and v["id"] == rec["id"]]
        if mine:
            v = mine[0]
            out.append(f"recommendation {v['id']} {v['status']}: "
                       f"{_num(v.get('before_mean_ms'), '.2f')} ms → "
                       f"{_num(v.get('after_mean_ms'), '.2f')} ms per call over "
                       f"{_num(v.get('calls_after'), ',')} calls after it was applied "
                       f"(p = {_num(v.get('p_value'), '.1e')})")
        else:
            out.append(f"audit {report['audit_id']}: {len(report['regressions'])} regressions; "
                       + ("nothing to verify (no recommendation was applied)" if rec is None
                          else f"no verification of recommendation {rec['id']} in the report"))

    with progress.step("where to look") as out:
        out.append(f"logs and proposal in {stack.directory}")
        if not options.keep_running:
            out.append("--keep-running leaves the stack up and prints every URL")


def _propose(stack: Stack, rec_id: str, out_dir: Path) -> str:
    """`pgarchitect propose ID --out DIR` as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "pgarchitect", "propose", str(rec_id),
                           "--store", stack.store_dsn, "--out", str(out_dir)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"propose exited {proc.returncode}: {proc.stderr.strip()}")
    files = sorted(p.name for p in out_dir.iterdir())
    return f"wrote {', '.join(files)} into {out_dir}"


def _apply(dsn: str, sql_file: Path) -> None:
    """Run the migration as `psql -f` would (outside a transaction: CONCURRENTLY)."""
    with psycopg.connect(dsn, autocommit=True, application_name="demo-dba") as conn:
        conn.execute(sql_file.read_text().encode())
