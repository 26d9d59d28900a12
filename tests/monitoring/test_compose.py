"""docker-compose.yml: valid for Compose, every mounted host path exists, health checks.

No Docker engine runs on the development machines or in CI: the file is validated here,
not run (docs/monitoring.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .stack import REPO, require_binary

COMPOSE = REPO / "docker-compose.yml"


def services() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, Any] = doc["services"]
    return result


SERVICES = services()


def test_compose_config_validates() -> None:
    docker_compose = require_binary("docker-compose")
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_rejects_an_invalid_file(tmp_path: Path) -> None:
    """The validation above is real: an unknown key is refused."""
    docker_compose = require_binary("docker-compose")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(
        "services:\n  x:\n    image: busybox:1.36\n    healthcheck: {tset: [CMD, true]}\n"
    )
    result = subprocess.run(
        [docker_compose, "-f", str(bad), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode != 0


def host_paths() -> list[tuple[str, str]]:
    out = []
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                out.append((name, source))
        build = service.get("build")
        if build:
            out.append((name, build["context"]))
            out.append((name, str(Path(build["context"]) / build["dockerfile"])))
    return out


@pytest.mark.parametrize(("service", "source"), host_paths())
def test_mounted_host_paths_exist(service: str, source: str) -> None:
    assert (REPO / source).exists(), f"{service}: {source} does not exist in the repository"


def test_expected_services() -> None:
    assert {
        "postgres",
        "exporter",
        "analyzer",
        "refapp",
        "prometheus",
        "alertmanager",
        "grafana",
    } <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_health_and_pins(name: str) -> None:
    service = SERVICES[name]
    assert service["healthcheck"]["test"], f"{name} has no health check"
    image = service.get("image", "")
    if "build" not in service:
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest", f"{name}: pin the image tag ({image})"
    for dep, cond in service.get("depends_on", {}).items():
        assert cond == {"condition": "service_healthy"}, f"{name} -> {dep}"
        assert dep in SERVICES


def test_postgres_preloads_pg_stat_statements() -> None:
    pg = SERVICES["postgres"]
    assert pg["image"] == "pgvector/pgvector:0.8.0-pg17"
    assert "shared_preload_libraries=pg_stat_statements" in pg["command"]
    assert "compute_query_id=on" in pg["command"]


def test_provisioning_and_configs_are_read_only() -> None:
    for name in ("prometheus", "alertmanager", "grafana"):
        binds = [v for v in SERVICES[name]["volumes"] if v.startswith(".")]
        assert binds and all(v.endswith(":ro") for v in binds), name
    grafana = SERVICES["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana


def test_container_config_keys() -> None:
    config = yaml.safe_load((REPO / "docker" / "config.yml").read_text())
    assert set(config) == {"targets", "store", "exporter", "analyzer"}
    assert all(set(t) == {"name", "dsn"} for t in config["targets"])
    assert "@postgres:5432/" in config["store"]["dsn"]
    assert config["exporter"] == {"listen": "0.0.0.0:9188"}
    assert config["analyzer"] == {"listen": "0.0.0.0:9189"}
