"""End to end: metrics -> Prometheus (the repository's rules) -> Alertmanager (the
repository's routing) -> webhook, with the real programs on free loopback ports.

A synthetic metrics source (metrics_source.py) stands in for the exporter, the analyzer
and the reference app, with the metric names docs/monitoring.md assumes. Its ORM path
"orm" is slow (90 % of queries at 200 ms), "thin" is fast.

Why the rules are rewritten: the burn-rate alerts hold for 2 or 15 minutes, others for up
to 8 days. The test loads the repository's rule files unchanged except that every `for:`
is removed, so an alert fires on its first true evaluation. Expressions, labels and
annotations are the repository's; the `for:` durations are covered by the promtool unit
tests (prometheus/tests). The recording rules' rate() windows (5m ... 3d) need no
shortening: with a few seconds of samples rate() already has two points to work with.
Alertmanager runs the repository's routing tree and inhibition rules; only the webhook
URLs (moved to the test's sink) and group_wait / group_interval (1s) are changed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .stack import (
    Alertmanager,
    Notification,
    Process,
    Prometheus,
    WebhookSink,
    alertmanager,
    alertmanager_config_for_test,
    dashboard_paths,
    empty_panels,
    free_port,
    http_ok,
    prometheus,
    rules_without_for,
    running,
    wait_for,
    webhook_sink,
)

SOURCE = Path(__file__).with_name("metrics_source.py")
CLUSTER = "e2e"


@dataclass
class Stack:
    prom: Prometheus
    am: Alertmanager
    sink: WebhookSink
    source: Process

    def logs(self) -> str:
        return "\n".join(
            [self.source.log_tail(), self.prom.process.log_tail(), self.am.process.log_tail()]
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerting-e2e")
    ports = {"exporter": free_port(), "analyzer": free_port(), "refapp": free_port()}
    source = Process(
        "metrics-source",
        [sys.executable, str(SOURCE), *(str(p) for p in ports.values())],
        tmp / "metrics-source.log",
    )
    rule_dir = tmp / "rules"
    rule_dir.mkdir()
    with contextlib.ExitStack() as stack_:
        stack_.enter_context(
            running(
                source,
                lambda: all(http_ok(f"http://127.0.0.1:{p}/metrics") for p in ports.values()),
            )
        )
        sink = stack_.enter_context(webhook_sink())
        am = stack_.enter_context(alertmanager(tmp, alertmanager_config_for_test(sink.url)))
        prom = stack_.enter_context(
            prometheus(
                tmp,
                {
                    "pgarchitect-exporter": [f"127.0.0.1:{ports['exporter']}"],
                    "pgarchitect-analyzer": [f"127.0.0.1:{ports['analyzer']}"],
                    "pgarchitect-refapp": [f"127.0.0.1:{ports['refapp']}"],
                },
                rule_files=rules_without_for(rule_dir),
                alertmanager_url=am.url,
                external_labels={"cluster": CLUSTER},
            )
        )
        yield Stack(prom, am, sink, source)


def firing(prom: Prometheus, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prom.alerts()
        if a["labels"]["alertname"] == alertname
        and a["state"] == "firing"
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def delivered(
    sink: WebhookSink, alertname: str, **labels: str
) -> list[tuple[Notification, dict[str, Any]]]:
    return [
        (n, a)
        for n in sink.notifications()
        for a in n.alerts()
        if a["labels"]["alertname"] == alertname
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_targets_scraped_and_rules_evaluate(stack: Stack) -> None:
    wait_for("all scrape targets up", stack.prom.targets_up, on_timeout=stack.logs)
    wait_for(
        "the SLO recording rule to produce a value",
        lambda: stack.prom.query("orm_path:pg_orm_query_duration_seconds:slo_error_ratio_3d"),
        on_timeout=stack.logs,
    )
    assert stack.prom.rule_health() == []


def test_recording_rules_see_the_slow_path(stack: Stack) -> None:
    def values(expr: str) -> dict[str, float] | None:
        result = stack.prom.query(expr)
        got = {r["metric"]["orm_path"]: float(r["value"][1]) for r in result}
        return got if {"orm", "thin"} <= set(got) else None

    p95 = wait_for("p95 per path", lambda: values("orm_path:pg_orm_query_duration_seconds:p95_5m"))
    # 200 ms observations fall into the (0.15, 0.25] bucket; 2 ms ones into (0.001, 0.0025].
    assert 0.15 < p95["orm"] <= 0.25
    assert p95["thin"] <= 0.0025
    ratio = wait_for(
        "SLO error ratio per path",
        lambda: values("orm_path:pg_orm_query_duration_seconds:slo_error_ratio_5m"),
    )
    assert ratio["orm"] == pytest.approx(0.9, abs=0.02)
    assert ratio["thin"] == 0


def test_burn_rate_alert_fires_in_prometheus(stack: Stack) -> None:
    (alert,) = wait_for(
        "OrmPathLatencyBudgetBurnFast firing for orm_path=orm",
        lambda: firing(stack.prom, "OrmPathLatencyBudgetBurnFast", orm_path="orm"),
        on_timeout=stack.logs,
    )
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"].endswith("/OrmPathLatencyBudgetBurnFast.md")
    assert "ORM path orm:" in alert["annotations"]["description"]
    assert not firing(stack.prom, "OrmPathLatencyBudgetBurnFast", orm_path="thin")


def test_burn_rate_notification_reaches_the_critical_receiver(stack: Stack) -> None:
    notification, alert = wait_for(
        "the OrmPathLatencyBudgetBurnFast notification at the webhook",
        lambda: next(
            iter(delivered(stack.sink, "OrmPathLatencyBudgetBurnFast", orm_path="orm")), None
        ),
        on_timeout=stack.logs,
    )
    assert notification.receiver == "pgarchitect-critical"
    assert notification.path == "/alerts/critical"
    assert alert["status"] == "firing"
    assert alert["labels"]["cluster"] == CLUSTER  # Prometheus' external label
    assert notification.body["groupLabels"]["alertname"] == "OrmPathLatencyBudgetBurnFast"
    assert not delivered(stack.sink, "OrmPathLatencyBudgetBurnFast", orm_path="thin")


@pytest.mark.parametrize(
    ("alertname", "labels", "receiver"),
    [
        ("Watchdog", {}, "pgarchitect-watchdog"),
        ("PostgresTargetDown", {"target": "db2"}, "pgarchitect-critical"),
        ("PostgresLongRunningTransaction", {"target": "db1"}, "pgarchitect-warning"),
        ("PgarchitectRegressionDetected", {"target": "db1"}, "pgarchitect-warning"),
        ("PgarchitectRecommendationWaiting", {"target": "db1"}, "pgarchitect-info"),
    ],
)
def test_each_severity_reaches_its_receiver(
    stack: Stack, alertname: str, labels: dict[str, str], receiver: str
) -> None:
    notification, _ = wait_for(
        f"{alertname} at the webhook",
        lambda: next(iter(delivered(stack.sink, alertname, **labels)), None),
        on_timeout=stack.logs,
    )
    assert notification.receiver == receiver


def test_target_down_inhibits_that_targets_alerts_only(stack: Stack) -> None:
    """db2 is down: its long-transaction alert is suppressed in Alertmanager; db1's is not,
    nor is an alert without a `target` label (ORM paths)."""

    def am_alert(alertname: str, **labels: str) -> dict[str, Any] | None:
        for a in stack.am.alerts():
            if a["labels"]["alertname"] == alertname and all(
                a["labels"].get(k) == v for k, v in labels.items()
            ):
                return a
        return None

    def suppressed() -> dict[str, Any] | None:
        a = am_alert("PostgresLongRunningTransaction", target="db2")
        return a if a and a["status"]["state"] == "suppressed" else None

    db2 = wait_for("db2's long transaction alert suppressed", suppressed, on_timeout=stack.logs)
    target_down = am_alert("PostgresTargetDown", target="db2")
    assert target_down is not None
    assert db2["status"]["inhibitedBy"] == [target_down["fingerprint"]]

    db1 = wait_for(
        "db1's alert in Alertmanager",
        lambda: am_alert("PostgresLongRunningTransaction", target="db1"),
    )
    assert db1["status"]["state"] == "active"
    orm = wait_for(
        "the ORM alert in Alertmanager", lambda: am_alert("OrmPathLatencyBudgetBurnFast")
    )
    assert orm["status"]["state"] == "active"
    # db1's notification went out, db2's never did.
    wait_for(
        "db1's notification",
        lambda: delivered(stack.sink, "PostgresLongRunningTransaction", target="db1"),
    )
    assert not delivered(stack.sink, "PostgresLongRunningTransaction", target="db2")


@pytest.mark.parametrize("path", dashboard_paths(), ids=lambda p: p.stem)
def test_every_panel_returns_data_from_the_assumed_metrics(stack: Stack, path: Path) -> None:
    """Every panel query, with variables at All, returns a series when Prometheus scrapes
    metrics named as docs/monitoring.md assumes (the live test does it with the real
    exporter, see test_dashboards_live.py)."""
    wait_for("all scrape targets up", stack.prom.targets_up, on_timeout=stack.logs)
    empty: list[str] = []

    def all_have_data() -> bool:
        empty[:] = empty_panels(stack.prom, path)
        return not empty

    wait_for(
        f"every panel of {path.stem} to return data",
        all_have_data,
        on_timeout=lambda: "\n".join(empty),
    )
