"""A stand-in for the exporter, the analyzer and the reference app, for monitoring tests.

Serves three /metrics endpoints with prometheus_client, using exactly the metric names
and labels docs/monitoring.md assumes, and keeps the counters moving:

- refapp port: pg_orm_query_duration_seconds (the SDK's own buckets) and pg_orm_queries_total.
  Path "orm" is slow (9 of 10 queries at 200 ms, so its 50 ms SLO burns 18x), path "thin"
  is fast (2 ms).
- exporter port: the pg_* health, statement and self metrics. Target db1 is up with a
  transaction open for an hour; target db2 is down (pg_up 0) with a 2-hour transaction.
- analyzer port: the pgarchitect_* metrics of docs/metrics.md (2 regressions on db1, one
  proposed recommendation, a recent successful audit).

Usage: python metrics_source.py EXPORTER_PORT ANALYZER_PORT REFAPP_PORT
Runs until SIGTERM / SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from exporter.instrument import BUCKETS

TICK = 0.1


def refapp_metrics(reg: CollectorRegistry) -> Callable[[], None]:
    hist = Histogram(
        "pg_orm_query_duration_seconds",
        "ORM-path query latency.",
        ["orm_path", "operation", "datname"],
        buckets=BUCKETS,
        registry=reg,
    )
    queries = Counter(
        "pg_orm_queries_total",
        "ORM-path queries by outcome.",
        ["orm_path", "operation", "datname", "outcome"],
        registry=reg,
    )

    def tick() -> None:
        orm = hist.labels("orm", "select", "app")
        for _ in range(9):
            orm.observe(0.2)
        orm.observe(0.01)
        thin = hist.labels("thin", "select", "app")
        for _ in range(10):
            thin.observe(0.002)
        queries.labels("orm", "select", "app", "ok").inc(9)
        queries.labels("orm", "select", "app", "error").inc(1)
        queries.labels("thin", "select", "app", "ok").inc(10)
        queries.labels("thin", "select", "app", "error").inc(0)

    return tick


def exporter_metrics(reg: CollectorRegistry) -> Callable[[], None]:
    def g(name: str, labels: list[str]) -> Gauge:
        return Gauge(name, name, labels, registry=reg)

    def c(name: str, labels: list[str]) -> Counter:
        return Counter(name, name, labels, registry=reg)

    up = g("pg_up", ["target"])
    up.labels("db1").set(1)
    up.labels("db2").set(0)
    info = g("pg_server_version_info", ["target", "version"])
    info.labels("db1", "17.2").set(1)
    info.labels("db2", "16.6").set(1)
    g("pg_settings_max_connections", ["target"]).labels("db1").set(100)
    activity = g("pg_stat_activity_connections", ["target", "datname", "state", "application_name"])
    activity.labels("db1", "app", "active", "web").set(5)
    activity.labels("db1", "app", "idle", "web").set(10)
    tx = g("pg_stat_activity_max_tx_duration_seconds", ["target", "datname"])
    tx.labels("db1", "app").set(3600)
    tx.labels("db2", "app").set(7200)
    g("pg_replication_lag_seconds", ["target", "application_name"]).labels("db1", "replica1").set(
        1.5
    )
    g("pg_locks_waiting", ["target", "datname"]).labels("db1", "app").set(1)
    dead = g("pg_stat_user_tables_n_dead_tup", ["target", "datname", "schemaname", "relname"])
    dead.labels("db1", "app", "public", "behavior_logs").set(1200)

    db = ["target", "datname"]
    blks_hit = c("pg_stat_database_blks_hit_total", db).labels("db1", "app")
    blks_read = c("pg_stat_database_blks_read_total", db).labels("db1", "app")
    commits = c("pg_stat_database_xact_commit_total", db).labels("db1", "app")
    rollbacks = c("pg_stat_database_xact_rollback_total", db).labels("db1", "app")
    deadlocks = c("pg_stat_database_deadlocks_total", db).labels("db1", "app")
    temp_bytes = c("pg_stat_database_temp_bytes_total", db).labels("db1", "app")
    tab = ["target", "datname", "schemaname", "relname"]
    seq = c("pg_stat_user_tables_seq_scan_total", tab).labels(
        "db1", "app", "public", "behavior_logs"
    )
    idx = c("pg_stat_user_tables_idx_scan_total", tab).labels(
        "db1", "app", "public", "behavior_logs"
    )

    bgwriter = {
        name: c(f"pg_stat_bgwriter_{name}_total", ["target"]).labels("db1")
        for name in ("checkpoints_timed", "checkpoints_req", "buffers_checkpoint",
                     "buffers_clean", "buffers_backend")
    }

    st = ["target", "user", "datname", "queryid"]
    statements = {
        name: c(name, st)
        for name in (
            "pg_stat_statements_calls_total",
            "pg_stat_statements_seconds_total",
            "pg_stat_statements_rows_total",
            "pg_stat_statements_block_read_seconds_total",
            "pg_stat_statements_block_write_seconds_total",
            "pg_stat_statements_shared_blocks_hit_total",
            "pg_stat_statements_shared_blocks_read_total",
            "pg_stat_statements_temp_blocks_written_total",
            "pg_stat_statements_wal_bytes_total",
        )
    }
    query_info = g("pg_stat_statements_query_info", [*st, "query"])
    query_info.labels(
        "db1", "web", "app", "101", "SELECT * FROM behavior_logs WHERE user_id = $1"
    ).set(1)
    query_info.labels("db1", "web", "app", "202", "INSERT INTO behavior_logs VALUES ($1, $2)").set(
        1
    )

    collector_up = g("pg_exporter_collector_up", ["target", "collector"])
    scrape = g("pg_exporter_scrape_duration_seconds", ["target", "collector"])
    errors = c("pg_exporter_collector_errors_total", ["target", "collector", "reason"])
    for collector in ("statements", "activity", "database"):
        collector_up.labels("db1", collector).set(1)
        scrape.labels("db1", collector).set(0.004)
        for reason in (
            "connect",
            "timeout",
            "permission",
            "missing_extension",
            "not_preloaded",
            "query",
        ):
            errors.labels("db1", collector, reason)
    collector_up.labels("db2", "statements").set(0)
    errors.labels("db2", "statements", "connect").inc()

    def tick() -> None:
        blks_hit.inc(990)
        blks_read.inc(10)
        commits.inc(20)
        rollbacks.inc(1)
        temp_bytes.inc(8192)
        seq.inc(2)
        idx.inc(50)
        for i, counter in enumerate(bgwriter.values()):
            counter.inc(i + 1)
        deadlocks.inc(0)
        errors.labels("db2", "statements", "connect").inc()
        for qid, calls, seconds in (("101", 10, 0.02), ("202", 5, 0.05)):
            labels = ("db1", "web", "app", qid)
            statements["pg_stat_statements_calls_total"].labels(*labels).inc(calls)
            statements["pg_stat_statements_seconds_total"].labels(*labels).inc(seconds)
            statements["pg_stat_statements_rows_total"].labels(*labels).inc(calls)
            statements["pg_stat_statements_block_read_seconds_total"].labels(*labels).inc(0.001)
            statements["pg_stat_statements_block_write_seconds_total"].labels(*labels).inc(0.0005)
            statements["pg_stat_statements_shared_blocks_hit_total"].labels(*labels).inc(90)
            statements["pg_stat_statements_shared_blocks_read_total"].labels(*labels).inc(10)
            statements["pg_stat_statements_temp_blocks_written_total"].labels(*labels).inc(1)
            statements["pg_stat_statements_wal_bytes_total"].labels(*labels).inc(512)

    return tick


def analyzer_metrics(reg: CollectorRegistry) -> Callable[[], None]:
    duration = Histogram("pgarchitect_audit_duration_seconds", "Audit duration.", registry=reg)
    duration.observe(12.0)
    runs = Counter("pgarchitect_audit_runs_total", "Audit runs.", ["status"], registry=reg)
    runs.labels("success").inc()
    runs.labels("failed")
    Gauge("pgarchitect_audit_last_success_timestamp_seconds", "Last success.", registry=reg).set(
        time.time() - 3600
    )
    Gauge("pgarchitect_regressions", "Regressions.", ["target"], registry=reg).labels("db1").set(2)
    Gauge("pgarchitect_regression_clusters", "Clusters.", ["target"], registry=reg).labels(
        "db1"
    ).set(1)
    recs = Gauge(
        "pgarchitect_recommendations",
        "Recommendations.",
        ["target", "kind", "status"],
        registry=reg,
    )
    recs.labels("db1", "create_index", "proposed").set(1)
    recs.labels("db1", "create_index", "accepted").set(2)
    snapshot = Histogram(
        "pgarchitect_snapshot_duration_seconds", "Snapshot duration.", registry=reg
    )

    def tick() -> None:
        snapshot.observe(0.3)

    return tick


def main(argv: list[str]) -> int:
    exporter_port, analyzer_port, refapp_port = (int(a) for a in argv[1:4])
    ticks: list[Callable[[], None]] = []
    servers = []
    for port, build in (
        (exporter_port, exporter_metrics),
        (analyzer_port, analyzer_metrics),
        (refapp_port, refapp_metrics),
    ):
        reg = CollectorRegistry()
        ticks.append(build(reg))
        servers.append(start_http_server(port, addr="127.0.0.1", registry=reg))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        for tick in ticks:
            tick()
        stop.wait(TICK)
    for server, _thread in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
