"""The demo workload: schema, the three application_names, the planted regression."""

from __future__ import annotations

import asyncpg
import psycopg

from pgarchitect.demo.embedded import PgServer
from pgarchitect.demo.workload import DEFAULT_PLANT, PATHS, create_schema, run_workload


async def test_workload_runs_paths_and_plants_regression(
    pg_server: PgServer, target_dsn: str
) -> None:
    conn = await asyncpg.connect(target_dsn)
    try:
        await create_schema(conn, users=500, logs=5_000)
        assert await conn.fetchval("SELECT count(*) FROM behavior_logs") == 5_000
    finally:
        await conn.close()
    result = await run_workload(target_dsn, seconds=2.0, plant=DEFAULT_PLANT, users=500)
    assert result.planted == list(DEFAULT_PLANT)
    assert not result.errors
    apps = {app for app, _ in result.counts}
    assert apps == {p.application_name for p in PATHS}
    with psycopg.connect(target_dsn) as c:
        idx = c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'behavior_logs'")
        assert DEFAULT_PLANT[0] not in {r[0] for r in idx.fetchall()}
        row = c.execute(
            "SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE"
            " 'SELECT id, action, created_at, payload FROM behavior_logs%'"
        ).fetchone()
    ran = result.counts[("api-thin", "latest_logs")]
    assert row is not None and row[0] == ran
