"""Run the real monitoring programs for tests: Prometheus, Alertmanager, a webhook sink.

Every program runs on a free loopback port in a temporary directory, writes its log
there, and is stopped by the context manager that started it, also when the test fails.
Missing binaries fail the test (never skip): `make test` installs them. The process runner,
the ports, the readiness check and the monitoring programs' configuration are the demo's
(`pgarchitect.demo.processes`): one harness for both.

Reusable pieces:
- `prometheus(tmp, scrape_jobs, rule_files=..., alertmanager=...)` -> `Prometheus`
- `alertmanager(tmp, config)` -> `Alertmanager`
- `webhook_sink()` -> `WebhookSink` (aiohttp in a thread, collects POSTed notifications)
- `dashboard_queries(path)` -> every panel expression of a dashboard, and
  `substitute(expr)` to turn Grafana variables into plain PromQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from pgarchitect.demo.processes import (
    REPO,
    RULES_DIR,
    alertmanager_child,
    free_port,
    http_ok,
    prometheus_child,
    prometheus_config,
    rules_without_for,
)
from pgarchitect.demo.processes import Child as Process
from tests.waiting import eventually

__all__ = ["REPO", "RULES_DIR", "Process", "free_port", "http_ok", "rules_without_for"]

DASHBOARD_DIR = REPO / "grafana" / "provisioning" / "dashboards"

T = TypeVar("T")


# --------------------------------------------------------------------------------------
# binaries, ports, waiting


def require_binary(name: str, *alternatives: str) -> str:
    """Path of a program on PATH; fails the test (not a skip) when it is missing."""
    path = next(filter(None, (shutil.which(n) for n in (name, *alternatives))), None)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: install the Debian package that provides it "
            "(prometheus: prometheus, promtool; prometheus-alertmanager: "
            "prometheus-alertmanager or alertmanager, amtool; "
            "docker-compose: docker-compose)",
            pytrace=False,
        )
    return path


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something truthy and return that; fail after timeout.

    `tests.waiting.eventually` with the errors a program that is still starting (or an
    HTTP API that has no answer yet) gives counted as "not yet".
    """
    result = eventually(probe, what, retry_on=(OSError, ValueError, KeyError), within=timeout,
                        interval=interval, on_timeout=on_timeout)
    assert result is not None
    return result


def http_json(url: str, *, data: bytes | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


# --------------------------------------------------------------------------------------
# processes


@contextlib.contextmanager
def running(
    proc: Process, ready: Callable[[], bool], *, timeout: float = 30.0
) -> Iterator[Process]:
    """Start `proc`, wait until `ready()`, yield it, and always stop it."""
    proc.start()
    try:

        def probe() -> bool:
            if not proc.alive():
                pytest.fail(f"{proc.name} exited early\n{proc.log_tail()}", pytrace=False)
            return ready()

        wait_for(f"{proc.name} to be ready", probe, timeout=timeout, on_timeout=proc.log_tail)
        yield proc
    finally:
        proc.stop()


# --------------------------------------------------------------------------------------
# Prometheus


@dataclass
class Prometheus:
    url: str
    process: Process
    config_path: Path

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the result vector (raises on a PromQL error)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = urllib.parse.urlencode(params).encode()
        try:
            doc = http_json(f"{self.url}/api/v1/query", data=body)
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"query failed: {expr}\n{exc.read().decode(errors='replace')}"
            ) from exc
        if doc.get("status") != "success":
            raise AssertionError(f"query failed: {expr}: {doc}")
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return alerts

    def targets_up(self) -> bool:
        active = http_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def rule_health(self) -> list[str]:
        """Rules whose last evaluation failed, as readable strings."""
        groups = http_json(f"{self.url}/api/v1/rules")["data"]["groups"]
        return [
            f"{r['name']}: {r.get('lastError')}"
            for g in groups
            for r in g["rules"]
            if r.get("health") == "err"
        ]


@contextlib.contextmanager
def prometheus(
    tmp: Path,
    scrape_jobs: Mapping[str, Sequence[str]],
    *,
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
    external_labels: Mapping[str, str] | None = None,
) -> Iterator[Prometheus]:
    """Start Prometheus scraping `scrape_jobs` ({job: ["host:port", ...]}) every `interval`."""
    binary = require_binary("prometheus")
    port = free_port()
    workdir = tmp / f"prometheus-{port}"
    workdir.mkdir(parents=True)
    alerting = urllib.parse.urlparse(alertmanager_url).netloc if alertmanager_url else None
    config = prometheus_config(scrape_jobs, rule_files=rule_files, alertmanager=alerting,
                               interval=interval,
                               external_labels=external_labels or {"cluster": "test"})
    proc = prometheus_child(workdir, port, config, binary)
    url, config_path = proc.url, workdir / "prometheus.yml"
    with running(proc, lambda: http_ok(f"{url}/-/ready")):
        yield Prometheus(url, proc, config_path)


# --------------------------------------------------------------------------------------
# Alertmanager


@dataclass
class Alertmanager:
    url: str
    process: Process

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = http_json(f"{self.url}/api/v2/alerts")
        return alerts


@contextlib.contextmanager
def alertmanager(tmp: Path, config: Mapping[str, Any]) -> Iterator[Alertmanager]:
    binary = require_binary("alertmanager", "prometheus-alertmanager")  # Debian's name
    port = free_port()
    proc = alertmanager_child(tmp / f"alertmanager-{port}", port, config, binary)
    url = proc.url
    with running(proc, lambda: http_ok(f"{url}/-/ready")):
        yield Alertmanager(url, proc)


def alertmanager_config_for_test(
    webhook_base: str, *, wait: str = "1s", source: Path = REPO / "prometheus" / "alertmanager.yml"
) -> dict[str, Any]:
    """The repository's Alertmanager config with webhook URLs moved to `webhook_base`
    (path kept) and group_wait / group_interval shortened; routing and inhibition as is."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(source.read_text()))
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlparse(hook["url"]).path
            hook["url"] = webhook_base.rstrip("/") + path

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = wait
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    return config


# --------------------------------------------------------------------------------------
# webhook sink


@dataclass
class Notification:
    path: str
    body: dict[str, Any]

    @property
    def receiver(self) -> str:
        return str(self.body.get("receiver"))

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.body.get("alerts", [])
        return alerts


class WebhookSink:
    """An aiohttp server in its own thread that records every POST it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._notifications: list[Notification] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-sink", daemon=True)
        self._error: BaseException | None = None

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._notifications)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        async def receive(request: web.Request) -> web.Response:
            body = await request.json()
            with self._lock:
                self._notifications.append(Notification(request.path, body))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/{tail:.*}", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> WebhookSink:
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise RuntimeError("webhook sink failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@contextlib.contextmanager
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink().start()
    try:
        yield sink
    finally:
        sink.stop()


# --------------------------------------------------------------------------------------
# dashboards

# Grafana's built-in interval variables, replaced by plain durations.
BUILTIN_DURATIONS = {
    "$__rate_interval": "5m",
    "${__rate_interval}": "5m",
    "$__interval": "1m",
    "${__interval}": "1m",
    "$__range": "1h",
    "${__range}": "1h",
}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Grafana expression -> PromQL: built-in intervals become durations, template
    variables (used as `label=~"$var"`) become `.*` unless `values` names them."""
    out = expr
    for name, duration in BUILTIN_DURATIONS.items():
        out = out.replace(name, duration)
    values = values or {}
    return VARIABLE.sub(lambda m: values.get(m.group(1), ".*"), out)


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel_id: int
    panel: str
    ref_id: str
    expr: str

    @property
    def promql(self) -> str:
        return substitute(self.expr)

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} ({self.ref_id})"


def load_dashboard(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All panels, including those nested in rows."""
    out: list[dict[str, Any]] = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_queries(path: Path) -> list[PanelQuery]:
    dash = load_dashboard(path)
    return [
        PanelQuery(dash["uid"], p["id"], p["title"], t["refId"], t["expr"])
        for p in panels(dash)
        for t in p.get("targets", [])
        if "expr" in t
    ]


def dashboard_paths() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def empty_panels(prom: Prometheus, path: Path, *, allowed_empty: Sequence[str] = ()) -> list[str]:
    """Panels of a dashboard for which no query returns a series (a panel is fine when any
    of its queries returns one). `allowed_empty` lists panel titles that may be empty."""
    by_panel: dict[tuple[int, str], list[PanelQuery]] = {}
    for pq in dashboard_queries(path):
        by_panel.setdefault((pq.panel_id, pq.panel), []).append(pq)
    empty = []
    for (_, title), queries in by_panel.items():
        if title in allowed_empty:
            continue
        if not any(prom.query(pq.promql) for pq in queries):
            empty.append(
                f"{queries[0].dashboard} / {title}: " + " | ".join(q.promql for q in queries)
            )
    return empty


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"


# --------------------------------------------------------------------------------------
# metric names in PromQL

_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names an expression selects; good enough for our PromQL:
    strings, label matchers, ranges and grouping clauses are removed, functions skipped."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("("):
            continue
        if m.group(0).lower() in _PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names
