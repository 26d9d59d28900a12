"""PostgreSQL health: availability, connections, transactions, locks, checkpoints,
replication, tables and the exporter's collectors (docs/metrics.md).
"""

from __future__ import annotations

from dashboards.panels import (
    DATABASES,
    TARGETS,
    Json,
    dashboard,
    incr,
    query,
    query_var,
    rate,
    stat,
    thresholds,
    timeseries,
)

UID = "pgarchitect-postgresql-health"

SUM_BY_DATABASE = "sum by (target, datname)"


def build() -> Json:
    """The dashboard as Grafana JSON."""
    panels = [
        stat(
            "Target up",
            "Whether the exporter reaches each target (pg_up).",
            "none",
            [query(f"pg_up{{{TARGETS}}}", "{{target}}")],
            th=thresholds((None, "red"), (1, "green")),
            mappings=[
                {
                    "type": "value",
                    "options": {"0": {"text": "down", "index": 0}, "1": {"text": "up", "index": 1}},
                }
            ],
        ),
        stat(
            "Server version",
            "PostgreSQL server version of each target (pg_server_version_info).",
            "none",
            [query(f"pg_server_version_info{{{TARGETS}}}", "{{target}}: {{version}}")],
            text_mode="name",
        ),
        stat(
            "Connections used",
            "Connections in use as a share of max_connections; the alert fires above 80 %.",
            "percentunit",
            [query(f"target:pg_stat_activity_connections:usage_ratio{{{TARGETS}}}", "{{target}}")],
            th=thresholds((None, "green"), (0.8, "orange"), (0.95, "red")),
        ),
        stat(
            "Longest transaction",
            "Age of the oldest open transaction per target; the alert fires above 30 minutes.",
            "s",
            [
                query(
                    f"max by (target) (pg_stat_activity_max_tx_duration_seconds{{{TARGETS}}})",
                    "{{target}}",
                )
            ],
            th=thresholds((None, "green"), (300, "orange"), (1800, "red")),
        ),
        timeseries(
            "Connections by state",
            "Backends by state (active, idle, idle in transaction, ...).",
            "short",
            [
                query(
                    f"sum by (target, state) (pg_stat_activity_connections{{{DATABASES}}})",
                    "{{target}} {{state}}",
                ),
                query(
                    f"max by (target) (pg_settings_max_connections{{{TARGETS}}})",
                    "{{target}} max_connections",
                ),
            ],
        ),
        timeseries(
            "Connections by application",
            "Backends by application_name.",
            "short",
            [
                query(
                    f"sum by (target, application_name)"
                    f" (pg_stat_activity_connections{{{DATABASES}}})",
                    "{{target}} {{application_name}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Buffer cache hit ratio",
            "Share of block reads served from shared buffers per database (blks_hit / (blks_hit "
            "+ blks_read)); the alert fires under 90 % on busy databases.",
            "percentunit",
            [
                query(
                    f"{SUM_BY_DATABASE} ({rate('pg_stat_database_blks_hit_total', DATABASES)})"
                    f" / ({SUM_BY_DATABASE} ({rate('pg_stat_database_blks_hit_total', DATABASES)})"
                    f" + {SUM_BY_DATABASE}"
                    f" ({rate('pg_stat_database_blks_read_total', DATABASES)}))",
                    "{{target}} {{datname}}",
                )
            ],
            max_=1,
        ),
        timeseries(
            "Transactions per second",
            "Commits and rollbacks per second per database.",
            "ops",
            [
                query(
                    f"{SUM_BY_DATABASE} ({rate('pg_stat_database_xact_commit_total', DATABASES)})",
                    "{{target}} {{datname}} commit",
                ),
                query(
                    f"{SUM_BY_DATABASE}"
                    f" ({rate('pg_stat_database_xact_rollback_total', DATABASES)})",
                    "{{target}} {{datname}} rollback",
                ),
            ],
        ),
        timeseries(
            "Longest transaction per database",
            "Age of the oldest open transaction per database; it holds back vacuum.",
            "s",
            [
                query(
                    f"pg_stat_activity_max_tx_duration_seconds{{{DATABASES}}}",
                    "{{target}} {{datname}}",
                )
            ],
            th=thresholds((None, "green"), (1800, "red")),
            threshold_line=True,
        ),
        timeseries(
            "Lock waits and deadlocks",
            "Backends waiting for a lock now, and deadlocks detected in each interval.",
            "short",
            [
                query(
                    f"sum by (target, datname) (pg_locks_waiting{{{DATABASES}}})",
                    "{{target}} {{datname}} waiting",
                ),
                query(
                    f"{SUM_BY_DATABASE} ({incr('pg_stat_database_deadlocks_total', DATABASES)})",
                    "{{target}} {{datname}} deadlocks",
                ),
            ],
        ),
        timeseries(
            "Temp bytes written",
            "Bytes per second written to temporary files per database (sorts and hashes "
            "larger than work_mem).",
            "Bps",
            [
                query(
                    f"{SUM_BY_DATABASE} ({rate('pg_stat_database_temp_bytes_total', DATABASES)})",
                    "{{target}} {{datname}}",
                )
            ],
        ),
        timeseries(
            "Checkpoints",
            "Checkpoints per interval: timed (checkpoint_timeout) and requested (max_wal_size "
            "reached, or CHECKPOINT). Requested checkpoints outnumbering timed ones mean "
            "max_wal_size is too small for the write load.",
            "short",
            [
                query(
                    f"sum by (target)"
                    f" ({incr('pg_stat_bgwriter_checkpoints_timed_total', TARGETS)})",
                    "{{target}} timed",
                ),
                query(
                    f"sum by (target) ({incr('pg_stat_bgwriter_checkpoints_req_total', TARGETS)})",
                    "{{target}} requested",
                ),
            ],
            bars=True,
        ),
        timeseries(
            "Buffers written",
            "Shared buffers written per second by the checkpointer, the background writer and "
            "the backends themselves; backends writing most of them means the background "
            "writer cannot keep up (or shared_buffers is too small).",
            "ops",
            [
                query(
                    f"sum by (target)"
                    f" ({rate('pg_stat_bgwriter_buffers_checkpoint_total', TARGETS)})",
                    "{{target}} checkpointer",
                ),
                query(
                    f"sum by (target) ({rate('pg_stat_bgwriter_buffers_clean_total', TARGETS)})",
                    "{{target}} background writer",
                ),
                query(
                    f"sum by (target) ({rate('pg_stat_bgwriter_buffers_backend_total', TARGETS)})",
                    "{{target}} backends",
                ),
            ],
            stack=True,
        ),
        timeseries(
            "Replication lag",
            "Replay lag of each replica in seconds; empty on a server without replication. "
            "The alert fires above 60 s.",
            "s",
            [query(f"pg_replication_lag_seconds{{{TARGETS}}}", "{{target}} {{application_name}}")],
            th=thresholds((None, "green"), (60, "red")),
            threshold_line=True,
        ),
        timeseries(
            "Sequential vs index scans (top 10 tables)",
            "Sequential and index scans per second of the tables with the most sequential "
            "scans; many sequential scans on a large table suggest a missing index.",
            "ops",
            [
                query(
                    "topk(10, sum by (target, datname, schemaname, relname) "
                    f"({rate('pg_stat_user_tables_seq_scan_total', DATABASES)}))",
                    "{{datname}} {{schemaname}}.{{relname}} seq",
                ),
                query(
                    "topk(10, sum by (target, datname, schemaname, relname) "
                    f"({rate('pg_stat_user_tables_idx_scan_total', DATABASES)}))",
                    "{{datname}} {{schemaname}}.{{relname}} idx",
                ),
            ],
        ),
        timeseries(
            "Dead tuples (top 10 tables)",
            "Dead rows waiting for vacuum in the tables with the most of them.",
            "short",
            [
                query(
                    f"topk(10, pg_stat_user_tables_n_dead_tup{{{DATABASES}}})",
                    "{{datname}} {{schemaname}}.{{relname}}",
                )
            ],
        ),
        timeseries(
            "Exporter collectors",
            "Duration of each collector's last scrape per target; collector_up 0 means it failed.",
            "s",
            [
                query(
                    f"max by (target, collector)"
                    f" (pg_exporter_scrape_duration_seconds{{{TARGETS}}})",
                    "{{target}} {{collector}}",
                )
            ],
        ),
        timeseries(
            "Exporter collector errors",
            "Collector errors per interval by reason (connect, timeout, permission, "
            "missing_extension, not_preloaded, query), and how many collectors are down now.",
            "short",
            [
                query(
                    "sum by (target, collector, reason) "
                    f"({incr('pg_exporter_collector_errors_total', TARGETS)})",
                    "{{target}} {{collector}} {{reason}}",
                ),
                query(
                    f"sum by (target) (1 - pg_exporter_collector_up{{{TARGETS}}})",
                    "{{target}} collectors down",
                ),
            ],
        ),
    ]
    return dashboard(
        UID,
        "pgarchitect / PostgreSQL health",
        "Health of the monitored PostgreSQL targets: availability, connections, cache hit "
        "ratio, transactions, locks, long transactions, temp files, checkpoints, replication, "
        "tables and the exporter's own collectors.",
        [
            query_var("target", "Target", "label_values(pg_up, target)"),
            query_var(
                "datname",
                "Database",
                'label_values(pg_stat_database_xact_commit_total{target=~"$target"}, datname)',
            ),
        ],
        panels,
    )
