"""One scrape of one target: probe, run the collectors under a budget, classify failures.

Concurrent scrapes of a target share one database round (single flight), and a round's result
is reused for `min_refresh_interval` seconds. A failing collector never fails the scrape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
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

Step = Callable[[asyncpg.Connection], Awaitable[None]]


class _Outcome(NamedTuple):
    """What a collector on its own connection returned: data or failure, and its time."""

    name: str
    data: Any
    seconds: float
    failure: Classified | None


class TargetScraper:
    """Scrapes one target; owns its pool and its collectors' memory across scrapes."""

    def __init__(self, target: Target, settings: ExporterSettings) -> None:
        self.target = target
        self.settings = settings
        views = collectors.enabled(settings.disabled_collectors)
        self._own = [c for c in views if c.own_connection]
        self._shared = [c for c in views if not c.own_connection]
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
        """Wait for a running round, then close the pool."""
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
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
                time.monotonic() - self._last_at < self.settings.min_refresh_interval):
            return self._last
        if self._inflight is None:
            seconds = self.settings.scrape_timeout if budget is None else budget
            self._inflight = asyncio.ensure_future(self._round(seconds))
            self._inflight.add_done_callback(self._finished)
        # Shielded: a client that goes away must not cancel the round the others wait for.
        return await asyncio.shield(self._inflight)

    def _finished(self, fut: asyncio.Future[ScrapeResult]) -> None:
        self._inflight = None
        if not fut.cancelled() and fut.exception() is None:
            self._last, self._last_at = fut.result(), time.monotonic()

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
        work = asyncio.ensure_future(self._collect_all(result))
        await asyncio.wait({work}, timeout=budget)
        if work.done():
            work.result()
        else:
            # Over budget: answer now. The round is cancelled but not waited for (against a
            # hung server, unwinding its queries would wait on the server too); the pool is
            # dropped so its sockets close, and the next round connects and probes afresh.
            work.cancel()
            self._abandon(work)
            result = dataclasses.replace(result, data=dict(result.data),
                                         durations=dict(result.durations),
                                         failures=dict(result.failures))
            self._server = None
            self._fail_rest(result, Classified(Reason.TIMEOUT, True, "scrape timeout"), log_it=True)
        result.finished_at = time.time()
        result.errors_total = dict(self._errors)
        result.rounds_total = self.rounds
        return result

    async def _collect_all(self, result: ScrapeResult) -> None:
        self._reprobe = False
        cached = self._server
        try:
            pool = await self._get_pool()
            if cached is None:  # first round, or after a failure: probe before the collectors
                started = time.perf_counter()
                async with pool.acquire() as conn:
                    result.server = await server.fetch(conn)
                self._ok(result, "server", started)
        except Exception as exc:  # a failed probe: the target is down for this round
            await self._down(result, classify(exc))
            return
        # With the last round's probe the collectors on their own connection (the statements
        # read) start at once; the probe runs alongside them, first on the shared connection.
        used = cached or result.server
        assert used is not None
        outcomes, down = await asyncio.gather(
            asyncio.gather(*(self._alone(pool, c, used) for c in self._own)),
            self._health(pool, result, probe=cached is not None))
        if down is not None:
            await self._down(result, down)
            return
        info = result.server
        assert info is not None
        for collector, outcome in zip(self._own, outcomes, strict=True):
            if outcome.failure is not None and info != used:
                # The server changed since the last probe (extension dropped or updated, role
                # revoked...): read again with what it says now, so the error says why.
                outcome = await self._alone(pool, collector, info)
            self._apply(result, outcome)
        result.up = True
        self._log_target(True, None)
        self._server = None if self._reprobe else info

    async def _down(self, result: ScrapeResult, failure: Classified) -> None:
        """The probe failed: every collector is down with its reason, one log line says so."""
        self._server, result.server, result.data = None, None, {}
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
            return
        result.durations[name] = outcome.seconds
        self._record(result, name, outcome.failure, log_it=True)
        if outcome.failure.fatal:
            self._reprobe = True

    async def _health(self, pool: asyncpg.Pool, result: ScrapeResult,
                      probe: bool) -> Classified | None:
        """The collectors that share one connection, after the probe when `probe`; the
        probe's failure (the target is down) is returned, not recorded."""

        async def run_probe(conn: asyncpg.Connection) -> None:
            result.server = await server.fetch(conn)

        def step(collector: Collector[Any]) -> Step:
            async def run(conn: asyncpg.Connection) -> None:
                assert result.server is not None
                result.data[collector.name] = await collector.fetch(
                    conn, self._context(collector, result.server))
            return run

        named = [(c.name, step(c)) for c in self._shared]
        return await self._on_connection(pool, result, named, run_probe if probe else None)

    async def _on_connection(
        self,
        pool: asyncpg.Pool,
        result: ScrapeResult,
        steps: list[tuple[str, Step]],
        gate: Step | None = None,
    ) -> Classified | None:
        """Run collectors one after another on one connection; a fatal error ends the rest.

        `gate` (the probe) runs first: when it fails nothing is recorded, its failure is
        returned and the steps do not run.
        """
        names = [name for name, _ in steps]
        try:
            async with pool.acquire() as conn:
                if gate is not None:
                    started = time.perf_counter()
                    try:
                        await gate(conn)
                    except Exception as exc:  # the target is down: the caller says so
                        return classify(exc)
                    self._ok(result, "server", started)
                for i, (name, step) in enumerate(steps):
                    started = time.perf_counter()
                    try:
                        await step(conn)
                    except Exception as exc:  # classified; never fails the scrape
                        failure = classify(exc)
                        result.durations[name] = time.perf_counter() - started
                        self._record(result, name, failure, log_it=True)
                        if failure.fatal:
                            for rest in names[i + 1:]:
                                self._record(result, rest, failure, log_it=False)
                            self._reprobe = True
                            await pool.expire_connections()
                            return None
                    else:
                        self._ok(result, name, started)
        except Exception as exc:  # acquiring the connection failed
            failure = classify(exc)
            if gate is not None:
                return failure
            for name in names:
                if name not in result.durations:
                    self._record(result, name, failure, log_it=True)
            self._reprobe = True
            await pool.expire_connections()
        return None

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
