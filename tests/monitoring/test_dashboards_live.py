"""Every panel of the Query performance, ORM paths and PostgreSQL health dashboards
returns data from a Prometheus that scraped the real exporter and reference app (SPEC §7).

Marked `live_stack`: deselected unless PGARCHITECT_REQUIRE_LIVE=1 (tests/monitoring/
conftest.py). With the variable set, a missing exporter is a failure with a clear
message, never a skip. Until the exporter exists this test is not part of `make test`.

What this test assumes about programs that are being written (adapt here when they land):
- `pgarchitect exporter --dsn DSN --listen HOST:PORT` (SPEC §2);
- `pgarchitect migrate --store DSN` and `pgarchitect analyzer --config F --listen HOST:PORT`;
- `python -m exporter.refapp --listen HOST:PORT` reads its database from PGARCHITECT_DSN
  and serves pg_orm_* on /metrics; `drive_workload` below gives it and the server traffic.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .stack import (
    DASHBOARD_DIR,
    RULES_DIR,
    Process,
    empty_panels,
    free_port,
    http_ok,
    prometheus,
    running,
    temp_postgres,
    wait_for,
)

pytestmark = pytest.mark.live_stack

LIVE_DASHBOARDS = [
    "pgarchitect-query-performance",
    "pgarchitect-orm-paths",
    "pgarchitect-postgresql-health",
]
# Panels that are legitimately empty on a single server without replicas.
ALLOWED_EMPTY = {"pgarchitect-postgresql-health": ("Replication lag",)}


def require_live_components() -> None:
    for module in ("exporter.app", "exporter.refapp", "analyzer"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            pytest.fail(
                f"PGARCHITECT_REQUIRE_LIVE=1 but {module} is not importable: the exporter / "
                "reference app is not built (or not installed in this environment)",
                pytrace=False,
            )


def cli() -> list[str]:
    script = Path(sys.executable).with_name("pgarchitect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgarchitect"]


def drive_workload(dsn: str, refapp_url: str) -> None:
    """Some statements for pg_stat_statements, and requests for the reference app."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE TABLE IF NOT EXISTS live_t (id int primary key, v text)")
        conn.execute(
            "INSERT INTO live_t SELECT g, md5(g::text) FROM generate_series(1, 5000) g "
            "ON CONFLICT DO NOTHING"
        )
        for i in range(200):
            conn.execute("SELECT v FROM live_t WHERE id = %s", (i,))
        conn.execute("SELECT count(*) FROM live_t WHERE v LIKE '%%ab%%'")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(refapp_url, timeout=5).close()


@contextlib.contextmanager
def live_stack(tmp: Path) -> Iterator[tuple[str, dict[str, int]]]:
    ports = {"exporter": free_port(), "analyzer": free_port(), "refapp": free_port()}
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(temp_postgres())
        env = {**os.environ, "PGARCHITECT_DSN": dsn}
        config = tmp / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "targets": [{"name": "live", "dsn": dsn}],
                    "store": {"dsn": dsn},
                    "exporter": {"listen": f"127.0.0.1:{ports['exporter']}"},
                    "analyzer": {"listen": f"127.0.0.1:{ports['analyzer']}"},
                }
            )
        )
        subprocess.run([*cli(), "migrate", "--store", dsn], check=True, timeout=300, env=env)
        commands = {
            "exporter": [
                *cli(),
                "exporter",
                "--dsn",
                dsn,
                "--listen",
                f"127.0.0.1:{ports['exporter']}",
            ],
            "analyzer": [*cli(), "analyzer", "--config", str(config)],
            "refapp": [
                sys.executable,
                "-m",
                "exporter.refapp",
                "--listen",
                f"127.0.0.1:{ports['refapp']}",
            ],
        }
        for name, argv in commands.items():
            proc = Process(name, argv, tmp / f"{name}.log", env=env)
            url = f"http://127.0.0.1:{ports[name]}/metrics"
            stack.enter_context(running(proc, functools.partial(http_ok, url), timeout=60))
        yield dsn, ports


def describe(failures: dict[str, list[str]], uid: str) -> str:
    return "\n".join(failures.get(uid, []))


def test_live_panels_return_data(tmp_path: Path) -> None:
    require_live_components()
    with live_stack(tmp_path) as (dsn, ports):
        jobs = {
            "pgarchitect-exporter": [f"127.0.0.1:{ports['exporter']}"],
            "pgarchitect-analyzer": [f"127.0.0.1:{ports['analyzer']}"],
            "pgarchitect-refapp": [f"127.0.0.1:{ports['refapp']}"],
        }
        with prometheus(tmp_path, jobs, rule_files=sorted(RULES_DIR.glob("*.yml"))) as prom:
            wait_for("all scrape targets up", prom.targets_up, timeout=60)
            failures: dict[str, list[str]] = {}
            for uid in LIVE_DASHBOARDS:
                path = DASHBOARD_DIR / f"{uid}.json"

                def ok(path: Path = path, uid: str = uid) -> bool:
                    drive_workload(dsn, f"http://127.0.0.1:{ports['refapp']}/")
                    failures[uid] = empty_panels(
                        prom, path, allowed_empty=ALLOWED_EMPTY.get(uid, ())
                    )
                    return not failures[uid]

                wait_for(
                    f"every panel of {uid} to return data",
                    ok,
                    timeout=90,
                    interval=2,
                    on_timeout=functools.partial(describe, failures, uid),
                )
