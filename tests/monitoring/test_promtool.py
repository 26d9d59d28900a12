"""promtool: the Prometheus configs, the rule files and their unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from .stack import REPO, RULES_DIR

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_rule_files_exist() -> None:
    assert len(RULE_FILES) >= 5, RULE_FILES
    assert len(RULE_TESTS) >= 5, RULE_TESTS


def test_check_config(promtool: str) -> None:
    result = run([promtool, "check", "config", str(REPO / "prometheus" / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    # The config's rule_files glob must find every rule file, not zero of them.
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_check_docker_config(promtool: str, tmp_path: Path) -> None:
    """docker/prometheus.yml, with its container rule path pointed at the repository."""
    config = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout, result.stdout


def test_local_and_docker_configs_scrape_the_same_jobs() -> None:
    local = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    docker = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    jobs = {j["job_name"] for j in local["scrape_configs"]}
    assert jobs == {j["job_name"] for j in docker["scrape_configs"]}
    assert {"pgarchitect-exporter", "pgarchitect-analyzer", "pgarchitect-refapp"} <= jobs
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in local["scrape_configs"]}
    assert targets["pgarchitect-exporter"] == ["127.0.0.1:9188"]
    assert targets["pgarchitect-analyzer"] == ["127.0.0.1:9189"]
    assert local["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]


def test_check_rules_lint_all(promtool: str) -> None:
    result = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests(promtool: str) -> None:
    result = run([promtool, "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_rule_unit_tests_detect_a_wrong_expectation(promtool: str, tmp_path: Path) -> None:
    """The unit tests are not vacuous: a changed expected value makes promtool fail."""
    source = REPO / "prometheus" / "tests" / "orm_paths_test.yml"
    text = source.read_text()
    assert "value: 0.242" in text
    broken = tmp_path / "tests" / "orm_paths_test.yml"
    broken.parent.mkdir()
    broken.write_text(text.replace("value: 0.242", "value: 0.243", 1))
    (tmp_path / "rules").symlink_to(RULES_DIR)
    result = run([promtool, "test", "rules", str(broken)])
    assert result.returncode != 0
    assert "0.242" in result.stdout + result.stderr or "2.42E-01" in result.stdout + result.stderr
