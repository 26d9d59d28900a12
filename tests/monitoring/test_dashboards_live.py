"""Every panel of the Query performance, ORM paths and PostgreSQL health dashboards returns
data from a Prometheus that scraped the real exporter and reference app (SPEC §7).

The stack is real: PostgreSQL 18 (embedded), `pgarchitect exporter`, the reference app
(`python -m exporter.refapp`), Prometheus with the repository's rules. The analyzer service is
added automatically once `pgarchitect analyzer` is built (today it says "not built yet" and
exits 2); its dashboard's queries are then checked live too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import yaml

from pgarchitect.embedded import embedded_postgres
from pgarchitect.workload import create_schema

from .stack import (
    DASHBOARD_DIR,
    RULES_DIR,
    Process,
    empty_panels,
    free_port,
    http_ok,
    prometheus,
    running,
    wait_for,
)

LIVE_DASHBOARDS = [
    "pgarchitect-query-performance",
    "pgarchitect-orm-paths",
    "pgarchitect-postgresql-health",
]
# Panels that are legitimately empty on a single server without replicas.
ALLOWED_EMPTY = {"pgarchitect-postgresql-health": ("Replication lag",)}
USERS = 50


def cli() -> list[str]:
    script = Path(sys.executable).with_name("pgarchitect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pgarchitect"]


def _request(url: str, body: object | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert 200 <= resp.status < 300, (url, resp.status)


def drive_refapp(base: str, rounds: int = 3) -> None:
    """Requests through every path: CRUD (thin), aggregates (analytics), and ?path=orm."""
    for i in range(rounds):
        user = 1 + i % USERS
        for path in ("", "?path=orm"):
            _request(f"{base}/users/{user}/logs{path}")
            _request(f"{base}/users/{user}/logs{path}",
                     {"logs": [{"action": "view", "payload": {"i": i}}]})
            _request(f"{base}/users/{user}/activity{path}")


def analyzer_built(tmp: Path, config: Path) -> bool:
    """False while `pgarchitect analyzer` is a placeholder that says it is not built yet."""
    proc = subprocess.run([*cli(), "analyzer", "--config", str(config), "--check-config"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"analyzer config rejected: {proc.stderr.strip()}")
    probe = subprocess.Popen([*cli(), "analyzer", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = probe.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        probe.terminate()
        probe.wait(30)
        return True  # it is running: a real service
    return "not built yet" not in err


@contextlib.contextmanager
def live_stack(tmp: Path) -> Iterator[tuple[str, dict[str, int], bool]]:
    ports = {"exporter": free_port(), "analyzer": free_port(), "refapp": free_port()}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(embedded_postgres(18))
        app_dsn = server.create_database("app", extensions=("pg_stat_statements",))
        store_dsn = server.create_database("pgarchitect")

        async def fill() -> None:
            conn = await asyncpg.connect(app_dsn)
            try:
                await create_schema(conn, users=USERS, logs=5_000)
            finally:
                await conn.close()

        asyncio.run(fill())
        config = tmp / "config.yml"
        config.write_text(yaml.safe_dump({
            "targets": [{"name": "live", "dsn": app_dsn}],
            "store": {"dsn": store_dsn},
            "exporter": {"listen": f"127.0.0.1:{ports['exporter']}",
                         "min_refresh_interval": "1s"},
            "analyzer": {"listen": f"127.0.0.1:{ports['analyzer']}"},
        }))
        subprocess.run([*cli(), "migrate", "--store", store_dsn], check=True, timeout=300)
        commands = {
            "exporter": [*cli(), "exporter", "--config", str(config)],
            "refapp": [sys.executable, "-m", "exporter.refapp", "--dsn", app_dsn,
                       "--listen", f"127.0.0.1:{ports['refapp']}"],
        }
        with_analyzer = analyzer_built(tmp, config)
        if with_analyzer:
            commands["analyzer"] = [*cli(), "analyzer", "--config", str(config)]
        for name, argv in commands.items():
            proc = Process(name, argv, tmp / f"{name}.log")
            url = f"http://127.0.0.1:{ports[name]}/metrics"
            stack.enter_context(running(proc, functools.partial(http_ok, url), timeout=60))
        yield app_dsn, ports, with_analyzer


def test_live_panels_return_data(tmp_path: Path) -> None:
    with live_stack(tmp_path) as (_dsn, ports, with_analyzer):
        jobs = {
            "pgarchitect-exporter": [f"127.0.0.1:{ports['exporter']}"],
            "pgarchitect-refapp": [f"127.0.0.1:{ports['refapp']}"],
        }
        dashboards = list(LIVE_DASHBOARDS)
        if with_analyzer:
            jobs["pgarchitect-analyzer"] = [f"127.0.0.1:{ports['analyzer']}"]
            dashboards.append("pgarchitect-analyzer")
        refapp = f"http://127.0.0.1:{ports['refapp']}"
        with prometheus(tmp_path, jobs, rule_files=sorted(RULES_DIR.glob("*.yml"))) as prom:
            wait_for("all scrape targets up", prom.targets_up, timeout=60)
            failures: dict[str, list[str]] = {}
            for uid in dashboards:
                path = DASHBOARD_DIR / f"{uid}.json"

                def ok(path: Path = path, uid: str = uid) -> bool:
                    drive_refapp(refapp)
                    failures[uid] = empty_panels(
                        prom, path, allowed_empty=ALLOWED_EMPTY.get(uid, ())
                    )
                    return not failures[uid]

                wait_for(
                    f"every panel of {uid} to return data",
                    ok,
                    timeout=120,
                    interval=2,
                    on_timeout=lambda uid=uid: "\n".join(failures.get(uid, [])),
                )
            assert all(not failures[uid] for uid in dashboards)
