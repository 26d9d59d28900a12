"""Around an audit: the store session, the per-target lock, the running / failed record."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import psycopg

from analyzer.analysis.windows import WindowRequest, choose_windows
from analyzer.store import audits, locks, snapshots
from analyzer.store.connection import Conn, connect_store
from analyzer.vocabulary import RequestedBy
from pgarchitect.config import AnalyzerSettings
from pgarchitect.db import first_line
from pgarchitect.dsn import Dsn, mask_dsn
from pgarchitect.errors import UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.audit")


class AuditFailed(UserError):
    """An audit did not complete; it is recorded as failed and nothing partial was kept."""

    exit_code = 1


class AuditBusy(UserError):
    """Another audit of the same target is running."""


@dataclass(frozen=True)
class Run:
    """A running audit: its id and when it started."""

    audit_id: int
    started_at: datetime
    started: float  # perf_counter at the start

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@contextlib.contextmanager
def store_session(store_dsn: Dsn, settings: AnalyzerSettings) -> Iterator[Conn]:
    store = connect_store(store_dsn, settings.connect_timeout)
    try:
        yield store
    finally:
        with contextlib.suppress(psycopg.Error):
            store.close()


@contextlib.contextmanager
def recorded_audit(
    store: Conn, store_dsn: Dsn, target: str, settings: AnalyzerSettings,
    request: WindowRequest | None, queued_id: int | None = None,
    requested_by: str = RequestedBy.CLI,
) -> Iterator[Run]:
    """Hold the target's audit lock, record the audit as running, and as failed on error."""
    if not locks.try_lock_target(store, target):
        raise AuditBusy(f"an audit of target {target!r} is already running")
    audits.fail_abandoned(store)
    if request is not None:
        # A mistyped snapshot id is the operator's error, not a failed audit.
        choose_windows(snapshots.list_snapshots(store, target), settings.regression, request)
    audit_id, started_at = audits.start_audit(store, target, queued_id, requested_by)
    run = Run(audit_id, started_at, time.perf_counter())
    log.info(event("audit.started", target=target, audit_id=audit_id))
    try:
        yield run
    except Exception as exc:
        reason = first_line(exc) if isinstance(exc, psycopg.Error) else mask_dsn(str(exc))
        reason = reason or type(exc).__name__
        _record_failure(store, store_dsn, audit_id, reason, run.elapsed(), settings)
        log.error(event("audit.failed", target=target, audit_id=audit_id, error=reason))
        raise AuditFailed(f"audit {audit_id} of {target} failed: {reason}") from exc


def _record_failure(store: Conn, store_dsn: Dsn, audit_id: int, reason: str,
                    duration: float, settings: AnalyzerSettings) -> None:
    """Mark the audit failed; through a new session when the old one is gone."""
    for attempt in range(2):
        try:
            conn = store if attempt == 0 and not store.closed and not store.broken else (
                connect_store(store_dsn, settings.connect_timeout))
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            audits.fail_audit(conn, audit_id, reason, duration)
            if conn is not store:
                conn.close()
            return
        except (psycopg.Error, UserError) as exc:
            log.warning(event("audit.record_failure_failed", audit_id=audit_id,
                              attempt=attempt + 1, error=first_line(exc)))
