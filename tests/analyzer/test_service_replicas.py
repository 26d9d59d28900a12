"""Several `pgarchitect analyzer` replicas on one store: continuous detection, the per-target
lock, a replica killed with SIGKILL mid-audit, scheduled audits of twenty targets run once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer import planted
from tests.analyzer.service import Analyzer, analyzer, firing, rows, sample
from tests.conftest import drop_database, new_database
from tests.monitoring.stack import prometheus, rules_without_for
from tests.waiting import eventually


def snapshot_count(store: str) -> int:
    return int(rows(store, "SELECT count(*) FROM pgarchitect.snapshot WHERE target = 'app'")[0][0])


def after_next_snapshots(store: str, n: int = 1) -> None:
    start = snapshot_count(store)
    eventually(lambda: snapshot_count(store) >= start + n, f"{n} more snapshot(s)")


def running_replica(replicas: list[Analyzer], audit_id: str) -> Analyzer:
    """The replica whose worker started the job of audit `audit_id` (from its log)."""
    for r in replicas:
        if f"audit_id={audit_id})" in r.log():
            return r
    raise AssertionError("no replica started the audit")


@contextlib.contextmanager
def workload(dsn: str) -> Iterator[None]:
    """The planted statements, round after round in a thread, until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        seed = 10
        while not stop.is_set():
            planted.run(dsn, planted.Phase(rounds=2, seed=seed))
            seed += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


# The current window is the last few seconds, so a fresh store can tell (the defaults, a
# week against a day, need that much history; docs/analyzer.md).
WINDOWS = {"regression": {"current_window": "4s", "baseline_window": "1h"}}


def test_regression_detected_without_audit_and_sigkill_mid_audit_loses_nothing(
        app: str, store: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(analyzer(tmp_path, "a", store, {"app": app}, **WINDOWS))
        b = stack.enter_context(analyzer(tmp_path, "b", store, {"app": app}, **WINDOWS))
        # A steady workload over a few snapshots, then the planted regression under load.
        for seed in (1, 2):
            after_next_snapshots(store)
            planted.run(app, planted.Phase(rounds=300, seed=seed))
        after_next_snapshots(store)
        planted.drop_indexes(app)
        stack.enter_context(workload(app))

        def regressions() -> float:
            return sample(a.metrics(), "pgarchitect_regressions", target="app") or 0.0

        eventually(lambda: regressions() > 0, "pgarchitect_regressions{target=app} > 0")
        rule_dir = tmp_path / "rules"
        rule_dir.mkdir()
        prom = stack.enter_context(prometheus(
            tmp_path, {"pgarchitect-analyzer": [a.url.split("//")[1]]},
            rule_files=rules_without_for(rule_dir)))
        eventually(lambda: bool(firing(prom, "PgarchitectRegressionDetected", target="app")),
                   "PgarchitectRegressionDetected firing for app")
        m = b.metrics()  # every replica exports the same figures, from the store
        assert (sample(m, "pgarchitect_regressions", target="app") or 0) > 0
        assert (sample(m, "pgarchitect_regression_clusters", target="app") or 0) > 0
        assert rows(store, "SELECT count(*) FROM pgarchitect.audit_run")[0][0] == 0

        # Hold the audit inside its one result transaction: clusters cannot be written.
        blocker = psycopg.connect(store)
        blocker.execute("LOCK TABLE pgarchitect.regression_cluster IN ACCESS EXCLUSIVE MODE")
        status, body = a.request("POST", "/admin/database/run-audit", {})
        assert status == 202
        audit_id = body["audit_id"]

        def waiting_on_clusters() -> bool:
            return bool(rows(store, "SELECT count(*) FROM pg_locks WHERE NOT granted AND"
                             " relation = 'pgarchitect.regression_cluster'::regclass")[0][0])

        eventually(waiting_on_clusters, "the audit to wait inside its result transaction")
        assert b.request("POST", "/admin/database/run-audit", {})[0] == 409
        victim = running_replica([a, b], audit_id)
        survivor = b if victim is a else a
        assert victim.process.popen is not None
        victim.process.popen.kill()  # SIGKILL: no handler, no cleanup
        victim.process.popen.wait(timeout=30)
        # Its job is still the target's open audit until the survivor takes it over.
        assert survivor.request("POST", "/admin/database/run-audit", {})[0] == 409
        blocker.rollback()
        blocker.close()

        def succeeded() -> bool:
            code, report = survivor.request("GET", f"/admin/database/audits/{audit_id}")
            return code == 200 and "windows" in report  # the stored report

        eventually(succeeded, f"audit {audit_id} retried by the surviving replica")
        (count, clusters, status_) = rows(store, (
            "SELECT regression_count, cluster_count, status FROM pgarchitect.audit_run"
            " WHERE id = %s"), int(audit_id))[0]
        assert status_ == "succeeded" and count > 0
        # Nothing partial of the killed attempt: exactly the retried audit's rows.
        assert rows(store, "SELECT count(*) FROM pgarchitect.regression"
                    " WHERE audit_id = %s", int(audit_id))[0][0] == count
        assert rows(store, "SELECT count(*) FROM pgarchitect.regression_cluster"
                    " WHERE audit_id = %s", int(audit_id))[0][0] == clusters
        assert rows(store, "SELECT count(*) FROM pgarchitect.audit_run")[0][0] == 1
        # The survivor ran the job again (our maintenance loop's retry, or procrastinate's own
        # clean-up of the dead worker got there first: either is fine, the outcome is what
        # counts, and it is checked above).
        assert f"audit_id={audit_id}) ended with status: Success" in survivor.log()


@pytest.mark.slow
def test_scheduled_audits_of_twenty_targets_run_once_across_two_replicas(
        pg18: PgServer, store: str, tmp_path: Path) -> None:
    targets = {f"t{i:02d}": new_database(pg18, "fleet", extensions=("pg_stat_statements",))
               for i in range(20)}
    try:
        now = datetime.now(UTC)
        fire = (now + timedelta(minutes=1 if now.second < 45 else 2)).replace(second=0,
                                                                            microsecond=0)
        cron = f"{fire.minute} {fire.hour} * * *"  # once a day, about a minute from now
        settings = {"schedule": cron, "snapshot_interval": "1h"}
        with analyzer(tmp_path, "a", store, targets, **settings), \
                analyzer(tmp_path, "b", store, targets, **settings):

            def scheduled_done() -> bool:
                return rows(store, "SELECT count(*) FROM pgarchitect.audit_run WHERE"
                            " requested_by = 'schedule' AND status = 'succeeded'")[0][0] >= 20

            eventually(scheduled_done, "the twenty scheduled audits", within=180)
            per_target = dict(rows(store, "SELECT target, count(*) FROM pgarchitect.audit_run"
                                   " WHERE requested_by = 'schedule' GROUP BY target"))
            assert per_target == dict.fromkeys(targets, 1)
            started = rows(store, "SELECT min(started_at) FROM pgarchitect.audit_run")[0][0]
            assert started >= fire
            # Each target's next scheduled audit waits in the queue exactly once.
            nxt = rows(store, "SELECT args->>'target', count(*) FROM procrastinate_jobs"
                       " WHERE task_name = 'audit' AND status = 'todo' GROUP BY 1")
            assert dict(nxt) == dict.fromkeys(targets, 1)
    finally:
        for dsn in targets.values():
            drop_database(pg18, dsn)


def test_store_migrated_by_two_at_once(pg18: PgServer) -> None:
    """The job engine's schema is applied once even when two migrators race."""
    import threading

    dsn = new_database(pg18, "store")
    try:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                migrate(Dsn(dsn))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert rows(dsn, "SELECT count(*) FROM pgarchitect.schema_migrations"
                    " WHERE name = '0005_job_engine'")[0][0] == 1
    finally:
        drop_database(pg18, dsn)
