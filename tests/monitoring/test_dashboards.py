"""Grafana provisioning: datasources, provider and the four dashboards (docs/monitoring.md)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .stack import (
    DASHBOARD_DIR,
    REPO,
    RULES_DIR,
    dashboard_paths,
    dashboard_queries,
    load_dashboard,
    metric_names,
    panels,
)

DS_REF = {"type": "prometheus", "uid": "${datasource}"}
EXPECTED = {
    "pgarchitect-query-performance",
    "pgarchitect-orm-paths",
    "pgarchitect-analyzer",
    "pgarchitect-postgresql-health",
}
RECORDING_RULE = re.compile(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+")
RANGE_FUNCTION = re.compile(r"\b(rate|increase|irate)\s*\(")
PANEL_TYPES = {"timeseries", "stat", "table"}
PATHS = dashboard_paths()
PATH_IDS = [p.stem for p in PATHS]


def recording_rules() -> set[str]:
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


METRICS_DOC = REPO / "docs" / "metrics.md"
ANALYZER_SECTION = "## Analyzer self-metrics"


def analyzer_metrics() -> set[str]:
    """The analyzer self-metrics docs/metrics.md lists: the contract the Analyzer dashboard
    is held to."""
    section = METRICS_DOC.read_text().split(ANALYZER_SECTION, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(pgarchitect_[a-z_]+)`", section, re.M))


def test_analyzer_metric_list_is_documented() -> None:
    """docs/metrics.md carries the list (and the histograms among them)."""
    names = analyzer_metrics()
    assert len(names) == 7, sorted(names)
    assert {"pgarchitect_audit_duration_seconds",
            "pgarchitect_snapshot_duration_seconds"} <= names


# ---- provisioning files ---------------------------------------------------------------


def test_all_dashboards_present() -> None:
    assert {p.stem for p in PATHS} == EXPECTED


def test_generated_dashboards_are_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen", REPO / "grafana" / "generate_dashboards.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered: dict[str, str] = module.render()
    assert set(rendered) == {p.name for p in PATHS}
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text(encoding="utf-8") == text, (
            f"{name} differs from grafana/generate_dashboards.py output: run it and commit"
        )


def test_datasources() -> None:
    doc = yaml.safe_load((REPO / "grafana/provisioning/datasources/pgarchitect.yml").read_text())
    by_type = {d["type"]: d for d in doc["datasources"]}
    prom = by_type["prometheus"]
    assert prom["uid"] == "prometheus" and prom["isDefault"] is True
    assert prom["jsonData"]["timeInterval"] == "15s"
    local = yaml.safe_load((REPO / "prometheus/prometheus.yml").read_text())
    assert local["global"]["scrape_interval"] == prom["jsonData"]["timeInterval"]
    am = by_type["alertmanager"]
    assert am["jsonData"]["implementation"] == "prometheus"
    assert am["url"].endswith(":9093")


def test_dashboard_provider() -> None:
    doc = yaml.safe_load((DASHBOARD_DIR / "pgarchitect.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"


# ---- dashboard lint -------------------------------------------------------------------


@pytest.fixture(params=PATHS, ids=PATH_IDS)
def dashboard(request: pytest.FixtureRequest) -> tuple[Path, dict[str, Any]]:
    path: Path = request.param
    return path, load_dashboard(path)


def test_uid_schema_and_ids(dashboard: tuple[Path, dict[str, Any]]) -> None:
    path, dash = dashboard
    assert dash["uid"] == path.stem
    assert dash["schemaVersion"] >= 39
    assert dash["id"] is None, "provisioned dashboards carry no database id"
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_datasource_variable(dashboard: tuple[Path, dict[str, Any]]) -> None:
    _, dash = dashboard
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DS_REF, var["name"]
            assert var["includeAll"] and var["allValue"] == ".*", var["name"]


def test_panels(dashboard: tuple[Path, dict[str, Any]]) -> None:
    _, dash = dashboard
    assert panels(dash)
    for panel in panels(dash):
        where = f"panel {panel['title']!r}"
        assert panel["type"] in PANEL_TYPES, where
        assert panel["datasource"] == DS_REF, where
        assert panel.get("description", "").strip(), f"{where} has no description"
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DS_REF, f"{where} {target['refId']}"
            assert target["expr"].strip(), f"{where} {target['refId']}"


def test_rate_uses_rate_interval(dashboard: tuple[Path, dict[str, Any]]) -> None:
    _, dash = dashboard
    for pq in dashboard_queries(Path(DASHBOARD_DIR / f"{dash['uid']}.json")):
        for match in RANGE_FUNCTION.finditer(pq.expr):
            # The first range selector after the function must be [$__rate_interval].
            rest = pq.expr[match.end() :]
            ranges = re.findall(r"\[([^\]]*)\]", rest)
            assert ranges and ranges[0] == "$__rate_interval", f"{pq}: {pq.expr}"
        assert "[$__interval]" not in pq.expr and "$__range" not in pq.expr, str(pq)


def test_variables_are_regex_matched(dashboard: tuple[Path, dict[str, Any]]) -> None:
    """Template variables are multi-value with All = `.*`: only `=~"$var"` is correct."""
    _, dash = dashboard
    defined = {v["name"] for v in dash["templating"]["list"]}
    for pq in dashboard_queries(Path(DASHBOARD_DIR / f"{dash['uid']}.json")):
        stripped = pq.expr.replace("$__rate_interval", "")
        for var in re.findall(r"\$\{?(\w+)", stripped):
            assert var in defined, f"{pq}: ${var} is not a variable of the dashboard"
            assert f'=~"${var}"' in stripped, f'{pq}: ${var} must be used as label=~"${var}"'


def test_recording_rules_used_exist(dashboard: tuple[Path, dict[str, Any]]) -> None:
    _, dash = dashboard
    known = recording_rules()
    for pq in dashboard_queries(Path(DASHBOARD_DIR / f"{dash['uid']}.json")):
        for name in RECORDING_RULE.findall(pq.expr):
            assert name in known, f"{pq}: recording rule {name} is not in prometheus/rules"


def test_orm_paths_dashboard_shows_target_and_budget() -> None:
    dash = load_dashboard(DASHBOARD_DIR / "pgarchitect-orm-paths.json")
    exprs = [t["expr"] for p in panels(dash) for t in p["targets"]]
    assert "vector(0.05)" in exprs, "the 50 ms target line"
    assert any("slo_error_ratio" in e and "/ 0.05" in e for e in exprs), "error budget"
    for q in ("p50_5m", "p95_5m", "p99_5m"):
        assert any(q in e for e in exprs), q


def test_analyzer_dashboard_uses_spec_metric_names() -> None:
    spec = analyzer_metrics()
    histograms = {"pgarchitect_audit_duration_seconds", "pgarchitect_snapshot_duration_seconds"}
    allowed = spec | {f"{h}{s}" for h in histograms & spec for s in ("_bucket", "_sum", "_count")}
    allowed.add("up")  # scrape health of the analyzer job, written by Prometheus
    used: set[str] = set()
    for pq in dashboard_queries(DASHBOARD_DIR / "pgarchitect-analyzer.json"):
        names = metric_names(pq.expr)
        assert names <= allowed, f"{pq}: {sorted(names - allowed)} not in docs/metrics.md"
        used |= names
    # Every documented analyzer metric is shown somewhere.
    shown = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used}
    assert spec <= shown, sorted(spec - shown)


def test_metric_name_extraction() -> None:
    """metric_names() is what the checks above rely on."""
    expr = (
        'topk(10, sum by (target, queryid) (rate(a_total{x=~"$t"}[5m])))'
        ' * on (target) group_left (query) max by (query) (b_info{y="1 and c"}) / 0.05'
    )
    assert metric_names(expr) == {"a_total", "b_info"}
    assert metric_names('1 - r:m:p95_5m{a=~".*"} > bool 2e3') == {"r:m:p95_5m"}


# ---- every panel expression is valid PromQL (checked by promtool) ---------------------


def test_panel_expressions_parse(promtool: str, tmp_path: Path) -> None:
    queries = [pq for path in PATHS for pq in dashboard_queries(path)]
    assert len(queries) >= 40
    rules = []
    for pq in queries:
        promql = pq.promql
        assert "$" not in promql, f"{pq}: unsubstituted variable in {promql}"
        dash = pq.dashboard.replace("-", "_")
        name = f"dashboard_check:{dash}:panel_{pq.panel_id}_{pq.ref_id.lower()}"
        rules.append({"record": name, "expr": promql})
    path = tmp_path / "dashboard_exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    """The parse check above would catch a broken panel query."""
    path = tmp_path / "broken.yml"
    rule = {"record": "x:y:z", "expr": "sum by (a (rate(m[5m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


# ---- the assumed metric names are written down ----------------------------------------


def rule_exprs() -> list[str]:
    exprs = []
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            exprs += [r["expr"] for r in group["rules"]]
    return exprs


def test_every_source_metric_is_documented() -> None:
    """Each metric the rules and dashboards read (not recording rules, not `up`) is listed
    in docs/monitoring.md, which the exporter team checks against what they export."""
    doc = (REPO / "docs" / "monitoring.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    exprs = rule_exprs() + [pq.expr for path in PATHS for pq in dashboard_queries(path)]
    used = set().union(*(metric_names(e) for e in exprs)) - recording_rules() - {"up"}
    assert used, "no metric names found"
    base = {re.sub(r"_(bucket|sum|count)$", "", n) if n not in documented else n for n in used}
    missing = sorted(n for n in base if n not in documented)
    assert not missing, f"not in docs/monitoring.md: {missing}"
