"""The probe every scrape starts with."""

from __future__ import annotations

import asyncpg

from exporter.model import ServerInfo
from exporter.sql import server as sql


async def fetch(conn: asyncpg.Connection) -> ServerInfo:
    """Server version, role privileges and the pg_stat_statements installation."""
    r = await conn.fetchrow(sql.PROBE)
    return ServerInfo(
        version_num=r["version_num"], version=r["version"], in_recovery=r["in_recovery"],
        max_connections=r["max_connections"], datname=r["datname"],
        pgss_version=r["pgss_version"], pgss_schema=r["pgss_schema"],
        read_all_stats=r["read_all_stats"],
    )
