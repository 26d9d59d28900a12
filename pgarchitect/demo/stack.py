"""The demo's child processes: the analyzer service, Prometheus and Alertmanager.

Each is a `processes.Child` (own session, free loopback port, log in the demo's directory,
dies with the demo). Prometheus loads the repository's rule files with every `for:` removed,
so an alert fires on its first true evaluation instead of after its 2 minutes; expressions,
labels and annotations are the repository's (docs/monitoring.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgarchitect.demo import processes
from pgarchitect.demo.processes import (
    ALERTMANAGER_CONFIG,
    RULES_DIR,
    Child,
    binary,
    free_port,
    wait_ready,
)


def monitoring_available() -> str | None:
    """None when Prometheus, Alertmanager and the repository's rules are here, else why not."""
    if binary("prometheus") is None:
        return "prometheus is not installed (apt-get install prometheus)"
    if binary("alertmanager", "prometheus-alertmanager") is None:
        return "alertmanager is not installed (apt-get install prometheus-alertmanager)"
    if not RULES_DIR.is_dir():
        return f"the repository's rules are not at {RULES_DIR}"
    return None


def analyzer_child(directory: Path, config: Mapping[str, Any], port: int,
                   token: str) -> Child:
    """`pgarchitect analyzer` with `config`; the token goes in through the environment."""
    path = directory / "analyzer.yml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    env = {**os.environ, "PGARCHITECT_ADMIN_TOKEN": token}
    return Child("analyzer", [sys.executable, "-m", "pgarchitect", "analyzer", "--config",
                              str(path)], directory / "analyzer.log",
                 url=f"http://127.0.0.1:{port}", env=env)


def prometheus_child(directory: Path, port: int, jobs: Mapping[str, Sequence[str]],
                     alertmanager_port: int) -> Child:
    """Prometheus scraping `jobs` every second with the repository's rules (no `for:`)."""
    work = directory / "prometheus"
    config = processes.prometheus_config(
        jobs, rule_files=processes.rules_without_for(work / "rules"),
        alertmanager=f"127.0.0.1:{alertmanager_port}")
    program = binary("prometheus")
    assert program is not None
    return processes.prometheus_child(work, port, config, program)


def alertmanager_child(directory: Path, port: int) -> Child:
    """Alertmanager with the repository's routing; its webhooks point nowhere in the demo."""
    program = binary("alertmanager", "prometheus-alertmanager")
    assert program is not None
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    return processes.alertmanager_child(directory / "alertmanager", port, config, program)


@dataclass(frozen=True)
class Children:
    """The demo's child processes; no Prometheus / Alertmanager `why_not` (a reason)."""

    analyzer: Child
    prometheus: Child | None = None
    alertmanager: Child | None = None
    why_not: str | None = None

    def all(self) -> list[Child]:
        return [c for c in (self.prometheus, self.alertmanager, self.analyzer) if c is not None]


def start_children(directory: Path, *, app_dsn: str, store_dsn: str, sandbox_dsn: str,
                   scrape: Mapping[str, str], token: str, monitoring: bool,
                   started: Callable[[Child], object]) -> Children:
    """Start the analyzer service (and Prometheus, Alertmanager, scraping the `scrape` jobs'
    "host:port" and the analyzer); `started(child)` is called for each, to stop it later.

    Call it from the thread that lives as long as the children (processes module doc).
    """
    port, am_port, prom_port = free_port(), free_port(), free_port()
    why_not = monitoring_available() if monitoring else "--no-monitoring"
    config: dict[str, Any] = {
        "targets": [{"name": "app", "dsn": app_dsn}],
        "store": {"dsn": store_dsn},
        # A snapshot every 2 s instead of 5 min, and verification after 100 calls instead of
        # 200: the demo's phases last seconds (README, "The demo").
        "analyzer": {"listen": f"127.0.0.1:{port}", "snapshot_interval": "2s",
                     "verification": {"min_calls": 100},
                     "validation": {"mode": "sandbox", "sandbox_dsn": sandbox_dsn}},
    }
    if why_not is None:
        config["analyzer"]["alertmanager_url"] = f"http://127.0.0.1:{am_port}"
    analyzer = analyzer_child(directory, config, port, token).start()
    started(analyzer)
    if why_not is not None:
        return Children(analyzer, why_not=why_not)
    alertmanager = alertmanager_child(directory, am_port).start()
    started(alertmanager)
    prometheus = prometheus_child(directory, prom_port, {
        **{job: [target] for job, target in scrape.items()},
        "pgarchitect-analyzer": [f"127.0.0.1:{port}"]}, am_port).start()
    started(prometheus)
    return Children(analyzer, prometheus, alertmanager)


def wait_children_ready(children: Children) -> None:
    """Wait until every child answers its readiness check; RuntimeError if one does not."""
    if children.alertmanager is not None and children.prometheus is not None:
        wait_ready(children.alertmanager, "/-/ready")
        wait_ready(children.prometheus, "/-/ready")
    wait_ready(children.analyzer, "/readyz")
