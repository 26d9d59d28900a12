"""The reference app over HTTP: every endpoint through every path returns the same data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from pgarchitect.demo.refapp.app import RefAppOptions, make_app
from pgarchitect.demo.refapp.service import PATH_NAMES
from tests.orm.test_instrument import sample


@pytest.fixture
async def client(demo_db: str) -> AsyncIterator[tuple[TestClient[Any, Any], CollectorRegistry]]:
    reg = CollectorRegistry()
    async with TestClient(TestServer(make_app(RefAppOptions(demo_db), reg))) as c:
        yield c, reg


async def get_json(c: TestClient[Any, Any], url: str, status: int = 200) -> Any:
    resp = await c.get(url)
    assert resp.status == status, await resp.text()
    return await resp.json()


def count(reg: CollectorRegistry, path: str, operation: str, datname: str) -> float:
    return sample(reg, "pg_orm_queries_total", orm_path=path, operation=operation,
                  datname=datname, outcome="ok")


async def test_each_endpoint_through_each_path_returns_the_same_data(
    client: tuple[TestClient[Any, Any], CollectorRegistry], demo_db: str
) -> None:
    c, reg = client
    db = demo_db.rsplit("/", 1)[1]
    for user in (1, 7):
        logs = {p: await get_json(c, f"/users/{user}/logs?limit=500&path={p}")
                for p in PATH_NAMES}
        assert logs["thin"]["logs"], "the demo data has logs for this user"
        assert logs["orm"] == logs["thin"] == logs["analytics"]
        activity = {p: await get_json(c, f"/users/{user}/activity?days=120&path={p}")
                    for p in PATH_NAMES}
        assert activity["thin"]["activity"]
        assert activity["orm"] == activity["thin"] == activity["analytics"]
    batch = {"logs": [{"action": "view", "payload": {"i": i, "nested": {"k": [1, 2]}},
                       "created_at": f"2024-05-0{1 + i % 5}T10:00:0{i % 10}+00:00"}
                      for i in range(40)]}
    for n, p in enumerate(PATH_NAMES):
        resp = await c.post(f"/users/{900 + n}/logs?path={p}", json=batch)
        assert resp.status == 201, await resp.text()
        assert await resp.json() == {"inserted": 40}
    stored = []
    for n in range(len(PATH_NAMES)):
        rows = (await get_json(c, f"/users/{900 + n}/logs?limit=100"))["logs"]
        stored.append(sorted(
            (r["action"], r["created_at"], r["payload"]["i"], str(r["payload"])) for r in rows))
    assert len(stored[0]) == 40
    assert stored[0] == stored[1] == stored[2]
    for p in PATH_NAMES:  # every path observed every operation under its own orm_path
        # (the three read-backs without ?path= went to thin, the CRUD default)
        assert count(reg, p, "behavior_logs.latest", db) == (5 if p == "thin" else 2)
        assert count(reg, p, "behavior_logs.daily_activity", db) == 2
        assert count(reg, p, "behavior_logs.insert_many", db) >= 1


async def test_default_routing_and_metrics(
    client: tuple[TestClient[Any, Any], CollectorRegistry], demo_db: str
) -> None:
    c, reg = client
    db = demo_db.rsplit("/", 1)[1]
    await get_json(c, "/users/3/logs")
    await get_json(c, "/users/3/activity")
    assert count(reg, "thin", "behavior_logs.latest", db) == 1  # CRUD goes to thin
    assert count(reg, "analytics", "behavior_logs.daily_activity", db) == 1  # aggregates
    assert count(reg, "orm", "behavior_logs.latest", db) == 0
    resp = await c.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert (f'pg_orm_query_duration_seconds_bucket{{datname="{db}",le="0.05",'
            f'operation="behavior_logs.latest",orm_path="thin"}} 1.0') in text
    resp = await c.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")


async def test_route_all_orm_is_the_rollback_switch(demo_db: str) -> None:
    reg = CollectorRegistry()
    db = demo_db.rsplit("/", 1)[1]
    app = make_app(RefAppOptions(demo_db, route_all_orm=True), reg)
    async with TestClient(TestServer(app)) as c:
        await get_json(c, "/users/3/logs")
        await get_json(c, "/users/3/activity")
        resp = await c.post("/users/3/logs", json={"logs": [{"action": "click"}]})
        assert resp.status == 201
    assert count(reg, "orm", "behavior_logs.latest", db) == 1
    assert count(reg, "orm", "behavior_logs.daily_activity", db) == 1
    assert count(reg, "orm", "behavior_logs.insert_many", db) >= 1
    assert all(count(reg, p, op, db) == 0 for p in ("thin", "analytics")
               for op in ("behavior_logs.latest", "behavior_logs.daily_activity"))


@pytest.mark.parametrize(("method", "url", "body", "needle"), [
    ("get", "/users/abc/logs", None, "user_id must be an integer"),
    ("get", "/users/1/logs?limit=0", None, "limit must be between"),
    ("get", "/users/1/logs?path=hibernate", None, "path must be one of"),
    ("get", "/users/1/activity?days=x", None, "days must be an integer"),
    ("post", "/users/1/logs", {"logs": []}, "1 to 10000 entries"),
    ("post", "/users/1/logs", {"logs": [{"action": 3}]}, "logs[0]"),
    ("post", "/users/1/logs", {"logs": [{"action": "a", "created_at": "yesterday"}]},
     "ISO 8601"),
])
async def test_bad_input_is_one_clear_400(
    client: tuple[TestClient[Any, Any], CollectorRegistry],
    method: str, url: str, body: Any, needle: str,
) -> None:
    c, _ = client
    resp = await (c.get(url) if method == "get" else c.post(url, json=body))
    assert resp.status == 400
    assert needle in (await resp.json())["error"]


def test_cli_without_a_database_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGARCHITECT_")}
    proc = subprocess.run([sys.executable, "-m", "pgarchitect.demo.refapp",
                           "--listen", "127.0.0.1:0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "refapp: config: targets: no database (give --dsn, PGARCHITECT_DSN or a config file "
        "with targets)"]
