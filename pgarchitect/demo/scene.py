"""What the demo's story runs on and what it knows, as values the steps take and return.

`Run` is what every step may use (options, directory, where servers are entered, the HTTP
session); `Story` is what the steps found so far, frozen: each step returns a new one
(`dataclasses.replace`) in its `Told`, with the line and the details it prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.logtail import LogTailer
from pgarchitect.demo.embedded import PgServer
from pgarchitect.demo.figures import Phase, buckets, figures
from pgarchitect.demo.processes import Child, free_port
from pgarchitect.demo.stack import Children

# Requests a second the reference app is sent: users arrive at the same pace whether the
# database is fast or slow, so the share of slow queries (what the burn-rate alert measures)
# is not diluted by the many more requests a fast phase would fit in.
RATE = 50.0
ALERT = "OrmPathLatencyBudgetBurnFast"


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


@dataclass(frozen=True)
class Run:
    """What every step may use. `servers` closes what the steps start, in reverse order, when
    the story ends, fails or is interrupted."""

    options: DemoOptions
    directory: Path
    servers: contextlib.AsyncExitStack
    session: aiohttp.ClientSession
    token: str


@dataclass(frozen=True)
class Database:
    """The embedded server and its databases (the target `app`, the store, the sandbox)."""

    server: PgServer
    app_dsn: str
    store_dsn: str
    sandbox_dsn: str = ""


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


@dataclass(frozen=True)
class Services:
    """What serves while the story is told: in-process apps and the child processes."""

    exporter_url: str
    refapp_url: str
    refapp_registry: CollectorRegistry
    tailer: LogTailer
    tailer_registry: CollectorRegistry
    children: Children
    api: Api

    @property
    def monitored(self) -> bool:
        """Whether Prometheus and Alertmanager run."""
        return self.children.prometheus is not None


@dataclass(frozen=True)
class Story:
    """What the steps found so far; each field is set by one step."""

    database: Database | None = None
    services: Services | None = None
    report: Mapping[str, Any] | None = None  # the latest audit's report
    recommendation: Mapping[str, Any] | None = None  # the index recommendation followed
    causes: tuple[Mapping[str, Any], ...] = ()
    proposal: Path | None = None  # where `propose` wrote the migration and the PR text

    @property
    def db(self) -> Database:
        if self.database is None:
            raise RuntimeError("the demo's steps are out of order: no database yet")
        return self.database

    @property
    def live(self) -> Services:
        if self.services is None:
            raise RuntimeError("the demo's steps are out of order: nothing serves yet")
        return self.services


@dataclass(frozen=True)
class Told:
    """A step's outcome: its title, what it found (after the ':' of its line), the lines
    printed after that line, and the story with what it added."""

    title: str
    story: Story
    results: tuple[str, ...] = ()
    details: tuple[str, ...] = ()


Step = Callable[[Run, Story], Awaitable[Told]]


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


async def _read_jsonlog(live: Services) -> dict[str, dict[float, float]]:
    """Read the server's jsonlog up to now (the logging collector writes asynchronously)."""
    quiet = 0
    while quiet < 2:
        await asyncio.sleep(0.3)
        quiet = quiet + 1 if await asyncio.to_thread(live.tailer.poll_once) == 0 else 0
    return buckets(live.tailer_registry)


async def traffic_phase(live: Services, seconds: float, users: int,
                        until: Callable[[], Awaitable[bool]] | None = None,
                        longest: float = 40.0) -> Phase:
    """Drive the reference app for `seconds` (and then, with `until`, on until it is true or
    `longest` is over); the phase's figures from the SDK and the jsonlog."""
    from pgarchitect.demo.refapp.traffic import drive

    sdk0, log0 = buckets(live.refapp_registry), await _read_jsonlog(live)
    done = await drive(live.refapp_url, seconds, users, rate=RATE)
    deadline = time.monotonic() + longest - seconds
    while until is not None and not await until() and time.monotonic() < deadline:
        done += await drive(live.refapp_url, 1.0, users, rate=RATE)
    sdk1, log1 = buckets(live.refapp_registry), await _read_jsonlog(live)
    return Phase(figures(sdk0, sdk1), figures(log0, log1), sum(done.values()))


async def alert_state(session: aiohttp.ClientSession, prometheus: Child,
                      alertmanager: Child) -> tuple[list[str], bool]:
    """Paths for which Prometheus fires the burn-rate alert; whether Alertmanager has it."""
    async with session.get(prometheus.url + "/api/v1/alerts") as resp:
        alerts = (await resp.json())["data"]["alerts"]
    firing = sorted(a["labels"].get("orm_path", "?") for a in alerts
                    if a["labels"]["alertname"] == ALERT and a["state"] == "firing")
    async with session.get(alertmanager.url + "/api/v2/alerts") as resp:
        received = any(a["labels"].get("alertname") == ALERT for a in await resp.json())
    return firing, received
