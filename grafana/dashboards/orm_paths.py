"""ORM paths: latency against the 50 ms target, SLO ratio, error budget (docs/orm-paths.md)."""

from __future__ import annotations

from dashboards.panels import (
    Json,
    dashboard,
    query,
    query_var,
    rate,
    stat,
    thresholds,
    timeseries,
)

UID = "pgarchitect-orm-paths"

ORM_PATHS = 'orm_path=~"$orm_path"'
TARGET_LINE = "target (50 ms)"


def build() -> Json:
    """The dashboard as Grafana JSON."""
    red_dashed = [
        {
            "matcher": {"id": "byName", "options": TARGET_LINE},
            "properties": [
                {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
                {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                {"id": "custom.fillOpacity", "value": 0},
            ],
        }
    ]
    slo_th = thresholds((None, "red"), (0.95, "green"))
    panels = [
        stat(
            "Queries under 50 ms (1 day)",
            "Share of queries faster than 50 ms over the last day, per path: the SLO is 95 % "
            '(computed from the le="0.05" bucket).',
            "percentunit",
            [
                query(
                    f"1 - orm_path:pg_orm_query_duration_seconds:slo_error_ratio_1d{{{ORM_PATHS}}}",
                    "{{orm_path}}",
                )
            ],
            th=slo_th,
            w=8,
        ),
        stat(
            "Error budget left (3 days)",
            "Share of the 5 % error budget not spent over the last 3 days: "
            "1 - error ratio / 0.05. Negative means the SLO is broken over that window.",
            "percentunit",
            [
                query(
                    f"1 - orm_path:pg_orm_query_duration_seconds:slo_error_ratio_3d{{{ORM_PATHS}}}"
                    f" / 0.05",
                    "{{orm_path}}",
                )
            ],
            th=thresholds((None, "red"), (0, "orange"), (0.5, "green")),
            w=8,
        ),
        stat(
            "p95 now",
            "p95 latency over the last 5 minutes per path; the target is 50 ms.",
            "s",
            [
                query(
                    f"orm_path:pg_orm_query_duration_seconds:p95_5m{{{ORM_PATHS}}}", "{{orm_path}}"
                )
            ],
            th=thresholds((None, "green"), (0.05, "red")),
            w=8,
        ),
        timeseries(
            "p95 per path against the 50 ms target",
            "95th percentile latency over 5 minutes per ORM path (recording rule); the dashed "
            "line is the 50 ms target.",
            "s",
            [
                query(
                    f"orm_path:pg_orm_query_duration_seconds:p95_5m{{{ORM_PATHS}}}",
                    "{{orm_path}} p95",
                ),
                query("vector(0.05)", TARGET_LINE),
            ],
            overrides=red_dashed,
            w=24,
            h=9,
        ),
        timeseries(
            "p50 / p95 / p99 per path",
            "Median, 95th and 99th percentile latency over 5 minutes per ORM path, against "
            "the 50 ms target.",
            "s",
            [
                query(
                    f"orm_path:pg_orm_query_duration_seconds:p50_5m{{{ORM_PATHS}}}",
                    "{{orm_path}} p50",
                ),
                query(
                    f"orm_path:pg_orm_query_duration_seconds:p95_5m{{{ORM_PATHS}}}",
                    "{{orm_path}} p95",
                ),
                query(
                    f"orm_path:pg_orm_query_duration_seconds:p99_5m{{{ORM_PATHS}}}",
                    "{{orm_path}} p99",
                ),
                query("vector(0.05)", TARGET_LINE),
            ],
            overrides=red_dashed,
        ),
        timeseries(
            "p95 per path and operation",
            "95th percentile latency per ORM path and operation over the interval.",
            "s",
            [
                query(
                    "histogram_quantile(0.95, sum by (orm_path, operation, le) "
                    f"({rate('pg_orm_query_duration_seconds_bucket', ORM_PATHS)}))",
                    "{{orm_path}} {{operation}}",
                ),
                query("vector(0.05)", TARGET_LINE),
            ],
            overrides=red_dashed,
        ),
        timeseries(
            "SLO ratio: queries under 50 ms",
            "Share of queries faster than 50 ms over 5 minutes and 1 hour per path; the "
            "objective is 95 %.",
            "percentunit",
            [
                query(
                    f"1 - orm_path:pg_orm_query_duration_seconds:slo_error_ratio_5m{{{ORM_PATHS}}}",
                    "{{orm_path}} 5m",
                ),
                query(
                    f"1 - orm_path:pg_orm_query_duration_seconds:slo_error_ratio_1h{{{ORM_PATHS}}}",
                    "{{orm_path}} 1h",
                ),
                query("vector(0.95)", "objective (95 %)"),
            ],
            max_=1,
        ),
        timeseries(
            "Error budget burn rate",
            "Error ratio divided by the 5 % budget over 1 hour and 6 hours. The page fires "
            "above 14.4 (1h, with 5m) or 6 (6h, with 30m); 1 spends the budget exactly.",
            "suffix:x",
            [
                query(
                    f"orm_path:pg_orm_query_duration_seconds:slo_error_ratio_1h{{{ORM_PATHS}}} /"
                    f" 0.05",
                    "{{orm_path}} 1h",
                ),
                query(
                    f"orm_path:pg_orm_query_duration_seconds:slo_error_ratio_6h{{{ORM_PATHS}}} /"
                    f" 0.05",
                    "{{orm_path}} 6h",
                ),
            ],
            th=thresholds((None, "green"), (1, "orange"), (6, "red")),
            threshold_line=True,
        ),
        timeseries(
            "Queries per second by path and operation",
            "Observed queries per second per ORM path and operation.",
            "ops",
            [
                query(
                    "sum by (orm_path, operation) "
                    f"({rate('pg_orm_query_duration_seconds_count', ORM_PATHS)})",
                    "{{orm_path}} {{operation}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Queries per second by outcome",
            "Queries per second per ORM path by outcome (ok or error).",
            "ops",
            [
                query(
                    f"sum by (orm_path, outcome) ({rate('pg_orm_queries_total', ORM_PATHS)})",
                    "{{orm_path}} {{outcome}}",
                )
            ],
            stack=True,
        ),
    ]
    return dashboard(
        UID,
        "pgarchitect / ORM paths",
        "Latency of every ORM path against the 50 ms p95 target: quantiles, SLO ratio "
        "(95 % under 50 ms), error budget and burn rate.",
        [
            query_var(
                "orm_path",
                "ORM path",
                "label_values(pg_orm_query_duration_seconds_count, orm_path)",
            )
        ],
        panels,
    )
