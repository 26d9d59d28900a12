"""Query performance: the top statements of pg_stat_statements (docs/metrics.md)."""

from __future__ import annotations

from dashboards.panels import (
    DATABASES,
    Json,
    dashboard,
    query,
    query_var,
    rate,
    stat,
    table,
    thresholds,
    timeseries,
)

UID = "pgarchitect-query-performance"

STATEMENT_KEY = "target, datname, user, queryid"
TOP50 = (
    f"topk(50, sum by ({STATEMENT_KEY}) ({rate('pg_stat_statements_seconds_total', DATABASES)}))"
)


def build() -> Json:
    """The dashboard as Grafana JSON."""
    by_stmt = "{{datname}} {{user}} {{queryid}}"
    panels = [
        stat(
            "Execution time per second",
            "Seconds of statement execution per wall-clock second, all statements of the "
            "selection: roughly the number of busy backends.",
            "short",
            [query(f"sum({rate('pg_stat_statements_seconds_total', DATABASES)})", "busy")],
            decimals=2,
        ),
        stat(
            "Calls per second",
            "Statement executions per second (pg_stat_statements calls).",
            "ops",
            [query(f"sum({rate('pg_stat_statements_calls_total', DATABASES)})", "calls/s")],
        ),
        stat(
            "Mean time per call",
            "Total execution time divided by calls over the interval, all statements.",
            "s",
            [
                query(
                    f"sum({rate('pg_stat_statements_seconds_total', DATABASES)})"
                    f" / sum({rate('pg_stat_statements_calls_total', DATABASES)})",
                    "mean",
                )
            ],
        ),
        stat(
            "Shared buffer hit ratio",
            "Share of shared blocks the statements found in shared buffers (hit / (hit + read)).",
            "percentunit",
            [
                query(
                    f"sum({rate('pg_stat_statements_shared_blocks_hit_total', DATABASES)})"
                    f" / (sum({rate('pg_stat_statements_shared_blocks_hit_total', DATABASES)})"
                    f" + sum({rate('pg_stat_statements_shared_blocks_read_total', DATABASES)}))",
                    "hit ratio",
                )
            ],
            th=thresholds((None, "red"), (0.9, "orange"), (0.99, "green")),
        ),
        timeseries(
            "Top 10 statements by total time",
            "Execution seconds per second of the 10 statements that cost the most time; the "
            "first place to look when the server is busy.",
            "short",
            [
                query(
                    f"topk(10, sum by ({STATEMENT_KEY})"
                    f" ({rate('pg_stat_statements_seconds_total', DATABASES)}))",
                    by_stmt,
                )
            ],
        ),
        timeseries(
            "Top 10 statements by calls",
            "Calls per second of the 10 most frequently executed statements (N+1 patterns show "
            "up here).",
            "ops",
            [
                query(
                    f"topk(10, sum by ({STATEMENT_KEY})"
                    f" ({rate('pg_stat_statements_calls_total', DATABASES)}))",
                    by_stmt,
                )
            ],
        ),
        timeseries(
            "Top 10 statements by mean time",
            "Mean execution time per call over 5 minutes (recording rule "
            "queryid:pg_stat_statements_seconds:mean_5m); regressions step up here.",
            "s",
            [
                query(
                    f"topk(10, queryid:pg_stat_statements_seconds:mean_5m{{{DATABASES}}})", by_stmt
                )
            ],
        ),
        timeseries(
            "Lowest cache hit ratio by statement",
            "The 10 statements with the lowest shared-buffer hit ratio over 5 minutes (recording "
            "rule queryid:pg_stat_statements_shared_blocks:hit_ratio_5m).",
            "percentunit",
            [
                query(
                    f"bottomk(10,"
                    f" queryid:pg_stat_statements_shared_blocks:hit_ratio_5m{{{DATABASES}}})",
                    by_stmt,
                )
            ],
            min_=0,
            max_=1,
        ),
        timeseries(
            "Top 10 statements by shared blocks read",
            "Shared blocks read from outside shared buffers per second (OS cache or disk).",
            "short",
            [
                query(
                    f"topk(10, sum by ({STATEMENT_KEY}) "
                    f"({rate('pg_stat_statements_shared_blocks_read_total', DATABASES)}))",
                    by_stmt,
                )
            ],
        ),
        timeseries(
            "Top 10 statements by I/O time",
            "Seconds per second spent reading and writing blocks (needs track_io_timing = on).",
            "short",
            [
                query(
                    f"topk(10, sum by ({STATEMENT_KEY}) ("
                    f"{rate('pg_stat_statements_block_read_seconds_total', DATABASES)}"
                    f" + {rate('pg_stat_statements_block_write_seconds_total', DATABASES)}))",
                    by_stmt,
                )
            ],
        ),
        timeseries(
            "Top 10 statements by temp blocks written",
            "Temp blocks written per second: sorts and hashes spilling to disk (work_mem).",
            "short",
            [
                query(
                    f"topk(10, sum by ({STATEMENT_KEY}) "
                    f"({rate('pg_stat_statements_temp_blocks_written_total', DATABASES)}))",
                    by_stmt,
                )
            ],
        ),
        timeseries(
            "Top 10 statements by WAL bytes",
            "WAL generated per second by statement: write-heavy statements and replication load.",
            "Bps",
            [
                query(
                    f"topk(10, sum by ({STATEMENT_KEY})"
                    f" ({rate('pg_stat_statements_wal_bytes_total', DATABASES)}))",
                    by_stmt,
                )
            ],
        ),
        table(
            "Statements with query text",
            "The 50 statements with the most execution time in the interval, with their "
            "normalized text (pg_stat_statements_query_info), calls and mean time.",
            "short",
            [
                query(
                    f"{TOP50} * on ({STATEMENT_KEY}) group_left (query) "
                    f"max by ({STATEMENT_KEY}, query)"
                    f" (pg_stat_statements_query_info{{{DATABASES}}})",
                    instant=True,
                    table=True,
                ),
                query(
                    f"sum by ({STATEMENT_KEY})"
                    f" ({rate('pg_stat_statements_calls_total', DATABASES)})"
                    f" and on ({STATEMENT_KEY}) {TOP50}",
                    instant=True,
                    table=True,
                ),
                query(
                    f"queryid:pg_stat_statements_seconds:mean_5m{{{DATABASES}}} and on"
                    f" ({STATEMENT_KEY}) {TOP50}",
                    instant=True,
                    table=True,
                ),
            ],
            rename={
                "Value #A": "time/s",
                "Value #B": "calls/s",
                "Value #C": "mean (5m)",
            },
            units={"time/s": "short", "calls/s": "ops", "mean (5m)": "s"},
            sort_by="time/s",
            h=12,
        ),
    ]
    return dashboard(
        UID,
        "pgarchitect / Query performance",
        "Per-statement cost from pg_stat_statements: time, calls, mean, cache hits, I/O, "
        "temp spills, WAL, and the normalized query text.",
        [
            query_var("target", "Target", "label_values(pg_stat_statements_calls_total, target)"),
            query_var(
                "datname",
                "Database",
                'label_values(pg_stat_statements_calls_total{target=~"$target"}, datname)',
            ),
        ],
        panels,
    )
