"""Which snapshot and audit jobs of this process are failing, and why: logged once per cause.

A job that keeps failing for the same reason (a target down, a catalog the analyzer cannot
read) would otherwise log the same line every few minutes; here the first failure of a cause
is logged (with its traceback when the cause is not one of the expected kinds), repeats are
not, and the recovery is. `/readyz` reports the failing jobs (analyzer/api/routes.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import psycopg

from pgarchitect.db import first_line
from pgarchitect.dsn import mask_dsn
from pgarchitect.errors import UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.jobs")

EXPECTED = (UserError, psycopg.Error, OSError)


class JobFailed(Exception):
    """A job failed; it is counted and logged already (the service logs this as one line)."""


def reason_of(exc: BaseException) -> str:
    """One masked line for a failure."""
    if isinstance(exc, psycopg.Error):
        return first_line(exc) or type(exc).__name__
    return mask_dsn(" ".join(str(exc).split())) or type(exc).__name__


@dataclass(frozen=True)
class Failure:
    """The current failure of one (task, target)."""

    task: str
    target: str
    reason: str
    since: float  # time.time() of the first failure with this reason
    count: int


@dataclass
class JobHealth:
    """The failing (task, target) pairs of this process."""

    _failing: dict[tuple[str, str], Failure] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, task: str, target: str, exc: BaseException) -> JobFailed:
        """Record a failure (logged when its cause is new); the exception the task raises."""
        reason = reason_of(exc)
        with self._lock:
            old = self._failing.get((task, target))
            new = old is None or old.reason != reason
            since = time.time() if new or old is None else old.since
            count = 1 if new or old is None else old.count + 1
            self._failing[(task, target)] = Failure(task, target, reason, since, count)
        if new:
            root = exc.__cause__ if isinstance(exc.__cause__, BaseException) else exc
            log.error(event(f"{task_kind(task)}.failed", target=target, error=reason),
                      exc_info=None if isinstance(root, EXPECTED) else root)
        return JobFailed(f"{task} of {target} failed: {reason}")

    def succeeded(self, task: str, target: str) -> None:
        """Forget a failure; the recovery is logged."""
        with self._lock:
            old = self._failing.pop((task, target), None)
        if old is not None:
            log.info(event(f"{task_kind(task)}.recovered", target=target, failures=old.count))

    def failing(self) -> list[Failure]:
        """The failing jobs, by target then task."""
        with self._lock:
            return sorted(self._failing.values(), key=lambda f: (f.target, f.task))


def task_kind(task: str) -> str:
    """'snapshot' or 'audit' from a task name such as 'pgarchitect.snapshot'."""
    return task.rpartition(".")[2] or task
