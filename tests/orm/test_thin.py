"""The thin path is thin: raw JSON payloads, one prepared statement per connection, no reset
round trips, one COPY per batch (PostgreSQL 15 and 18)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import orjson
from prometheus_client import CollectorRegistry

from exporter.instrument import OrmMetrics
from pgarchitect.demo.refapp.app import logs_body
from pgarchitect.demo.refapp.service import (
    OPERATIONS,
    THIN_LATEST,
    AnalyticsPath,
    NewLog,
    RawJson,
    ThinPath,
)
from pgarchitect.demo.workload import create_schema

PAYLOAD = {"s": 'é "quoted" \\ \n ✓', "nested": {"k": [1, 2.5, None, True]}, "n": 2**62}


async def _calls(conn: asyncpg.Connection, like: str) -> int:
    """Calls recorded by pg_stat_statements in this database for statements matching `like`."""
    n = await conn.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d"
        " ON d.oid = s.dbid WHERE d.datname = current_database() AND s.query ILIKE $1", like)
    return int(n)


async def test_thin_reads_and_copies_without_extra_round_trips(target_dsn: str) -> None:
    conn = await asyncpg.connect(target_dsn)
    metrics = OrmMetrics(CollectorRegistry(), OPERATIONS)
    thin = ThinPath(target_dsn, metrics, pool_size=1)
    try:
        await create_schema(conn, users=5, logs=2_000)
        await thin.start(None)
        for user in (1, 2, 3, 1, 2):
            assert await thin.latest_logs(user, 50)
        now = datetime.now(UTC)
        for batch in range(2):
            logs = [NewLog(500 + batch, "view", now, {"i": i}) for i in range(30)]
            assert await thin.insert_logs(logs) == 30
        assert thin.pool is not None
        async with thin.pool.acquire() as pooled:  # pool_size 1: the connection that served all
            prepared = await pooled.fetchval(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", THIN_LATEST)
        assert prepared == 1  # prepared once, executed five times
        assert await _calls(conn, THIN_LATEST) == 5
        assert await _calls(conn, "COPY %behavior_logs%") == 2
        # asyncpg's default reset on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL)
        for reset in ("%pg_advisory_unlock_all%", "%RESET ALL%", "%UNLISTEN%"):
            assert await _calls(conn, reset) == 0, reset
    finally:
        await thin.close()
        await conn.close()


async def test_thin_payload_is_the_servers_json_text(target_dsn: str) -> None:
    conn = await asyncpg.connect(target_dsn)
    metrics = OrmMetrics(CollectorRegistry(), OPERATIONS)
    thin = ThinPath(target_dsn, metrics, pool_size=1)
    analytics = AnalyticsPath(target_dsn, metrics, pool_size=1)
    try:
        await create_schema(conn, users=2, logs=10)
        await thin.start(None)
        await analytics.start(None)
        at = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
        await thin.insert_logs([NewLog(700, "view", at, PAYLOAD)])
        (row,) = await thin.latest_logs(700, 10)
        assert isinstance(row[4], RawJson)  # not decoded on the way in
        assert orjson.loads(orjson.dumps(row[4])) == PAYLOAD
        stored = await conn.fetchval("SELECT payload::text FROM behavior_logs WHERE user_id = 700")
        assert orjson.dumps(row[4]) == stored.encode()  # verbatim: the server's own text
        await thin.insert_logs([NewLog(701, "view", at, {"big": 2**70})])  # beyond orjson
        (big,) = await thin.latest_logs(701, 10)
        assert orjson.loads(orjson.dumps(big[4])) == {"big": 2**70}
        decoded = await analytics.latest_logs(700, 10)
        assert orjson.loads(logs_body([row])) == orjson.loads(logs_body(decoded)) == {"logs": [{
            "id": row[0], "user_id": 700, "action": "view",
            "created_at": "2024-05-01T10:00:00.123456+00:00", "payload": PAYLOAD}]}
    finally:
        await thin.close()
        await analytics.close()
        await conn.close()


def test_logs_body_takes_integers_beyond_64_bits() -> None:
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    body = orjson.loads(logs_body([(1, 2, "view", at, {"big": 2**70})]))
    assert body == {"logs": [{"id": 1, "user_id": 2, "action": "view",
                              "created_at": "2024-05-01T10:00:00+00:00",
                              "payload": {"big": 2**70}}]}
