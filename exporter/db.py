"""Pools of the exporter's sessions: marked, time-limited, named pgarchitect-exporter."""

from __future__ import annotations

import asyncpg

from pgarchitect.config import ExporterSettings
from pgarchitect.dsn import Dsn

APPLICATION_NAME = "pgarchitect-exporter"
# Collectors run concurrently, one connection each: at most this many at once per target
# (the statements read, the probe and two health collectors; the rest wait their turn).
POOL_SIZE = 4


def session_settings(settings: ExporterSettings) -> dict[str, str]:
    """GUCs sent in the startup packet, so they hold for every statement of the session."""
    return {
        "application_name": APPLICATION_NAME,
        "statement_timeout": str(int(settings.statement_timeout * 1000)),
        "lock_timeout": str(int(settings.lock_timeout * 1000)),
        "work_mem": settings.work_mem,
        "idle_in_transaction_session_timeout": str(int(settings.statement_timeout * 1000)),
    }


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query: we never change session state, and the reset
    query would be an unmarked statement in pg_stat_statements."""


async def create_pool(dsn: Dsn, settings: ExporterSettings) -> asyncpg.Pool:
    """A small lazy pool (no connection until the first scrape) for one target."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn.reveal(),
        min_size=0,
        max_size=POOL_SIZE,
        timeout=settings.connect_timeout,
        # A client-side guard in case the server stops answering without closing the socket.
        command_timeout=settings.statement_timeout + settings.connect_timeout,
        server_settings=session_settings(settings),
        reset=_no_reset,
    )
    return pool


async def connect(dsn: Dsn, settings: ExporterSettings) -> asyncpg.Connection:
    """One connection with the exporter's session settings (start-up checks, benchmarks)."""
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn.reveal(), timeout=settings.connect_timeout,
        server_settings=session_settings(settings))
    return conn

