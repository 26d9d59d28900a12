"""The snapshot jobs' sessions kept between jobs (analyzer/connections.py), on real servers:
reused with their settings, reopened when lost or when the DSN changed, never kept in a
transaction, closed when idle too long and at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from analyzer.connections import Connections
from analyzer.jobs import snapshot_and_check
from analyzer.snapshots.source import APPLICATION_NAME
from pgarchitect.config import Settings, StoreSettings, Target
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.conftest import drop_database, new_database
from tests.waiting import eventually


@dataclass
class Fleet:
    settings: Settings
    target: Target
    store: str


@pytest.fixture(scope="module")
def fleet(pg18: PgServer) -> Iterator[Fleet]:
    """A migrated store and one small target (a few statements), both on PostgreSQL 18."""
    store = new_database(pg18, "store")
    target = new_database(pg18, "t", extensions=("pg_stat_statements",))
    try:
        migrate(Dsn(store))
        with psycopg.connect(target, autocommit=True) as conn:
            for i in range(5):
                conn.execute(f"SELECT {i} + 1".encode())
        t = Target("t", Dsn(target))
        yield Fleet(Settings(targets=(t,), store=StoreSettings(Dsn(store))), t, store)
    finally:
        drop_database(pg18, target)
        drop_database(pg18, store)


def sessions(dsn: str) -> set[int]:
    """The analyzer's backends on the database of `dsn`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND application_name = %s", (APPLICATION_NAME,)).fetchall()
    return {int(r[0]) for r in rows}


@pytest.fixture(autouse=True)
def no_sessions_left(fleet: Fleet) -> None:
    """Each test starts with no analyzer session (an earlier test's may still be ending)."""
    eventually(lambda: not sessions(fleet.target.dsn.reveal()) and not sessions(fleet.store),
               "no analyzer session on the target and the store")


@pytest.fixture
def conns() -> Iterator[Connections]:
    """A process's kept sessions (10 minutes idle), closed after the test."""
    kept = Connections(idle_timeout=600)
    yield kept
    kept.close()


def job(fleet: Fleet, conns: Connections, target: Target | None = None) -> None:
    outcome, _ = snapshot_and_check(fleet.settings, target or fleet.target, None, conns)
    assert outcome == "succeeded"


def test_two_jobs_share_the_sessions_and_keep_their_settings(fleet: Fleet,
                                                            conns: Connections) -> None:
    job(fleet, conns)
    target, store = sessions(fleet.target.dsn.reveal()), sessions(fleet.store)
    assert len(target) == 1 and len(store) == 1 and conns.idle() == 2
    job(fleet, conns)
    assert sessions(fleet.target.dsn.reveal()) == target and sessions(fleet.store) == store
    with conns.target(fleet.target, fleet.settings.analyzer) as tconn:
        assert tconn.info.backend_pid in target
        shown = [tconn.execute(f"SHOW {name}".encode()).fetchone()
                 for name in ("default_transaction_read_only", "statement_timeout",
                              "lock_timeout")]
    assert shown == [("on",), ("30s",), ("1s",)]


def test_terminated_sessions_are_reopened_with_one_line(
        fleet: Fleet, conns: Connections, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pgarchitect.analyzer.connections")
    job(fleet, conns)
    old = sessions(fleet.target.dsn.reveal()) | sessions(fleet.store)
    with psycopg.connect(fleet.store, autocommit=True) as admin:
        for pid in old:  # the target's backend and the store's: as a server restart does
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    job(fleet, conns)
    new = sessions(fleet.target.dsn.reveal()) | sessions(fleet.store)
    assert len(new) == 2 and not new & old
    lost = [r.getMessage() for r in caplog.records if "connection.lost" in r.getMessage()]
    assert len(lost) == 2 and all("action=reopened" in m for m in lost), lost


def test_a_session_left_in_a_transaction_is_not_kept(
        fleet: Fleet, conns: Connections, caplog: pytest.LogCaptureFixture) -> None:
    with conns.target(fleet.target, fleet.settings.analyzer) as tconn:
        tconn.execute("BEGIN")
        tconn.execute("SELECT 1")
        left = tconn.info.backend_pid
    assert conns.idle() == 0 and tconn.closed
    assert any("connection.not_idle" in r.getMessage() for r in caplog.records)
    eventually(lambda: left not in sessions(fleet.target.dsn.reveal()), "the session to end")
    job(fleet, conns)
    assert left not in sessions(fleet.target.dsn.reveal())
    with pytest.raises(psycopg.errors.DivisionByZero), \
            conns.target(fleet.target, fleet.settings.analyzer) as tconn:
        tconn.execute("SELECT 1 / 0")  # a job that raised: its session is not kept either
    assert tconn.closed and conns.idle() == 1  # the store's


def test_a_changed_dsn_opens_a_new_session_without_logging_it(
        fleet: Fleet, conns: Connections, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "pgarchitect.analyzer.connections")
    job(fleet, conns)
    (before,) = sessions(fleet.target.dsn.reveal())
    # The same database through another DSN, with a password (trust authentication ignores it).
    moved = Target("t", Dsn(fleet.target.dsn.reveal().replace("@", ":s3cr3t-pw@", 1)))
    job(fleet, conns, moved)
    eventually(lambda: before not in sessions(fleet.target.dsn.reveal()), "the old one to end")
    assert len(sessions(fleet.target.dsn.reveal())) == 1 and conns.idle() == 2
    assert any("connection.settings_changed" in r.getMessage() for r in caplog.records)
    assert "s3cr3t-pw" not in caplog.text


def test_idle_sessions_close_after_the_timeout_and_at_shutdown(fleet: Fleet) -> None:
    now = [0.0]
    conns = Connections(idle_timeout=60, clock=lambda: now[0])
    job(fleet, conns)
    assert conns.idle() == 2 and conns.close_idle() == 0
    now[0] += 61
    assert conns.close_idle() == 2 and conns.idle() == 0
    eventually(lambda: not sessions(fleet.target.dsn.reveal()) and not sessions(fleet.store),
               "the idle sessions to end")
    job(fleet, conns)
    assert conns.idle() == 2
    conns.close()  # shutdown: the kept ones closed, and any given back later too
    assert conns.idle() == 0
    job(fleet, conns)
    assert conns.idle() == 0
    eventually(lambda: not sessions(fleet.target.dsn.reveal()) and not sessions(fleet.store),
               "every session to end")


def test_no_session_kept_with_a_zero_timeout(fleet: Fleet) -> None:
    conns = Connections(idle_timeout=0)
    job(fleet, conns)
    assert conns.idle() == 0
