"""Replication lag, as seen from a primary or from a standby."""

from __future__ import annotations

import asyncpg

from exporter.model import ReplicationRow, ServerInfo
from exporter.sql import replication as sql


async def fetch(conn: asyncpg.Connection, server: ServerInfo) -> list[ReplicationRow]:
    """Per standby on a primary (none when there is none); one row on a standby."""
    query = sql.STANDBY if server.in_recovery else sql.PRIMARY
    return [ReplicationRow(r["application_name"], r["lag"]) for r in await conn.fetch(query)]
