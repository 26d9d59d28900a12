"""postgres-mixin-style PromQL over the postgres_exporter compatibility names, through a real
Prometheus that scraped real exporters: one per server, as postgres_exporter is deployed (a
primary with a replication slot, and its streaming standby), PostgreSQL 18."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgarchitect.demo.embedded import embedded_postgres, standby_of

from .stack import Process, Prometheus, free_port, http_ok, prometheus, running, wait_for

DB = "cmp"
SLOT = "mixin_slot"

# Written for this test in the style of the mixin's alerts and dashboard panels.
CONNECTIONS_IN_USE = (
    "sum by (instance) (pg_stat_activity_count{job='postgres'})"
    " / (sum by (instance) (pg_settings_max_connections{job='postgres'})"
    " - sum by (instance) (pg_settings_superuser_reserved_connections{job='postgres'}))")
CACHE_HIT_RATIO = (
    f"avg by (datname, instance) (rate(pg_stat_database_blks_hit{{datname='{DB}'}}[10s])"
    f" / (rate(pg_stat_database_blks_hit{{datname='{DB}'}}[10s])"
    f" + rate(pg_stat_database_blks_read{{datname='{DB}'}}[10s])))")
COMMIT_RATE = (
    f"avg by (datname, instance) (irate(pg_stat_database_xact_commit{{datname='{DB}'}}[10s])"
    f" + irate(pg_stat_database_xact_rollback{{datname='{DB}'}}[10s]))")
REPLICATION_LAG = (
    "pg_replication_lag{job='postgres'} and on (instance) (pg_replication_is_replica == 1)")
SLOT_ACTIVE = f"pg_replication_slots_active{{slot_name='{SLOT}'}}"


def cli() -> list[str]:
    script = Path(sys.executable).with_name("pgarchitect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgarchitect"]


@dataclass
class Stack:
    prom: Prometheus
    primary_dsn: str
    instances: dict[str, str]  # server role -> instance label
    logs: list[Process]

    def tails(self) -> str:
        return "\n".join(p.log_tail() for p in self.logs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("compat")
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(embedded_postgres(18, settings={"wal_level": "replica"}))
        dsn = primary.create_database(DB)
        primary.execute(f"SELECT pg_create_physical_replication_slot('{SLOT}')")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int)")
        standby = stack.enter_context(standby_of(
            primary, application_name="mixin-standby",
            settings={"primary_slot_name": SLOT, "wal_receiver_status_interval": "1"}))
        procs, instances = [], {}
        for role, server in (("primary", primary), ("standby", standby)):
            port = free_port()
            proc = Process(f"exporter-{role}", [
                *cli(), "exporter", "--dsn", f"{role}={server.dsn()}",
                "--listen", f"127.0.0.1:{port}", "--min-refresh-interval", "0"],
                tmp / f"exporter-{role}.log")
            url = f"http://127.0.0.1:{port}/metrics"
            procs.append(stack.enter_context(
                running(proc, functools.partial(http_ok, url), timeout=60)))
            instances[role] = f"127.0.0.1:{port}"
        prom = stack.enter_context(prometheus(
            tmp, {"postgres": list(instances.values())}, interval="2s"))
        procs.append(prom.process)
        yield Stack(prom, dsn, instances, procs)


def commits(dsn: str, stop: threading.Event) -> None:
    """Small committed writes and reads until stopped (bounded by the test's deadline)."""
    with psycopg.connect(dsn, autocommit=True, application_name="mixin-load") as conn:
        while not stop.is_set():
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("SELECT count(*) FROM t")
            stop.wait(0.01)  # pacing the load, not waiting for a state


def by_instance(prom: Prometheus, expr: str) -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1]) for r in prom.query(expr)}


def test_mixin_queries_return_data(stack: Stack) -> None:
    prom, primary = stack.prom, stack.instances["primary"]
    wait_for("both exporters scraped", prom.targets_up, timeout=60, on_timeout=stack.tails)
    stop = threading.Event()
    load = threading.Thread(target=commits, args=(stack.primary_dsn, stop), daemon=True)
    load.start()
    try:
        def all_answer() -> dict[str, dict[str, float]] | None:
            got = {expr: by_instance(prom, expr) for expr in (
                CONNECTIONS_IN_USE, CACHE_HIT_RATIO, COMMIT_RATE, REPLICATION_LAG, SLOT_ACTIVE)}
            ready = all(got.values()) and got[COMMIT_RATE].get(primary, 0) > 0
            return got if ready else None

        got = wait_for("the mixin-style queries to return data", all_answer, timeout=90,
                       interval=1, on_timeout=stack.tails)
    finally:
        stop.set()
        load.join(30)
    assert set(got[CONNECTIONS_IN_USE]) == set(stack.instances.values())
    assert 0 < got[CONNECTIONS_IN_USE][primary] < 1
    assert 0 <= got[CACHE_HIT_RATIO][primary] <= 1
    assert got[COMMIT_RATE][primary] > 0
    # Only the standby is a replica: the lag series is the standby's.
    assert set(got[REPLICATION_LAG]) == {stack.instances["standby"]}
    assert got[REPLICATION_LAG][stack.instances["standby"]] >= 0
    assert got[SLOT_ACTIVE] == {primary: 1.0}
