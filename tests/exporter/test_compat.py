"""The postgres_exporter compatibility set on real servers (15 and 18): the postgres-mixin's
names and labels are there, with the server's values; switching it off removes exactly them."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from exporter.families import COMPAT, SPECS
from pgarchitect.demo.embedded import PgServer, embedded_postgres, standby_of
from tests.conftest import PG_VERSIONS, new_database
from tests.exporter.conftest import Samples, running_exporter, settings_for
from tests.waiting import eventually, eventually_async

# Every metric name the postgres-mixin's "Postgres Overview" dashboard and its alerts read,
# with the labels they select or aggregate by (besides job/instance). Taken from
# prometheus-community/postgres_exporter, postgres_mixin/dashboards/postgres-overview.json and
# postgres_mixin/alerts/postgres.libsonnet (commit dbb1987e, 2026).
MIXIN: dict[str, set[str]] = {
    "pg_up": set(),
    "pg_exporter_last_scrape_error": set(),
    "pg_settings_max_connections": set(),
    "pg_settings_superuser_reserved_connections": set(),
    "pg_settings_max_locks_per_transaction": set(),
    "pg_settings_autovacuum_vacuum_threshold": set(),
    "pg_settings_autovacuum_vacuum_scale_factor": set(),
    "pg_stat_activity_count": {"datname", "state"},
    "pg_stat_activity_max_tx_duration": {"datname", "state"},
    "pg_locks_count": {"datname", "mode"},
    "pg_replication_lag": set(),
    "pg_replication_is_replica": set(),
    "pg_replication_slots_active": {"slot_name"},
    "pg_stat_user_tables_n_live_tup": {"datname", "relname"},
    "pg_stat_user_tables_n_dead_tup": {"datname", "relname"},
    **{f"pg_stat_database_{c}": {"datid", "datname"} for c in (
        "numbackends", "xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned",
        "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted", "conflicts", "deadlocks")},
    **{f"pg_stat_bgwriter_{c}_total": set() for c in (
        "checkpoints_timed", "checkpoints_req", "buffers_checkpoint", "buffers_clean",
        "buffers_backend", "buffers_backend_fsync", "buffers_alloc")},
}
APP = "compat-standby"
SLOT = "compat_slot"
IDLE_SLOT = "compat_idle_slot"
DB = "cmp"
IDLE = 3


@dataclass(frozen=True)
class Pair:
    """A primary with two physical slots (one used by the standby) and its standby."""

    primary: PgServer
    standby: PgServer


@pytest.fixture(scope="module", params=PG_VERSIONS, ids=lambda v: f"pg{v}")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    with embedded_postgres(request.param, settings={"wal_level": "replica"}) as primary:
        primary.create_database(DB)
        primary.execute("CREATE TABLE tables_probe (id int)")  # the exporter's database
        with psycopg.connect(primary.dsn(DB), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int)")
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (SLOT,))
            conn.execute("SELECT pg_create_physical_replication_slot(%s)", (IDLE_SLOT,))
        settings = {"primary_slot_name": SLOT, "wal_receiver_status_interval": "1"}
        with standby_of(primary, application_name=APP, settings=settings) as standby:
            eventually(lambda: primary.execute(
                f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
                f"{SLOT} active", until=lambda rows: rows == [(True,)])
            yield Pair(primary, standby)


def labels_of(got: Samples, name: str) -> set[str]:
    return {k for lab, _ in got.get(name) for k in lab}


async def scrape(dsn: str, **exporter: object) -> Samples:
    async with running_exporter(settings_for({"t": dsn}, **exporter)) as exp:
        return await exp.samples()


def server_row(dsn: str, query: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


async def test_mixin_names_and_values_on_the_primary(pair: Pair) -> None:
    # The exporter watches from `postgres`, so the backends of `cmp` are the test's alone.
    dsn = pair.primary.dsn(DB)
    idle = [psycopg.connect(dsn, autocommit=True) for _ in range(IDLE)]
    holder = psycopg.connect(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(5):
                conn.execute("INSERT INTO t VALUES (1)")
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # idle in transaction, holding
        stats = ("SELECT datid, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned,"
                 " tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, deadlocks"
                 f" FROM pg_stat_database WHERE datname = '{DB}'")
        before = server_row(dsn, stats)
        got = await scrape(pair.primary.dsn())
        after = server_row(dsn, stats)
    finally:
        holder.close()
        for conn in idle:
            conn.close()
    for name, labels in MIXIN.items():
        if name == "pg_replication_slots_active":
            continue  # below: the standby's slot
        assert got.get(name), name
        assert labels <= labels_of(got, name), (name, labels_of(got, name))
    columns = ("xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned",
               "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted", "conflicts",
               "deadlocks")
    datid = str(before[0])
    for i, column in enumerate(columns, start=1):
        value = got.value(f"pg_stat_database_{column}", datname=DB, datid=datid)
        assert float(before[i]) <= value <= float(after[i]), column
    # The exporter's own counters come from the same rows.
    assert got.value("pg_stat_database_xact_commit", datname=DB) == got.value(
        "pg_stat_database_xact_commit_total", datname=DB)
    assert got.value("pg_stat_database_numbackends", datname=DB) == IDLE + 1
    assert got.value("pg_stat_activity_count", datname=DB, state="idle") == IDLE
    assert got.value("pg_stat_activity_count", datname=DB, state="idle in transaction") == 1
    assert got.value("pg_stat_activity_count", datname=DB, state="active") == 0
    assert got.value("pg_stat_activity_max_tx_duration", datname=DB,
                     state="idle in transaction") > 0
    assert got.value("pg_locks_count", datname=DB, mode="accessexclusivelock") == 1
    assert got.value("pg_locks_count", datname=DB, mode="sireadlock") == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_locks_per_transaction',"
            " 'superuser_reserved_connections', 'autovacuum_vacuum_threshold',"
            " 'autovacuum_vacuum_scale_factor', 'shared_buffers', 'checkpoint_timeout')"
        ).fetchall())
        block = int(server_row(dsn, "SHOW block_size")[0])
    for name in ("max_locks_per_transaction", "superuser_reserved_connections",
                 "autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor"):
        assert got.value(f"pg_settings_{name}") == float(settings[name]), name
    assert got.value("pg_settings_shared_buffers_bytes") == int(settings["shared_buffers"]) * block
    assert got.value("pg_settings_checkpoint_timeout_seconds") == int(
        settings["checkpoint_timeout"])
    assert got.value("pg_replication_is_replica") == 0
    assert got.value("pg_replication_lag") == 0
    assert got.value("pg_exporter_last_scrape_error") == 1  # no pg_stat_statements here
    slots = {lab["slot_name"]: v for lab, v in got.get("pg_replication_slots_active")}
    assert slots == {SLOT: 1.0, IDLE_SLOT: 0.0}


async def test_standby_is_a_replica_with_its_lag(pair: Pair) -> None:
    got = await scrape(pair.standby.dsn())
    assert got.value("pg_replication_is_replica") == 1
    assert got.value("pg_replication_lag") == got.value(
        "pg_replication_lag_seconds", application_name="standby")
    assert got.value("pg_exporter_collector_up", collector="replication") == 1


async def test_switching_off_removes_exactly_the_compat_names(pair: Pair) -> None:
    dsn = pair.primary.dsn()
    on, off = await scrape(dsn), await scrape(dsn, postgres_exporter_compat=False)
    assert on.families - off.families == COMPAT
    assert off.families & COMPAT == set()
    assert set(SPECS) - COMPAT >= off.families


async def test_last_scrape_error_is_0_on_a_healthy_target(pg_server: PgServer) -> None:
    dsn = new_database(pg_server, "healthy", extensions=("pg_stat_statements",))
    async with running_exporter(settings_for({"t": dsn})) as exp:
        # The exporter's own statements enter the view one round after they first ran.
        got = await eventually_async(
            exp.samples, "a round without errors",
            until=lambda s: s.value("pg_exporter_last_scrape_error") == 0)
    proc = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=got.body, text=True,
        capture_output=True, timeout=60)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout
