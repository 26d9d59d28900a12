"""The exporter's HTTP side: aiohttp app factory, endpoints, lifecycle.

Endpoints: `/metrics` (every target, label `target`), `/probe?target=NAME` (one target, for
Prometheus relabeling at fleet scale), `/healthz` (process alive), `/readyz` (at least one
target reachable). Exposition is the Prometheus text format, or OpenMetrics when the scraper
asks for it in `Accept`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import collectors, db
from exporter.exposition import LabelStrings, encode
from exporter.families import build
from exporter.model import ScrapeResult
from exporter.scrape import TargetScraper
from pgarchitect.config import Settings, Target, parse_listen
from pgarchitect.db import first_line
from pgarchitect.errors import ConfigError, ConnectError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.exporter.app")

SETTINGS = web.AppKey("settings", Settings)
# The app's own registry: other modules (the jsonlog tailer, issue 4) register their metrics
# here and they are served on the same /metrics. Never the global prometheus REGISTRY.
REGISTRY = web.AppKey("registry", CollectorRegistry)
SCRAPERS = web.AppKey("scrapers", dict[str, TargetScraper])
TASKS = web.AppKey("tasks", list[asyncio.Task[None]])


_EOF = b"# EOF\n"
GZIP_LEVEL = 1  # several times faster than zlib's default, and still ~10x smaller on metrics


@dataclass
class Rendered:
    """One exposition: the scrape results it shows, its bytes, and their gzip (made once)."""

    results: tuple[ScrapeResult, ...]
    own: bytes  # the app registry's part
    body: bytes
    content_type: str
    _gzipped: bytes | None = None

    def gzipped(self) -> bytes:
        """The body gzip-compressed, computed on first use and shared from then on."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gzipped


class RenderCache:
    """The last rendering per (endpoint, format): coalesced scrapes share one result object,
    so they share its bytes (and their gzip) too instead of each rendering thousands of
    samples again."""

    def __init__(self, compat: bool = True) -> None:
        self._last: dict[tuple[str, str], Rendered] = {}
        self._labels = LabelStrings()
        self._compat = compat

    def render(self, key: str, accept: str | None, results: Sequence[ScrapeResult],
               registry: CollectorRegistry | None) -> Rendered:
        """The app registry's metrics, then the targets' families (rendered once per round)."""
        accept = negotiate(accept, self._compat)
        encoder, content_type = choose_encoder(accept)
        own = b"" if registry is None else encoder(registry)
        if own.endswith(_EOF):  # OpenMetrics: one EOF marker, at the very end
            own = own[: -len(_EOF)]
        hit = self._last.get((key, content_type))
        if hit is not None and hit.own == own and len(hit.results) == len(results) and all(
                a is b for a, b in zip(hit.results, results, strict=True)):
            return hit
        body, content_type, _ = encode(build(results, self._compat), accept, self._labels)
        rendered = Rendered(tuple(results), own, own + body, content_type)
        self._last[(key, content_type)] = rendered
        return rendered


RENDERED = web.AppKey("rendered", RenderCache)
TEXT_FORMAT = "text/plain; version=0.0.4"


def negotiate(accept: str | None, compat: bool) -> str:
    """The Accept header to encode for. With the postgres_exporter compatibility set on, the
    text format whenever the client takes it (Prometheus does, after OpenMetrics): its
    counters without `_total` share family names with ours, which OpenMetrics cannot carry,
    and postgres_exporter itself serves only the text format."""
    accept = accept or ""
    if compat and "application/openmetrics-text" in accept and (
            "text/plain" in accept or "*/*" in accept):
        return TEXT_FORMAT
    return accept


def accepts_gzip(header: str | None) -> bool:
    """True when an Accept-Encoding header allows gzip (a q of 0 refuses it)."""
    for item in (header or "").split(","):
        name, *params = (p.strip() for p in item.split(";"))
        if name.lower() in ("gzip", "*"):
            for param in params:
                key, _, value = param.partition("=")
                if key.strip() == "q":
                    try:
                        return float(value) > 0
                    except ValueError:
                        return False
            return True
    return False


async def _respond(request: web.Request, key: str, results: Sequence[ScrapeResult],
                   registry: CollectorRegistry | None) -> web.Response:
    # All database I/O is done: rendering below never touches a database.
    rendered = request.app[RENDERED].render(
        key, request.headers.get("Accept"), results, registry)
    headers = {"Content-Type": rendered.content_type, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding")):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=rendered.gzipped(), headers=headers)
    return web.Response(body=rendered.body, headers=headers)


# Prometheus sends its scrape timeout; a round ends this much earlier, so the answer (with
# pg_up 0 for a hung target) arrives before Prometheus gives up (blackbox_exporter's
# --timeout-offset default).
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
SCRAPE_TIMEOUT_MARGIN = 0.5


def scrape_budget(header: str | None, scrape_timeout: float) -> float:
    """Seconds a database round may take: Prometheus's scrape timeout minus the margin (half
    of it when it is shorter than twice the margin), never more than `scrape_timeout`; the
    configured `scrape_timeout` without a usable header."""
    try:
        offered = float(header) if header is not None else math.nan
    except ValueError:
        offered = math.nan
    if not (math.isfinite(offered) and offered > 0):
        return scrape_timeout
    if offered > 2 * SCRAPE_TIMEOUT_MARGIN:
        offered -= SCRAPE_TIMEOUT_MARGIN
    else:
        offered /= 2
    return min(offered, scrape_timeout)


def _budget(request: web.Request) -> float:
    return scrape_budget(request.headers.get(SCRAPE_TIMEOUT_HEADER),
                         request.app[SETTINGS].exporter.scrape_timeout)


async def metrics(request: web.Request) -> web.Response:
    """Every target, then the app registry's own metrics."""
    scrapers = request.app[SCRAPERS].values()
    budget = _budget(request)
    results = await asyncio.gather(*(s.collect(budget) for s in scrapers))
    return await _respond(request, "metrics", results, request.app[REGISTRY])


async def probe(request: web.Request) -> web.Response:
    """One target by name: /probe?target=NAME."""
    name = request.query.get("target")
    if not name:
        raise web.HTTPBadRequest(text="missing parameter: target\n")
    scrapers = request.app[SCRAPERS]
    scraper = scrapers.get(name)
    if scraper is None:
        known = ", ".join(scrapers.keys()) or "none"
        raise web.HTTPNotFound(text=f"unknown target {name!r} (known: {known})\n")
    return await _respond(request, f"probe:{name}", [await scraper.collect(_budget(request))],
                          None)


async def healthz(request: web.Request) -> web.Response:
    """The process is alive."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 when at least one target answers, else 503."""
    scrapers = list(request.app[SCRAPERS].values())
    answers = await asyncio.gather(*(s.ping() for s in scrapers))
    up = [s.name for s, ok in zip(scrapers, answers, strict=True) if ok]
    if up:
        return web.Response(text=f"ready: {', '.join(up)}\n")
    return web.Response(status=503, text="no target reachable\n")


async def index(request: web.Request) -> web.Response:
    """A small landing page for humans."""
    scrapers = request.app[SCRAPERS]
    names = ", ".join(scrapers.keys())
    return web.Response(text=f"pgarchitect exporter\ntargets: {names}\n"
                             "/metrics  /probe?target=NAME  /healthz  /readyz\n")


async def _scrapers_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[SCRAPERS] = {t.name: TargetScraper(t, settings.exporter) for t in settings.targets}
    yield
    await asyncio.gather(*(s.close() for s in app[SCRAPERS].values()))


async def _background_tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    registry = app[REGISTRY]
    tasks: list[asyncio.Task[None]] = []
    # ---- Background tasks of other modules start here --------------------------------
    # Each registers its metrics into `registry` and runs until cancelled.
    if settings.exporter.orm_paths.jsonlog:
        from exporter.logtail import LogTailer

        tailer = LogTailer(settings.exporter.orm_paths, registry)
        tasks.append(asyncio.create_task(tailer.run(), name="logtail"))
    # ---- end of background tasks -------------------------------------------------------
    app[TASKS] = tasks
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except Exception as exc:  # a crashed task must not break shutdown
                log.warning(event("task.failed", task=task.get_name(), error=exc))


def make_app(settings: Settings) -> web.Application:
    """The exporter as an aiohttp application (pools and tasks live in its cleanup_ctx)."""
    app = web.Application()
    app[SETTINGS] = settings
    app[REGISTRY] = CollectorRegistry(auto_describe=True)
    app[RENDERED] = RenderCache(settings.exporter.postgres_exporter_compat)
    app.cleanup_ctx.append(_scrapers_ctx)
    app.cleanup_ctx.append(_background_tasks_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def check_targets(settings: Settings) -> None:
    """At start-up: every target must answer, else ConfigError/ConnectError naming it."""
    if not settings.targets:
        raise ConfigError("targets", "at least one target is required (give --dsn DSN)")

    async def check(target: Target) -> None:
        try:
            conn = await db.connect(target.dsn, settings.exporter)
        except Exception as exc:  # any driver error: report it on one line
            raise ConnectError(f"cannot connect to target {target.name} {target.dsn.masked}: "
                               f"{first_line(exc)}") from None
        await conn.close()

    await asyncio.gather(*(check(t) for t in settings.targets))


def run(settings: Settings) -> int:
    """Serve until interrupted (the `pgarchitect exporter` command)."""
    host, port = parse_listen(settings.exporter.listen, "exporter.listen")
    collectors.enabled(settings.exporter.disabled_collectors)  # ConfigError on a bad name
    asyncio.run(check_targets(settings))
    names = ",".join(t.name for t in settings.targets)
    log.info(event("exporter.listening", url=f"http://{host}:{port}/metrics", targets=names))
    web.run_app(make_app(settings), host=host, port=port, print=None, access_log=None)
    return 0
