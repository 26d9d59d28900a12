"""Analyzer: the analyzer's self-metrics (docs/metrics.md)."""

from __future__ import annotations

from dashboards.panels import (
    TARGETS,
    Json,
    dashboard,
    query,
    query_var,
    stat,
    table,
    thresholds,
    timeseries,
)

UID = "pgarchitect-analyzer"


def build() -> Json:
    """The dashboard as Grafana JSON."""
    panels = [
        stat(
            "Analyzer up",
            "Whether Prometheus can scrape the analyzer (1 = up).",
            "none",
            [query('up{job="pgarchitect-analyzer"}', "{{instance}}")],
            th=thresholds((None, "red"), (1, "green")),
            mappings=[
                {
                    "type": "value",
                    "options": {"0": {"text": "down", "index": 0}, "1": {"text": "up", "index": 1}},
                }
            ],
        ),
        stat(
            "Last successful audit",
            "When the last successful audit finished; the weekly schedule keeps it under 7 "
            "days old, the PgarchitectAuditStale alert fires past 8. 0 means never.",
            "dateTimeFromNow",
            [query("pgarchitect_audit_last_success_timestamp_seconds * 1000", "{{instance}}")],
            mappings=[{"type": "value", "options": {"0": {"text": "never", "index": 0}}}],
        ),
        stat(
            "Regressions (last audit)",
            "Regressed statements found by the last audit, all selected targets.",
            "short",
            [query(f"sum(pgarchitect_regressions{{{TARGETS}}})", "regressions")],
            th=thresholds((None, "green"), (1, "orange")),
        ),
        stat(
            "Recommendations waiting for review",
            "Validated recommendations in status proposed, all selected targets.",
            "short",
            [query(f'sum(pgarchitect_recommendations{{{TARGETS},status="proposed"}})', "proposed")],
            th=thresholds((None, "green"), (1, "blue")),
        ),
        timeseries(
            "Audits by status",
            "Audit runs finished in each interval, by status.",
            "short",
            [
                query(
                    "sum by (status) (increase(pgarchitect_audit_runs_total[$__rate_interval]))",
                    "{{status}}",
                )
            ],
            bars=True,
            stack=True,
        ),
        timeseries(
            "Audit runs since analyzer start",
            "Cumulative audit runs by status since the analyzer started.",
            "short",
            [query("sum by (status) (pgarchitect_audit_runs_total)", "{{status}}")],
        ),
        timeseries(
            "Audit duration",
            "Mean and p95 audit duration since the analyzer started (audits are weekly, so "
            "a per-interval rate would be empty most of the time).",
            "s",
            [
                query(
                    "sum(pgarchitect_audit_duration_seconds_sum)"
                    " / sum(pgarchitect_audit_duration_seconds_count)",
                    "mean",
                ),
                query(
                    "histogram_quantile(0.95, "
                    "sum by (le) (pgarchitect_audit_duration_seconds_bucket))",
                    "p95",
                ),
            ],
        ),
        timeseries(
            "Snapshot duration",
            "Mean time to take one snapshot of pg_stat_statements into the store, per "
            "interval and since start.",
            "s",
            [
                query(
                    "sum(rate(pgarchitect_snapshot_duration_seconds_sum[$__rate_interval]))"
                    " / sum(rate(pgarchitect_snapshot_duration_seconds_count[$__rate_interval]))",
                    "mean (interval)",
                ),
                query(
                    "sum(pgarchitect_snapshot_duration_seconds_sum)"
                    " / sum(pgarchitect_snapshot_duration_seconds_count)",
                    "mean (since start)",
                ),
            ],
        ),
        timeseries(
            "Regressions per target",
            "Regressed statements found by the last audit of each target.",
            "short",
            [query(f"sum by (target) (pgarchitect_regressions{{{TARGETS}}})", "{{target}}")],
        ),
        timeseries(
            "Regression clusters per target",
            "Groups of regressions with a common cause found by the last audit of each target.",
            "short",
            [
                query(
                    f"sum by (target) (pgarchitect_regression_clusters{{{TARGETS}}})", "{{target}}"
                )
            ],
        ),
        timeseries(
            "Recommendations by status",
            "Recommendations in the store by status (proposed, accepted, rejected, applied, "
            "verified, reverted).",
            "short",
            [query(f"sum by (status) (pgarchitect_recommendations{{{TARGETS}}})", "{{status}}")],
            stack=True,
        ),
        table(
            "Recommendations by target, kind and status",
            "Current number of recommendations per target, kind and status.",
            "short",
            [
                query(
                    f"sum by (target, kind, status) (pgarchitect_recommendations{{{TARGETS}}})",
                    instant=True,
                    table=True,
                )
            ],
            rename={"Value": "count"},
            w=12,
            h=8,
        ),
    ]
    return dashboard(
        UID,
        "pgarchitect / Analyzer",
        "The analyzer service: audits and their duration, snapshots, regressions, clusters "
        "and recommendations by status.",
        [query_var("target", "Target", "label_values(pgarchitect_regressions, target)")],
        panels,
    )
