"""Pure: scrape results -> metric families.

Each collector module declares the families it emits (`specs`) and emits them from its own
rows (`emit`); this module adds `pg_up` and the exporter's self-metrics, and builds the
families of every target in one pass. Families are built fresh for every exposition, so a
statement or table that vanished is gone from the next scrape instead of being exported
forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)

from exporter import collectors
from exporter.collectors.base import TARGET, Labels, Out, Spec, compat
from exporter.errors import Reason
from exporter.model import ScrapeResult

__all__ = ["COMPAT", "SPECS", "Family", "Labels", "Spec", "build", "to_metrics"]

SELF_SPECS: dict[str, Spec] = {
    "pg_exporter_collector_up": Spec(
        "gauge", (*TARGET, "collector"), "1 when the collector delivered data in the last scrape."),
    "pg_exporter_scrape_duration_seconds": Spec(
        "gauge", (*TARGET, "collector"), "How long the collector took in the last scrape."),
    "pg_exporter_collector_errors_total": Spec(
        "counter", (*TARGET, "collector", "reason"),
        "Collector failures by reason: connect, timeout, permission, missing_extension, "
        "not_preloaded, query."),
    "pg_exporter_last_scrape_timestamp_seconds": Spec(
        "gauge", TARGET, "When the last database round of the target finished."),
    "pg_exporter_cache_age_seconds": Spec(
        "gauge", (*TARGET, "view"),
        "Age of the data shown for a slowly changing view (settings, tables, indexes) when the "
        "round finished; read again every exporter.slow_refresh_interval."),
    "pg_exporter_scrapes_total": Spec(
        "counter", TARGET, "Database rounds (concurrent and too frequent scrapes share one)."),
    "pg_exporter_last_scrape_error": compat(
        "gauge", TARGET,
        "1 when the last database round of the target had an error: the target was down or "
        "a collector failed (postgres_exporter)."),
}

# Every family the exporter can emit, in exposition order.
SPECS: dict[str, Spec] = {
    "pg_up": Spec("gauge", TARGET, "1 when the target answered the probe of the last scrape."),
    **collectors.SPECS,
    **SELF_SPECS,
}


@dataclass(frozen=True)
class Family:
    """One metric family of an exposition as plain data: label values in `spec.labels` order.

    Samples that share labels share one tuple object (a statement's labels are the same in its
    fourteen families), so an exposition writer can format each label set once.
    """

    name: str
    spec: Spec
    samples: list[tuple[Labels, float]]


# The postgres_exporter compatibility set (exporter.postgres_exporter_compat).
COMPAT = frozenset(name for name, spec in SPECS.items() if spec.compat)


def build(results: Sequence[ScrapeResult], compat: bool = True) -> list[Family]:
    """The metric families of several targets' results (one family per name), with the
    postgres_exporter compatibility set or without it."""
    out = Out(compat)
    for result in results:
        _target(out, result)
    return [Family(n, SPECS[n], s) for n in SPECS if (s := out.by_name.get(n))]


_KINDS = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
          "untyped": UnknownMetricFamily}


def to_metrics(families: Sequence[Family]) -> list[Metric]:
    """The same families as prometheus-client objects (its encoders, the reference path)."""
    out: list[Metric] = []
    for family in families:
        spec = family.spec
        kind = _KINDS[spec.kind]
        metric = kind(family.name, spec.help, labels=spec.labels)
        for labels, value in family.samples:
            metric.add_metric(list(labels), value)
        out.append(metric)
    return out


def _target(out: Out, r: ScrapeResult) -> None:
    t = r.target
    out.add("pg_up", (t,), 1 if r.up else 0)
    if r.server is not None:
        collectors.PROBE.emit(out, t, r.server)
    for collector in collectors.VIEWS:
        if collector.name in r.data:
            collector.emit(out, t, r.data[collector.name])
    _self(out, r)


def _self(out: Out, r: ScrapeResult) -> None:
    t = r.target
    names = [n for n in collectors.NAMES if n not in r.disabled]
    for name in names:
        out.add("pg_exporter_collector_up", (t, name), 0 if name in r.failures else 1)
        if name in r.durations:
            out.add("pg_exporter_scrape_duration_seconds", (t, name), r.durations[name])
    # Every (collector, reason) pair from the start, at 0: increase() then sees the first
    # failure too (a counter that appears already at 1 shows no increase).
    for name in names:
        for reason in Reason:
            count = r.errors_total.get((name, reason.value), 0)
            out.add("pg_exporter_collector_errors_total", (t, name, reason.value), count)
    if r.finished_at:
        out.add("pg_exporter_last_scrape_timestamp_seconds", (t,), r.finished_at)
    for view, read_at in sorted(r.cached_at.items()):
        out.add("pg_exporter_cache_age_seconds", (t, view), max(r.finished_at - read_at, 0.0))
    out.add("pg_exporter_scrapes_total", (t,), r.rounds_total)
    if out.compat:
        out.add("pg_exporter_last_scrape_error", (t,), 0 if r.up and not r.failures else 1)
