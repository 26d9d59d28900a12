"""amtool: the Alertmanager config is valid and routes each severity to its receiver."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .stack import REPO

CONFIG = REPO / "prometheus" / "alertmanager.yml"


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_config(amtool: str) -> None:
    result = amtool_run(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=Watchdog", "severity=info"], "pgarchitect-watchdog"),
        (
            ["alertname=OrmPathLatencyBudgetBurnFast", "severity=critical", "orm_path=orm"],
            "pgarchitect-critical",
        ),
        (
            ["alertname=PostgresTargetDown", "severity=critical", "target=db1"],
            "pgarchitect-critical",
        ),
        (["alertname=PgarchitectExporterDown", "severity=critical"], "pgarchitect-critical"),
        (
            ["alertname=OrmPathLatencyBudgetBurnSlow", "severity=warning", "orm_path=orm"],
            "pgarchitect-warning",
        ),
        (
            ["alertname=PostgresLongRunningTransaction", "severity=warning", "target=db1"],
            "pgarchitect-warning",
        ),
        (
            ["alertname=PgarchitectRecommendationWaiting", "severity=info", "target=db1"],
            "pgarchitect-info",
        ),
        # An alert without severity (e.g. pushed by hand) still reaches someone.
        (["alertname=SomethingElse"], "pgarchitect-default"),
    ],
    ids=lambda v: "_".join(v) if isinstance(v, list) else v,
)
def test_route(amtool: str, labels: list[str], receiver: str) -> None:
    result = amtool_run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_route_test_detects_a_wrong_receiver(amtool: str) -> None:
    """`--verify.receivers` really fails on a mismatch (the table above is not vacuous)."""
    result = amtool_run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "--verify.receivers=pgarchitect-info",
        "alertname=X",
        "severity=critical",
    )
    assert result.returncode != 0


def test_receivers_are_webhooks_sending_resolved() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert {r["name"] for r in config["receivers"]} == {
        "pgarchitect-default",
        "pgarchitect-critical",
        "pgarchitect-warning",
        "pgarchitect-info",
        "pgarchitect-watchdog",
    }
    for receiver in config["receivers"]:
        hooks = receiver["webhook_configs"]
        assert hooks, receiver["name"]
        assert all(h["send_resolved"] is True for h in hooks), receiver["name"]


def test_grouping_and_inhibition() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["route"]["group_by"] == ["alertname", "target", "cluster"]
    rules = {tuple(r["source_matchers"]): r for r in config["inhibit_rules"]}
    target_down = rules[('alertname="PostgresTargetDown"',)]
    assert "target" in target_down["equal"]
    # Without this matcher, a source alert lacking `target` would silence every alert
    # lacking `target` (a missing label counts as equal on both sides).
    assert 'target=~".+"' in target_down["target_matchers"]
    exporter_down = rules[('alertname="PgarchitectExporterDown"',)]
    assert "instance" in exporter_down["equal"]
