"""Sessions kept between the service's snapshot jobs, per process (docs/scaling.md,
"Sessions kept between jobs").

A snapshot job needs a store session and a session on its target. Opening both for every job
cost more than the job's own work at small targets, so one process keeps them: the store
sessions in a small stack, one session per target. The rules:

- A session is lent to one job at a time: taken out of the cache, given back when the job ends.
- It goes back only when it is idle (no transaction open, not broken) and the job did not
  raise; otherwise it is closed. Before it is lent again, its state is checked and one empty
  query (a round trip that pg_stat_statements does not record) shows the server still has
  it: a terminated backend, a restarted server or a network error closes it, with one log
  line, and the job gets a new session.
- A target session is kept for the DSN and settings it was opened with (`connect_target`'s
  read-only, statement_timeout and lock_timeout): another DSN for the same target name opens
  a new one.
- Sessions idle longer than `analyzer.connection_idle_timeout` are closed (at every lend and
  give-back, and on every maintenance tick of the service); 0 keeps none, a session per job.
- At most MAX_IDLE are kept; one more given back is closed. `close` (at shutdown) closes the
  idle ones and every one given back after it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import pq

from analyzer.snapshots.source import connect_target
from analyzer.store.connection import Conn, connect_store
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.db import first_line
from pgarchitect.dsn import Dsn
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.connections")

MAX_IDLE = 128  # sessions one process keeps (targets and store together)


@dataclass
class _Idle:
    conn: Conn
    key: Hashable  # whose session: ("store",) or ("target", name)
    opened_for: Hashable  # what it was opened with (DSN, session settings)
    label: str
    since: float  # time.monotonic() when given back


class Connections:
    """The sessions one process keeps between jobs (see the module doc)."""

    def __init__(self, idle_timeout: float, max_idle: int = MAX_IDLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []  # most recently given back last
        self._closed = False

    def store(self, dsn: Dsn, connect_timeout: float) -> contextlib.AbstractContextManager[Conn]:
        """A store session (connect_store's: migrated, autocommit, pgvector) for one job."""
        return self._lend(("store",), dsn, "store",
                          lambda: connect_store(dsn, connect_timeout))

    def target(self, target: Target,
               settings: AnalyzerSettings) -> contextlib.AbstractContextManager[Conn]:
        """A session on `target` (connect_target's: read-only, time-limited) for one job."""
        label = f"target {target.name}"
        opened_for = (target.dsn, settings.statement_timeout, settings.lock_timeout)
        return self._lend(("target", target.name), opened_for, label,
                          lambda: connect_target(target.dsn, label, settings))

    @contextlib.contextmanager
    def _lend(self, key: Hashable, opened_for: Hashable, label: str,
              connect: Callable[[], Conn]) -> Iterator[Conn]:
        conn = self._take(key, opened_for)
        if conn is None:
            conn = connect()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            self._give_back(conn, key, opened_for, label, ok)

    def _take(self, key: Hashable, opened_for: Hashable) -> Conn | None:
        """A kept session of `key` that is still alive, or None."""
        while True:
            with self._lock:
                expired = self._expired()
                found = next((i for i in reversed(self._idle) if i.key == key), None)
                if found is not None:
                    self._idle.remove(found)
            _close_all(expired)
            if found is None:
                return None
            if found.opened_for != opened_for:
                log.info(event("connection.settings_changed", connection=found.label,
                               action="reopened"))
                _close(found.conn)
                continue
            reason = _unusable(found.conn)
            if reason is None:
                return found.conn
            # info: reopened at once, nothing to act on (a failing reopen fails the job)
            log.info(event("connection.lost", connection=found.label, error=reason,
                           action="reopened"))
            _close(found.conn)

    def _give_back(self, conn: Conn, key: Hashable, opened_for: Hashable, label: str,
                   ok: bool) -> None:
        keep = ok and not conn.closed and not conn.broken
        if keep and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            log.warning(event("connection.not_idle", connection=label,
                              state=conn.info.transaction_status.name, action="closed"))
            keep = False
        with self._lock:
            expired = self._expired()
            keep = keep and not self._closed and self.idle_timeout > 0 \
                and len(self._idle) < self.max_idle
            if keep:
                self._idle.append(_Idle(conn, key, opened_for, label, self._clock()))
        _close_all(expired)
        if not keep:
            _close(conn)

    def _expired(self) -> list[Conn]:
        """Take the sessions idle past the timeout out of the cache (the lock held)."""
        limit = self._clock() - self.idle_timeout
        old = [i.conn for i in self._idle if i.since <= limit]
        if old:
            self._idle = [i for i in self._idle if i.since > limit]
        return old

    def close_idle(self) -> int:
        """Close the sessions idle past the timeout; returns how many."""
        with self._lock:
            expired = self._expired()
        _close_all(expired)
        return len(expired)

    def idle(self) -> int:
        """How many sessions are kept now."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Close every kept session, and from now on every one given back (shutdown)."""
        with self._lock:
            self._closed = True
            kept, self._idle = [i.conn for i in self._idle], []
        _close_all(kept)


def _unusable(conn: Conn) -> str | None:
    """Why a kept session cannot be lent again, or None when it can."""
    if conn.closed or conn.broken:
        return "closed"
    status = conn.info.transaction_status
    if status != pq.TransactionStatus.IDLE:
        return f"left {status.name.lower()}"
    try:
        conn.execute("")  # an empty query: a round trip that no statistics view records
    except psycopg.Error as exc:
        return first_line(exc)
    return None


def _close(conn: Conn) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        conn.close()


def _close_all(conns: list[Conn]) -> None:
    for conn in conns:
        _close(conn)
