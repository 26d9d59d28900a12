"""One scrape of one target: probe, run the collectors under a budget, classify failures.

Every collector runs on a pool connection of its own, concurrently with the others (the
target's pool bounds how many at once; a connection is never shared by two coroutines).
Slowly changing views (settings, tables, indexes) are read again only every
`slow_refresh_interval` and served from the cache meanwhile, with their age exported.
Concurrent scrapes of a target share one database round (single flight), and a round's result
is reused for `min_refresh_interval` seconds. A failing collector never fails the scrape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import asyncpg

from exporter import collectors, db
from exporter.collectors import server
from exporter.collectors.base import Collector, Context
from exporter.errors import Classified, Reason, classify
from exporter.model import Failure, ScrapeResult, ServerInfo
from pgarchitect.config import ExporterSettings, Target
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.exporter.scrape")



class _Outcome(NamedTuple):
    """What a collector on its own connection returned: data or failure, and its time."""

    name: str
    data: Any
    seconds: float
    failure: Classified | None


class _Cached(NamedTuple):
    """A slowly changing view's last read: data, how long it took, when (monotonic, wall)."""

    data: Any
    seconds: float
    at: float
    wall: float


async def _nothing() -> None:
    return None


class TargetScraper:
    """Scrapes one target; owns its pool and its collectors' memory across scrapes."""

    def __init__(self, target: Target, settings: ExporterSettings,
                 views: Sequence[Collector[Any]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self._clock = clock  # monotonic seconds: refresh intervals and the cache's age
        self.settings = settings
        if views is None:
            views = collectors.enabled(settings.disabled_collectors)
        self._views = tuple(views)
        self._slow = {c.name: c.slow for c in views}
        self._names = (collectors.PROBE.name, *(c.name for c in views))
        self._disabled = frozenset(collectors.NAMES).difference(self._names)
        self._memory = {c.name: c.new_memory(settings) for c in views if c.new_memory}
        self.rounds = 0
        self._abandoned: set[asyncio.Future[None]] = set()
        self._pool: asyncpg.Pool | None = None
        self._errors: Counter[tuple[str, str]] = Counter()
        self._last: ScrapeResult | None = None
        self._last_at = 0.0
        self._inflight: asyncio.Future[ScrapeResult] | None = None
        self._state: dict[str, Reason | None] = {}
        # The last round's probe: the next round's statements read starts with it at once
        # while the probe runs again alongside; dropped after any connection-level failure.
        self._server: ServerInfo | None = None
        self._reprobe = False
        # Slowly changing views' last reads ("settings" and the `slow` collectors), kept
        # while the server's start time stays the same and the target stays up.
        self._cache: dict[str, _Cached] = {}
        self._started_at = 0.0
        # The collectors' `after` work of the last round (one at a time, off the scrape's path).
        self._after: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        """The target's name (the `target` label)."""
        return self.target.name

    def _abandon(self, work: asyncio.Future[None]) -> None:
        """Keep a cancelled round until it has unwound; drop the pool it was using."""
        self._abandoned.add(work)
        work.add_done_callback(self._abandoned.discard)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()

    async def close(self) -> None:
        """Wait for a running round, stop the work after it, then close the pool."""
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
        if self._after is not None:
            self._after.cancel()
            await asyncio.gather(self._after, return_exceptions=True)
        if self._abandoned:
            await asyncio.wait(self._abandoned, timeout=self.settings.connect_timeout)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.settings.connect_timeout)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()

    async def collect(self, budget: float | None = None) -> ScrapeResult:
        """The latest result: fresh enough, in flight (shared), or a new round that takes at
        most `budget` seconds (default: the configured scrape_timeout)."""
        if self._last is not None and (
                self._clock() - self._last_at < self.settings.min_refresh_interval):
            return self._last
        if self._inflight is None:
            seconds = self.settings.scrape_timeout if budget is None else budget
            self._inflight = asyncio.ensure_future(self._round(seconds))
            self._inflight.add_done_callback(self._finished)
        # Shielded: a client that goes away must not cancel the round the others wait for.
        return await asyncio.shield(self._inflight)

    async def settled(self) -> None:
        """Wait until the work after the last round is done (tests and benchmarks)."""
        if self._after is not None:
            await asyncio.gather(self._after, return_exceptions=True)

    def _follow_up(self, pool: asyncpg.Pool, info: ServerInfo,
                   arrived: dict[str, _Outcome]) -> None:
        """Start the `after` work of the collectors that delivered in this round, unless
        the last round's is still running (it then covers what is due)."""
        if self._after is not None and not self._after.done():
            return
        due = [c for c in self._views if c.after is not None
               and (o := arrived.get(c.name)) is not None and o.failure is None]
        if due:
            self._after = asyncio.ensure_future(self._run_after(pool, due, info))

    async def _run_after(self, pool: asyncpg.Pool, due: list[Collector[Any]],
                         info: ServerInfo) -> None:
        """Each collector's `after` on a pool connection, within the statement timeout; a
        failure is logged once per change (the next round's work tries again)."""
        limit = self.settings.statement_timeout + self.settings.connect_timeout
        for collector in due:
            assert collector.after is not None
            key = f"after:{collector.name}"
            try:
                async with asyncio.timeout(limit):
                    async with pool.acquire() as conn:
                        await collector.after(conn, self._context(collector, info))
            except Exception as exc:  # classified and logged; never reaches a scrape
                failure = classify(exc)
                if pool is self._pool and self._state.get(key) != failure.reason:
                    log.warning(event("collector.after_failed", target=self.name,
                                      collector=collector.name, reason=failure.reason.value,
                                      error=failure.message))
                self._state[key] = failure.reason
            else:
                self._state.pop(key, None)

    def _finished(self, fut: asyncio.Future[ScrapeResult]) -> None:
        self._inflight = None
        if not fut.cancelled() and fut.exception() is None:
            self._last, self._last_at = fut.result(), self._clock()

    async def ping(self) -> bool:
        """True when the target answers a trivial query now."""
        try:
            pool = await self._get_pool()
            async with asyncio.timeout(self.settings.connect_timeout + 1):
                async with pool.acquire() as conn:
                    await conn.fetchval(server.PING)
            return True
        except Exception:  # any failure means not reachable; the scrape reports why
            return False

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await db.create_pool(self.target.dsn, self.settings)
        return self._pool

    async def _round(self, budget: float) -> ScrapeResult:
        self.rounds += 1
        result = ScrapeResult(target=self.name, up=False, disabled=self._disabled)
        arrived: dict[str, _Outcome] = {}
        work = asyncio.ensure_future(self._collect_all(result, arrived))
        await asyncio.wait({work}, timeout=budget)
        if work.done():
            work.result()
        else:
            # Over budget: answer now. The round is cancelled but not waited for (against a
            # hung server, unwinding its queries would wait on the server too); the pool is
            # dropped so its sockets close, and the next round connects and probes afresh.
            work.cancel()
            self._abandon(work)
            answered = result.server is not None  # the probe of this round came back
            result = dataclasses.replace(result, data=dict(result.data),
                                         durations=dict(result.durations),
                                         failures=dict(result.failures),
                                         cached_at=dict(result.cached_at))
            self._server = None
            if answered:  # the target is up; what arrived stands, the rest timed out
                self._arrived(result, dict(arrived))
            self._fail_rest(result, Classified(Reason.TIMEOUT, True, "scrape timeout"), log_it=True)
        result.finished_at = time.time()
        result.errors_total = dict(self._errors)
        result.rounds_total = self.rounds
        return result

    async def _collect_all(self, result: ScrapeResult, arrived: dict[str, _Outcome]) -> None:
        """The probe, then every collector on a connection of its own, concurrently (the
        pool bounds how many at once); outcomes land in `arrived` as they finish, so a round
        over budget still shows those."""
        self._reprobe = False
        cached = self._server
        try:
            pool = await self._get_pool()
            if cached is None:  # first round, or after a failure: probe before the collectors
                started = time.perf_counter()
                async with pool.acquire() as conn:
                    await self._probe(conn, result)
                self._ok(result, "server", started)
        except Exception as exc:  # a failed probe: the target is down for this round
            await self._down(result, classify(exc))
            return
        # With the last round's probe the collectors start at once; the probe runs again
        # alongside them.
        used = cached or result.server
        assert used is not None
        due = self._from_cache(result)

        async def probe_again() -> Classified | None:
            started = time.perf_counter()
            try:
                async with pool.acquire() as conn:
                    await self._probe(conn, result)
            except Exception as exc:  # the target is down: said once, below
                return classify(exc)
            self._ok(result, "server", started)
            return None

        async def run(collector: Collector[Any]) -> None:
            arrived[collector.name] = await self._alone(pool, collector, used)

        down, *_ = await asyncio.gather(
            probe_again() if cached is not None else _nothing(), *(run(c) for c in due))
        if down is not None:
            await self._down(result, down)
            return
        info = result.server
        assert info is not None
        for collector in due:
            outcome = arrived[collector.name]
            if outcome.failure is not None and info != used:
                # The server changed since the last probe (extension dropped or updated, role
                # revoked...): read again with what it says now, so the error says why.
                outcome = arrived[collector.name] = await self._alone(pool, collector, info)
        self._arrived(result, arrived)
        if self._reprobe:
            await pool.expire_connections()
        self._server = None if self._reprobe else info
        self._follow_up(pool, info, arrived)

    def _arrived(self, result: ScrapeResult, arrived: dict[str, _Outcome]) -> None:
        """The target answered its probe: apply what the collectors brought; it is up."""
        for outcome in arrived.values():
            self._apply(result, outcome)
        result.up = True
        self._log_target(True, None)

    async def _probe(self, conn: asyncpg.Connection, result: ScrapeResult) -> None:
        """The probe; its settings from the cache while they are fresh. A server that
        restarted since the cache was filled empties it (the settings are read again)."""
        fresh = self._fresh("settings")
        info = await server.fetch(conn, with_settings=fresh is None)
        if info.started_at != self._started_at:
            self._cache.clear()
            self._started_at = info.started_at
            if fresh is not None:
                fresh = None
                info = await server.fetch(conn, with_settings=True)
        if fresh is None:
            fresh = self._cache["settings"] = _Cached(info.settings, 0.0, self._clock(),
                                                     time.time())
        else:
            info = dataclasses.replace(info, settings=fresh.data)
        result.server = info
        result.cached_at["settings"] = fresh.wall

    def _fresh(self, view: str) -> _Cached | None:
        """The cached read of a slowly changing view, while it is fresh."""
        hit = self._cache.get(view)
        if hit is None or self._clock() - hit.at >= self.settings.slow_refresh_interval:
            return None
        return hit

    def _from_cache(self, result: ScrapeResult) -> list[Collector[Any]]:
        """Serve the slowly changing views that are fresh from the cache; the rest is due."""
        due = []
        for collector in self._views:
            hit = self._fresh(collector.name) if collector.slow else None
            if hit is None:
                due.append(collector)
                continue
            result.data[collector.name] = hit.data
            result.cached_at[collector.name] = hit.wall
            self._up(result, collector.name, hit.seconds)
        return due

    async def _down(self, result: ScrapeResult, failure: Classified) -> None:
        """The probe failed: every collector is down with its reason, one log line says so."""
        self._server, result.server, result.data = None, None, {}
        result.durations.clear()
        result.failures.clear()
        result.cached_at.clear()
        self._cache.clear()
        self._record(result, "server", failure, log_it=False)
        self._fail_rest(result, failure, log_it=False)
        self._log_target(False, failure)
        if self._pool is not None:
            await self._pool.expire_connections()

    def _context(self, collector: Collector[Any], info: ServerInfo) -> Context:
        return Context(info, self.settings, self._memory.get(collector.name))

    async def _alone(self, pool: asyncpg.Pool, collector: Collector[Any],
                     info: ServerInfo) -> _Outcome:
        """A collector on its own connection; its outcome is applied by the caller, once it
        knows whether the target is up."""
        started = time.perf_counter()
        try:
            async with pool.acquire() as conn:
                data = await collector.fetch(conn, self._context(collector, info))
        except Exception as exc:  # classified; never fails the scrape
            return _Outcome(collector.name, None, time.perf_counter() - started, classify(exc))
        return _Outcome(collector.name, data, time.perf_counter() - started, None)

    def _apply(self, result: ScrapeResult, outcome: _Outcome) -> None:
        name = outcome.name
        if outcome.failure is None:
            result.data[name] = outcome.data
            self._up(result, name, outcome.seconds)
            if self._slow.get(name):
                self._cache[name] = _Cached(outcome.data, outcome.seconds, self._clock(),
                                            time.time())
                result.cached_at[name] = self._cache[name].wall
            return
        result.durations[name] = outcome.seconds
        self._record(result, name, outcome.failure, log_it=True)
        if outcome.failure.fatal:
            self._reprobe = True

    def _ok(self, result: ScrapeResult, name: str, started: float) -> None:
        self._up(result, name, time.perf_counter() - started)

    def _up(self, result: ScrapeResult, name: str, seconds: float) -> None:
        result.durations[name] = seconds
        if self._state.get(name) is not None:
            log.info(event("collector.recovered", target=self.name, collector=name))
        self._state[name] = None

    def _record(self, result: ScrapeResult, name: str, failure: Classified, log_it: bool) -> None:
        result.failures[name] = Failure(failure.reason, failure.message)
        self._errors[(name, failure.reason.value)] += 1
        if not log_it:  # skipped because the target is down: the target line says it all
            return
        if self._state.get(name) != failure.reason:
            # One line per change of state, not one per scrape.
            log.warning(event("collector.failed", target=self.name, collector=name,
                              reason=failure.reason.value, error=failure.message))
        self._state[name] = failure.reason

    def _fail_rest(self, result: ScrapeResult, failure: Classified, log_it: bool) -> None:
        for name in self._names:
            if name not in result.durations and name not in result.failures:
                self._record(result, name, failure, log_it)

    def _log_target(self, up: bool, failure: Classified | None) -> None:
        was = self._state.get("target")
        if up and was is not None:
            log.info(event("target.up", target=self.name))
            self._state["target"] = None
        elif not up and failure is not None and was != failure.reason:
            log.warning(event("target.down", target=self.name, reason=failure.reason.value,
                              error=failure.message))
            self._state["target"] = failure.reason
