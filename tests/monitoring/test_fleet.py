"""The fleet examples of docs/scaling.md: promtool accepts them, and the /probe relabeling
of prometheus/examples/fleet-probe.yml really scrapes each target once through a real
exporter and a real Prometheus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgarchitect.demo.embedded import PgServer
from tests.conftest import drop_database, new_database

from .stack import (
    REPO,
    Process,
    Prometheus,
    free_port,
    http_ok,
    require_binary,
    running,
    wait_for,
)
from .test_promtool import run

EXAMPLES = REPO / "prometheus" / "examples"
CONFIGS = ["fleet-probe.yml", "remote-write-thanos.yml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_fleet_examples_pass_promtool(promtool: str, name: str) -> None:
    result = run([promtool, "check", "config", str(EXAMPLES / name)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_fleet_targets_name_their_exporter() -> None:
    groups = yaml.safe_load((EXAMPLES / "fleet-targets.yml").read_text())
    assert groups and all(g["targets"] and g["labels"]["__exporter"] for g in groups)


def test_probe_relabeling_scrapes_each_target_once(pg18: PgServer, tmp_path: Path) -> None:
    names = ("orders-db-01", "billing-db-01")
    dsns = [new_database(pg18, "fleet", extensions=("pg_stat_statements",)) for _ in names]
    try:
        port = free_port()
        exporter = Process(
            "exporter",
            [sys.executable, "-m", "pgarchitect", "exporter", "--listen", f"127.0.0.1:{port}",
             *(a for n, d in zip(names, dsns, strict=True) for a in ("--dsn", f"{n}={d}"))],
            tmp_path / "exporter.log", cwd=REPO)
        example = yaml.safe_load((EXAMPLES / "fleet-probe.yml").read_text())
        job: dict[str, Any] = next(j for j in example["scrape_configs"]
                                   if j["job_name"] == "pgarchitect-fleet")
        targets = tmp_path / "targets.yml"
        targets.write_text(yaml.safe_dump([{"targets": list(names),
                                            "labels": {"__exporter": f"127.0.0.1:{port}"}}]))
        job["file_sd_configs"] = [{"files": [str(targets)], "refresh_interval": "1s"}]
        prom_port = free_port()
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": [job]}
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        prom = Process("prometheus", [
            require_binary("prometheus"), f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
        ], tmp_path / "prometheus.log")
        url = f"http://127.0.0.1:{prom_port}"
        with running(exporter, lambda: http_ok(f"http://127.0.0.1:{port}/healthz")), \
                running(prom, lambda: http_ok(f"{url}/-/ready")):
            p = Prometheus(url, prom, config_path)

            def scraped() -> bool:
                up = p.query('up{job="pgarchitect-fleet"} == 1')
                pg_up = p.query('pg_up{job="pgarchitect-fleet"} == 1')
                return len(up) == len(names) and len(pg_up) == len(names)

            wait_for("both targets scraped through /probe", scraped, timeout=60.0,
                     on_timeout=lambda: exporter.log_tail() + prom.log_tail())
            series = p.query('pg_up{job="pgarchitect-fleet"}')
            # One scrape per target, labelled with it; the exporter's own label agrees.
            assert sorted(s["metric"]["instance"] for s in series) == sorted(names)
            assert all(s["metric"]["instance"] == s["metric"]["target"] for s in series)
    finally:
        for d in dsns:
            drop_database(pg18, d)
