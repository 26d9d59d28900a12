"""`pgarchitect analyzer`: the job worker, the maintenance loop and the HTTP side in one process.

Several processes against one store share the work through the job queue; any of them serves
the admin API. The store may go away while running: the process stays up, /readyz and the API
answer 503, and everything resumes by itself when the store is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

import procrastinate
import psycopg
from aiohttp import web
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from analyzer import jobs
from analyzer.api.hardening import GuardedRunner
from analyzer.api.routes import ApiState, StoreView, make_web_app
from analyzer.job_health import JobFailed, reason_of
from analyzer.store import audits
from analyzer.store.connection import connect_store
from pgarchitect.config import Settings, parse_listen
from pgarchitect.errors import ConfigError, UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.service")

RESTART_DELAY = 2.0  # seconds before a job worker that died (store gone) is started again
PURGE_EVERY = 60.0  # seconds between purges of finished jobs older than JOB_KEEP_HOURS
JOB_KEEP_HOURS = 24
EXPECTED = (UserError, psycopg.Error, OSError, procrastinate.exceptions.ConnectorException)


def _reason(exc: BaseException) -> str:
    """One line for an expected failure; the job engine's wraps the driver's error."""
    if isinstance(exc, procrastinate.exceptions.ConnectorException) and exc.__cause__:
        exc = exc.__cause__
    return reason_of(exc)


class _ExpectedFailures(logging.Filter):
    """A failure for a known reason (target down, store gone) is one log line with its reason,
    not a traceback (procrastinate logs the exception with the job's end and its listener's
    errors; asyncio the job task's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, JobFailed):  # counted and logged once per cause already
            return False
        if isinstance(exc, EXPECTED):
            first = record.getMessage().strip().splitlines()[0]
            record.msg = f"{first} ({_reason(exc)})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_token(settings: Settings) -> str | None:
    """The admin token, or None; refuses a non-loopback listen address without one."""
    a = settings.analyzer
    host, _ = parse_listen(a.listen, "analyzer.listen")
    token = a.admin_token.reveal() if a.admin_token is not None else None
    if not token and not is_loopback(host):
        raise ConfigError("analyzer.admin_token",
                          f"is required to serve the admin API on {a.listen} (not a loopback "
                          "address): set analyzer.admin_token, analyzer.admin_token_file or "
                          "PGARCHITECT_ADMIN_TOKEN")
    return token or None


def check(settings: Settings) -> str | None:
    """Start-up checks: a store that is reachable and migrated, targets, the token rule."""
    token = admin_token(settings)
    if settings.store.dsn is None:
        raise ConfigError("store.dsn", "is required (give it in the config or "
                                       "PGARCHITECT_STORE_DSN)")
    if not settings.targets:
        raise ConfigError("targets", "at least one target is required")
    with connect_store(settings.store.dsn, settings.analyzer.connect_timeout) as store:
        audits.fail_abandoned(store)  # audits left 'running' by a process that died
    return token


def run(settings: Settings) -> int:
    """Run the service until SIGTERM / SIGINT; returns the exit code."""
    token = check(settings)
    return asyncio.run(_serve(settings, token))


class _Worker:
    """The procrastinate worker, started again after it dies (a store outage) -- but not once
    the service is stopping."""

    def __init__(self, app: procrastinate.App, service: jobs.Service) -> None:
        self.app = app
        self.service = service
        self.running = False
        self.stopping = False

    async def run(self) -> None:
        a = self.service.settings.analyzer
        while not self.stopping:
            try:
                self.running = True
                await self.app.run_worker_async(
                    name=f"{socket.gethostname()}:{os.getpid()}",
                    concurrency=a.worker_concurrency,
                    install_signal_handlers=False,
                    update_heartbeat_interval=max(0.5, a.worker_stalled_timeout / 4),
                    stalled_worker_timeout=a.worker_stalled_timeout,
                    # half the shutdown budget for running jobs, the rest to unregister
                    shutdown_graceful_timeout=max(0.5, a.shutdown_timeout / 2),
                    fetch_job_polling_interval=min(5.0, max(0.2, a.snapshot_interval / 4)),
                    delete_jobs="successful",
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    return
                log.error(event("worker.stopped", error=_reason(exc),
                                restart_in=f"{RESTART_DELAY}s"))
            finally:
                self.running = False
            await asyncio.sleep(RESTART_DELAY)


def _exit_now(code: int, why: str, **fields: object) -> None:
    """Leave at once: running job threads cannot be stopped, nor a store that does not answer
    be waited for. The store sees the sessions end; another replica retries the job."""
    log.warning(event(why, **fields))
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def _watchdog(seconds: float, code: int) -> threading.Timer:
    """A timer that ends the process `seconds` after the stop signal, whatever the loop does."""
    timer = threading.Timer(seconds, _exit_now, (code, "service.shutdown_timeout"),
                            {"seconds": seconds, "abandoned": "running jobs, store sessions"})
    timer.daemon = True
    timer.start()
    return timer


async def _maintain(app: procrastinate.App, service: jobs.Service,
                    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
    """Keep every target's chains alive and put stalled jobs back, on every replica."""
    a = service.settings.analyzer
    tick = min(5.0, max(0.5, min(a.snapshot_interval, a.worker_stalled_timeout) / 2))
    failing = False
    purged = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with pool.connection(timeout=5.0) as conn:
                await jobs.ensure_chains(app, service, conn)
            await jobs.retry_stalled(app, service)
            await asyncio.to_thread(service.connections.close_idle)  # idle past the timeout
            if loop.time() - purged > PURGE_EVERY:
                await app.job_manager.delete_old_jobs(nb_hours=JOB_KEEP_HOURS,
                                                      include_failed=True)
                purged = loop.time()
            if failing:
                log.info(event("maintenance.recovered"))
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.warning(event("maintenance.failed", error=_reason(exc)))
            failing = True
        await asyncio.sleep(tick)


async def _serve(settings: Settings, token: str | None) -> int:
    a = settings.analyzer
    assert settings.store.dsn is not None
    host, port = parse_listen(a.listen, "analyzer.listen")
    registry = CollectorRegistry()
    service = jobs.Service(settings, jobs.JobMetrics(registry),
                           public_url=(a.public_url or f"http://{a.listen}").rstrip("/"))
    app = jobs.make_app(service)
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
        settings.store.dsn.reveal(), min_size=2, max_size=8, open=False,
        kwargs={"application_name": "pgarchitect-analyzer-api", "autocommit": True,
                "connect_timeout": max(1, int(a.connect_timeout))},
        reconnect_timeout=0, name="pgarchitect-api")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []
    worker = _Worker(app, service)

    def on_signal(signum: int) -> None:
        code = 130 if signum == signal.SIGINT else 143
        if received:  # a second signal: no more waiting
            _exit_now(code, "service.stopped_at_once", signal=signal.Signals(signum).name)
        received.append(signum)
        worker.stopping = True
        # Bounded whatever the store does: the whole stop (jobs, unregistering, closing the
        # pools) gets analyzer.shutdown_timeout, then the process leaves.
        _watchdog(a.shutdown_timeout, code)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # The pools retry by themselves and say so on every attempt; our own lines say it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    quiet = _ExpectedFailures()
    handlers = list(logging.getLogger().handlers)
    for h in handlers:  # on the handlers: a logger's filter does not see its children's records
        h.addFilter(quiet)
    runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        async with app.open_async():
            await pool.open(wait=False)
            state = ApiState(service, app, pool, registry,
                             StoreView(tuple(t.name for t in settings.targets)), token,
                             lambda: worker.running)
            runner = GuardedRunner(make_web_app(state), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise UserError(f"cannot listen on {a.listen}: {exc.strerror}") from None
            if token is None:
                log.warning(event("service.admin_api_without_token", listen=a.listen))
            tasks = [asyncio.create_task(worker.run(), name="worker"),
                     asyncio.create_task(_maintain(app, service, pool), name="maintenance")]
            log.info(event("service.started", listen=a.listen, targets=len(settings.targets),
                           pid=os.getpid()))
            await stop.wait()
            log.info(event("service.stopping", signal=signal.Signals(received[0]).name))
            for t in reversed(tasks):  # maintenance first, then the worker (graceful)
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await pool.close()
        service.connections.close()  # the snapshot jobs' kept sessions (running ones: after)
        for h in handlers:
            h.removeFilter(quiet)
    if service.busy_threads:
        # A job outlived the graceful timeout: its thread cannot be stopped, so leave now;
        # the store sees the session end and the job is retried by another replica.
        _exit_now(130 if received and received[0] == signal.SIGINT else 143,
                  "service.abandoned_jobs", count=service.busy_threads)
    log.info(event("service.stopped"))
    return 130 if received and received[0] == signal.SIGINT else 143
