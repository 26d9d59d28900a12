"""pg_stat_user_tables and pg_stat_user_indexes of the connected database, bounded."""

from __future__ import annotations

import asyncpg

from exporter.model import IndexRow, TableRow
from exporter.sql import indexes as indexes_sql
from exporter.sql import tables as sql


async def fetch(conn: asyncpg.Connection, top_tables: int) -> list[TableRow]:
    """Scans and live/dead tuples of the top tables."""
    return [TableRow(**dict(r)) for r in await conn.fetch(sql.TABLES, top_tables)]


async def fetch_indexes(conn: asyncpg.Connection, top_indexes: int) -> list[IndexRow]:
    """The most used indexes and the largest never-used ones."""
    return [IndexRow(**dict(r)) for r in await conn.fetch(indexes_sql.INDEXES, top_indexes)]
