"""The analyzer service's jobs on procrastinate: snapshots, audits and their schedules.

The queue is procrastinate's, in the store (its schema comes with migration 0005). What we add
on top, and why (docs/analyzer.md, "Job engine"):

- Chains instead of periodic tasks. Procrastinate's periodic tasks are cron-minute granular, and
  snapshot intervals of a few seconds must work. Each snapshot job therefore first defers its
  successor one `snapshot_interval` after its own scheduled time (`next_snapshot`: no drift
  by how late a job started), under the queueing lock ``snapshot:<target>``, so at
  most one snapshot per target waits in the queue whatever the number of replicas. Scheduled
  audits chain the same way on the cron schedule (pgarchitect.cron, in ``analyzer.timezone``), under
  ``scheduled-audit:<target>``; requested audits use ``audit:<target>``.
- The per-target lock is a PostgreSQL session advisory lock in the store, held by the running
  job (the audit's is taken inside the audit, analyzer/audit/bookkeeping.py; the key is
  analyzer/store/locks.py's), rather than procrastinate's ``lock``: a
  waiting job with a ``lock`` holds back every later job with the same lock even while its
  scheduled time is still in the future, so chains scheduled ahead would block each other for
  a week. A session lock also goes away with a killed worker's connection.
- Stalled jobs: procrastinate notices a worker whose heartbeat stopped but leaves the retry to
  the application; every replica's maintenance loop retries them (:func:`retry_stalled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import procrastinate
import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram

from analyzer import memory, notify
from analyzer.audit import (
    AuditBusy,
    AuditResult,
    Recommender,
    engine_recommender,
    quick_check,
    run_audit,
    snapshot_and_observe,
)
from analyzer.connections import Connections
from analyzer.job_health import JobHealth, reason_of
from analyzer.store import audits, locks
from analyzer.store.states import SnapshotStates
from analyzer.store.writer import StatementWriter
from analyzer.vocabulary import RequestedBy
from pgarchitect.config import AnalyzerSettings, Settings, Target
from pgarchitect.cron import next_run
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.jobs")
T = TypeVar("T")

SNAPSHOT_TASK = "snapshot"
AUDIT_TASK = "audit"
AUDIT_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
SNAPSHOT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def snapshot_lock(target: str) -> str:
    """Queueing lock of a target's waiting snapshot."""
    return f"snapshot:{target}"


def requested_audit_lock(target: str) -> str:
    """Queueing lock of a target's requested (API) audit."""
    return f"audit:{target}"


def scheduled_audit_lock(target: str) -> str:
    """Queueing lock of a target's next scheduled audit."""
    return f"scheduled-audit:{target}"


def next_snapshot(scheduled_at: datetime | None, now: datetime, interval: float) -> datetime:
    """When a snapshot job's successor runs: one interval after the job's own scheduled time,
    so the chain keeps its cadence however late a worker picked the job up (from now when it
    had none); past slots are skipped, never queued up to catch up."""
    step = timedelta(seconds=interval)
    if scheduled_at is None:
        return now + step
    missed = max((now - scheduled_at) // step, 0) if step else 0
    return scheduled_at + (missed + 1) * step


def next_scheduled_audit(settings: AnalyzerSettings, after: datetime) -> datetime:
    """When the scheduled audit after `after` runs (UTC): `analyzer.schedule` in
    `analyzer.timezone`, across DST changes as pgarchitect.cron.next_run says."""
    return next_run(settings.schedule, after, settings.timezone).astimezone(UTC)


class JobMetrics:
    """The service's process-local counters and histograms (one registry per service)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.audit_duration = Histogram(
            "pgarchitect_audit_duration_seconds", "Wall time of audits run by this process.",
            registry=registry, buckets=AUDIT_BUCKETS)
        self.audit_runs = Counter(
            "pgarchitect_audit_runs_total", "Audits run by this process, by outcome.",
            ["status"], registry=registry)
        self.snapshot_duration = Histogram(
            "pgarchitect_snapshot_duration_seconds",
            "Wall time of snapshot jobs (snapshot and quick regression check).",
            registry=registry, buckets=SNAPSHOT_BUCKETS)
        self.snapshot_runs = Counter(
            "pgarchitect_snapshot_runs_total", "Snapshot jobs run by this process, by outcome.",
            ["target", "status"], registry=registry)
        self.jobs = Counter(
            "pgarchitect_jobs_total", "Jobs this process finished, by task and outcome.",
            ["task", "outcome"], registry=registry)
        self.stalled_retried = Counter(
            "pgarchitect_jobs_stalled_retried_total",
            "Jobs of workers that stopped sending heartbeats, put back in the queue.",
            registry=registry)
        self.notifications = Counter(
            "pgarchitect_notifications_total",
            "Alerts pushed to Alertmanager, by kind and result.",
            ["kind", "result"], registry=registry)
        self.notification_attempts_failed = Counter(
            "pgarchitect_notification_attempts_failed_total",
            "Failed attempts to reach Alertmanager (each is retried).", registry=registry)
        for status in ("success", "failed"):
            self.audit_runs.labels(status)
        for task in (SNAPSHOT_TASK, AUDIT_TASK):
            for outcome in ("succeeded", "failed", "skipped"):
                self.jobs.labels(task, outcome)
        for kind in ("recommendation", "audit_failed"):
            for result in ("sent", "failed"):
                self.notifications.labels(kind, result)


def snapshot_and_check(settings: Settings, target: Target, writer: StatementWriter | None = None,
                       connections: Connections | None = None,
                       states: SnapshotStates | None = None) -> tuple[str, float]:
    """One snapshot job's work: snapshot under the target lock, then the quick check.

    `writer` keeps the target's last state between snapshots (one per target: the target
    lock makes sure only one thread uses it at a time); `connections`, the process's sessions
    kept between jobs (none: both opened for this job and closed after it); `states`, the
    process's rebuilt snapshot states (analyzer/store/states.py; none: all rebuilt).

    Returns ("succeeded" | "skipped", seconds); "skipped" when the target is locked by an
    audit (which takes its own snapshot) or another snapshot.
    """
    assert settings.store.dsn is not None
    a = settings.analyzer
    started = time.perf_counter()
    conns = connections or Connections(idle_timeout=0)
    with conns.store(settings.store.dsn, a.connect_timeout) as store:
        if not locks.try_lock_target(store, target.name):
            return "skipped", time.perf_counter() - started
        try:
            with conns.target(target, a) as tconn:
                snap = snapshot_and_observe(tconn, store, target.name, a, writer).snapshot
                check = quick_check(store, tconn, target.name, a, states)
            audits.record_check(store, target.name, snap.snapshot.id, check.regressions,
                                check.clusters, check.windows.get("note") or None)
        finally:
            try:
                locks.unlock_target(store, target.name)
            except psycopg.Error:
                store.close()  # the lock may still be held: this session is not kept
    log.info(event("snapshot.taken", target=target.name, snapshot_id=snap.snapshot.id,
                   statements=snap.statements, regressions=check.regressions,
                   clusters=check.clusters))
    return "succeeded", time.perf_counter() - started


@dataclass
class Service:
    """What the jobs need from the running service: settings, metrics, hooks."""

    settings: Settings
    metrics: JobMetrics
    public_url: str
    busy_threads: int = 0
    health: JobHealth = field(default_factory=JobHealth)  # failing jobs, for /readyz
    # The recommendation step of the full audit: the recommend engine, as `pgarchitect audit`.
    recommender: Recommender = engine_recommender
    embedder: memory.Embedder | None = None  # loaded once from analyzer.embedder (first audit)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _writers: dict[str, StatementWriter] = field(default_factory=dict)
    # The snapshot jobs' store and target sessions, kept between jobs (analyzer/connections.py).
    connections: Connections = field(init=False)
    # The quick checks' rebuilt snapshot states, kept between jobs (analyzer/store/states.py).
    states: SnapshotStates = field(init=False)

    def __post_init__(self) -> None:
        self.connections = Connections(self.settings.analyzer.connection_idle_timeout)
        self.states = SnapshotStates(max_bytes=self.settings.analyzer.snapshot_cache_bytes)

    def writer(self, target: str) -> StatementWriter:
        """The snapshot writer of one target (its last state kept in memory)."""
        with self._lock:
            if target not in self._writers:
                self._writers[target] = StatementWriter.for_settings(
                    self.settings.analyzer)
            return self._writers[target]

    def memory_embedder(self) -> memory.Embedder:
        """The embedder of the recommendation memory (loaded once per process)."""
        with self._lock:
            if self.embedder is None:
                self.embedder = memory.load_embedder(self.settings.analyzer.embedder)
            return self.embedder

    def target(self, name: str) -> Target | None:
        """The configured target called `name`, or None."""
        return next((t for t in self.settings.targets if t.name == name), None)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work off the event loop, counted (shutdown must know it is there)."""

        def counted() -> T:
            with self._lock:
                self.busy_threads += 1
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self.busy_threads -= 1

        return await asyncio.to_thread(counted)


def make_app(service: Service) -> procrastinate.App:
    """The procrastinate app over the store, with the snapshot and audit tasks."""
    settings = service.settings
    assert settings.store.dsn is not None
    a = settings.analyzer
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.store.dsn.reveal(),
        kwargs={"application_name": "pgarchitect-analyzer-jobs"},
        min_size=1, max_size=max(4, a.worker_concurrency + 2),
        timeout=a.connect_timeout,
    )
    app = procrastinate.App(connector=connector)
    metrics = service.metrics

    @app.task(name=SNAPSHOT_TASK, pass_context=True)
    async def snapshot(context: procrastinate.JobContext, target: str) -> str:
        found = service.target(target)
        if found is None:  # the target left the configuration: the chain ends here
            log.warning(event("snapshot.unknown_target", target=target))
            return "skipped"
        with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
            await snapshot.configure(
                queueing_lock=snapshot_lock(target),
                schedule_at=next_snapshot(context.job.scheduled_at, datetime.now(UTC),
                                          a.snapshot_interval),
            ).defer_async(target=target)
        try:
            outcome, seconds = await service.in_thread(
                snapshot_and_check, settings, found, service.writer(found.name),
                service.connections, service.states)
        except Exception as exc:  # any cause: counted, logged once per cause, seen by /readyz
            metrics.snapshot_runs.labels(target, "failed").inc()
            metrics.jobs.labels(SNAPSHOT_TASK, "failed").inc()
            raise service.health.failed(SNAPSHOT_TASK, target, exc) from exc
        service.health.succeeded(SNAPSHOT_TASK, target)
        metrics.jobs.labels(SNAPSHOT_TASK, outcome).inc()
        if outcome == "succeeded":
            metrics.snapshot_duration.observe(seconds)
            metrics.snapshot_runs.labels(target, "success").inc()
        return outcome

    @app.task(name=AUDIT_TASK, pass_context=True,
              retry=procrastinate.RetryStrategy(max_attempts=100_000, wait=1,
                                                retry_exceptions={AuditBusy}))
    async def audit(context: procrastinate.JobContext, target: str, audit_id: int | None = None,
                    scheduled_for: str | None = None) -> str:
        found = service.target(target)
        if found is None:
            log.warning(event("audit.unknown_target", target=target))
            return "skipped"
        started = time.perf_counter()
        busy = False
        try:
            result: AuditResult = await service.in_thread(
                run_audit, a, found, settings.store.dsn, None, None, service.recommender,
                audit_id, RequestedBy.API if audit_id is not None else RequestedBy.SCHEDULE,
                service.memory_embedder())
        except AuditBusy:
            busy = True
            log.info(event("audit.busy", target=target, retry_in="1s"))
            raise
        except Exception as exc:  # any cause: counted, logged once per cause, seen by /readyz
            metrics.audit_runs.labels("failed").inc()
            metrics.audit_duration.observe(time.perf_counter() - started)
            metrics.jobs.labels(AUDIT_TASK, "failed").inc()
            await service.in_thread(notify.audit_failed, service, target, audit_id,
                                    reason_of(exc))
            raise service.health.failed(AUDIT_TASK, target, exc) from exc
        finally:
            # The next scheduled audit is queued once this one is over (not while it may still
            # be retried: a retried job and its successor would share the queueing lock).
            if scheduled_for is not None and not busy:
                await defer_scheduled_audit(app, service, target,
                                            datetime.fromisoformat(scheduled_for))
        service.health.succeeded(AUDIT_TASK, target)
        metrics.audit_runs.labels("success").inc()
        metrics.audit_duration.observe(result.duration_seconds)
        metrics.jobs.labels(AUDIT_TASK, "succeeded").inc()
        await service.in_thread(notify.new_proposals, service, result)
        return "succeeded"

    return app


async def defer_scheduled_audit(app: procrastinate.App, service: Service, target: str,
                                after: datetime) -> None:
    """Queue the target's next scheduled audit (a no-op when one is already waiting)."""
    a = service.settings.analyzer
    at = next_scheduled_audit(a, after)
    with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
        await app.tasks[AUDIT_TASK].configure(
            queueing_lock=scheduled_audit_lock(target), schedule_at=at,
        ).defer_async(target=target, scheduled_for=at.isoformat())


class AlreadyQueued(Exception):
    """An audit of the target is queued or running."""


OPEN_AUDIT_JOBS = (
    "/* pgarchitect */ SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s"
    " AND args->>'target' = %s AND (status = 'doing' OR (status = 'todo'"
    " AND (scheduled_at IS NULL OR scheduled_at <= now())))"
)


async def request_audit(app: procrastinate.App, store: psycopg.AsyncConnection[Any],
                        target: str) -> int:
    """Queue an audit of `target` now and return its id; AlreadyQueued when one is open."""
    row = await (await store.execute(OPEN_AUDIT_JOBS, (AUDIT_TASK, target))).fetchone()
    if row and row[0]:
        raise AlreadyQueued(target)
    cur = await store.execute(audits.QUEUE_AUDIT, (target, RequestedBy.API))
    got = await cur.fetchone()
    assert got is not None
    audit_id = int(got[0])
    try:
        await app.tasks[AUDIT_TASK].configure(
            queueing_lock=requested_audit_lock(target), priority=1,
        ).defer_async(target=target, audit_id=audit_id)
    except procrastinate.exceptions.AlreadyEnqueued:
        await store.execute("/* pgarchitect */ DELETE FROM pgarchitect.audit_run WHERE id = %s",
                            (audit_id,))
        raise AlreadyQueued(target) from None
    return audit_id


OPEN_JOBS = (
    "/* pgarchitect */ SELECT task_name, args->>'target', queueing_lock, status"
    " FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
)


async def ensure_chains(app: procrastinate.App, service: Service,
                        store: psycopg.AsyncConnection[Any]) -> None:
    """Start the snapshot and scheduled-audit chains of targets that have none.

    Looked up first, so that the queue's unique index is not hit (and PostgreSQL does not log
    a duplicate-key error) on every tick of every replica.
    """
    rows = await (await store.execute(OPEN_JOBS)).fetchall()
    snapshots = {target for task, target, _, _ in rows if task == SNAPSHOT_TASK}
    # A scheduled audit waiting or running keeps its chain: the running one queues the next.
    scheduled = {target for task, target, lock, status in rows if task == AUDIT_TASK
                 and (lock == scheduled_audit_lock(str(target)) or status == "doing")}
    now = datetime.now(UTC)
    for t in service.settings.targets:
        if t.name not in snapshots:
            with contextlib.suppress(procrastinate.exceptions.AlreadyEnqueued):
                await app.tasks[SNAPSHOT_TASK].configure(
                    queueing_lock=snapshot_lock(t.name)).defer_async(target=t.name)
        if t.name not in scheduled:
            await defer_scheduled_audit(app, service, t.name, now - timedelta(seconds=1))


async def retry_stalled(app: procrastinate.App, service: Service) -> int:
    """Put the jobs of workers whose heartbeat stopped back in the queue; return how many."""
    timeout = service.settings.analyzer.worker_stalled_timeout
    jobs = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=timeout)
    count = 0
    for job in jobs:
        assert job.id is not None
        try:
            if job.task_name == SNAPSHOT_TASK:
                # Its successor is already queued (deferred when it started): the snapshot
                # is given up rather than retried, and the chain goes on.
                await app.job_manager.finish_job_by_id_async(
                    job.id, procrastinate.jobs.Status.FAILED, delete_job=False)
            else:
                await app.job_manager.retry_job(job)
        except procrastinate.exceptions.ConnectorException:
            continue  # another replica took care of it first
        count += 1
        log.warning(event("job.stalled_retried", job_id=job.id, task=job.task_name,
                          target=job.task_kwargs.get("target")))
    if count:
        service.metrics.stalled_retried.inc(count)
    return count
