"""Conventions every alert of prometheus/rules follows (see docs/monitoring.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .stack import REPO, RULES_DIR

RUNBOOK_PREFIX = "https://github.com/pgarchitect/pgarchitect/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning", "info"}
CAMEL_CASE = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$")
# Watchdog is always firing by design: it has no input under which it is quiet.
ALWAYS_FIRING = {"Watchdog"}
# What docs/monitoring.md requires at least, each mapped to the alert(s) that cover it.
REQUIRED = {
    "ORM-path p95 over target (burn rate)": {
        "OrmPathLatencyBudgetBurnFast",
        "OrmPathLatencyBudgetBurnSlow",
    },
    "exporter down": {"PgarchitectExporterDown"},
    "target down": {"PostgresTargetDown"},
    "statement collector failing": {"PgStatementsCollectorFailing"},
    "regression detected": {"PgarchitectRegressionDetected"},
    "audit failed": {"PgarchitectAuditFailed"},
    "audit stale": {"PgarchitectAuditStale", "PgarchitectAuditMetricsAbsent"},
    "recommendation waiting": {"PgarchitectRecommendationWaiting"},
    "connection saturation": {"PostgresConnectionsNearLimit"},
    "low cache hit ratio": {"PostgresCacheHitRatioLow"},
    "long transactions": {"PostgresLongRunningTransaction"},
    "replication lag": {"PostgresReplicationLagHigh"},
    "watchdog": {"Watchdog"},
}


@dataclass(frozen=True)
class Alert:
    name: str
    file: Path
    rule: dict[str, Any]


def load_alerts() -> list[Alert]:
    alerts = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.append(Alert(rule["alert"], path, rule))
    return alerts


ALERTS = load_alerts()
ALERT_IDS = [a.name for a in ALERTS]


def rule_tests() -> list[tuple[Path, set[str], dict[str, Any]]]:
    """(test file, alert names its rule_files define, one alert_rule_test) for every case."""
    out = []
    for path in sorted((REPO / "prometheus" / "tests").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        defined = set()
        for rule_file in doc["rule_files"]:
            for group in yaml.safe_load((path.parent / rule_file).read_text())["groups"]:
                defined |= {r["alert"] for r in group["rules"] if "alert" in r}
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                out.append((path, defined, case))
    return out


RULE_TESTS = rule_tests()


def test_alerts_exist() -> None:
    assert len(ALERTS) >= 12
    assert len(set(ALERT_IDS)) == len(ALERT_IDS), "alert names must be unique"


@pytest.mark.parametrize("requirement", sorted(REQUIRED))
def test_spec_alerts_present(requirement: str) -> None:
    assert REQUIRED[requirement] <= set(ALERT_IDS), requirement


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_IDS)
def test_name(alert: Alert) -> None:
    assert CAMEL_CASE.match(alert.name), f"{alert.name} is not CamelCase"
    assert len(alert.name) <= 40


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_IDS)
def test_severity(alert: Alert) -> None:
    assert alert.rule.get("labels", {}).get("severity") in SEVERITIES


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_IDS)
def test_annotations(alert: Alert) -> None:
    annotations = alert.rule.get("annotations", {})
    summary = annotations.get("summary", "")
    assert summary and "{{" not in summary, "summary: one sentence, no template"
    assert summary.endswith("."), "summary is a sentence"
    assert "{{" in annotations.get("description", ""), "description must be templated"


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_IDS)
def test_runbook(alert: Alert) -> None:
    url = alert.rule.get("annotations", {}).get("runbook_url", "")
    assert url == f"{RUNBOOK_PREFIX}{alert.name}.md"
    page = REPO / "docs" / "runbooks" / f"{alert.name}.md"
    assert page.is_file(), f"missing runbook {page}"
    text = page.read_text()
    assert text.startswith(f"# {alert.name}\n")
    assert "## Check" in text and "## Act" in text, "a runbook says what to check and what to do"


@pytest.mark.parametrize("alert", ALERTS, ids=ALERT_IDS)
def test_has_firing_and_quiet_unit_tests(alert: Alert) -> None:
    cases = [(path, defined, c) for path, defined, c in RULE_TESTS if c["alertname"] == alert.name]
    for path, defined, _ in cases:
        # A test file that does not load the rule would pass its quiet cases vacuously.
        assert alert.name in defined, (
            f"{path.name} tests {alert.name} without loading its rule file"
        )
    firing = [c for _, _, c in cases if c.get("exp_alerts")]
    quiet = [c for _, _, c in cases if c.get("exp_alerts") == []]
    assert firing, f"no promtool case where {alert.name} fires"
    if alert.name in ALWAYS_FIRING:
        assert alert.rule["expr"].strip() == "vector(1)"
        assert not quiet, "an always-firing alert cannot have a quiet case"
    else:
        assert quiet, f"no promtool case where {alert.name} stays quiet (exp_alerts: [])"


def test_every_alert_rule_test_names_a_known_alert() -> None:
    unknown = {c["alertname"] for _, _, c in RULE_TESTS} - set(ALERT_IDS)
    assert not unknown


def test_runbook_pages_match_alerts() -> None:
    pages = {p.stem for p in (REPO / "docs" / "runbooks").glob("*.md")} - {"README"}
    assert pages == set(ALERT_IDS)
