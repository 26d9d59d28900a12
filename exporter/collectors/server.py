"""The probe every scrape starts with: version, role, where (and which) pg_stat_statements is."""

from __future__ import annotations

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec
from exporter.model import ServerInfo
from pgarchitect.db import mark

PROBE = mark("""
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       current_database() AS datname,
       e.extversion AS pgss_version,
       n.nspname AS pgss_schema,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats
FROM (SELECT 1) AS one
LEFT JOIN pg_extension e ON e.extname = 'pg_stat_statements'
LEFT JOIN pg_namespace n ON n.oid = e.extnamespace""")

PING = mark("SELECT 1")

SPECS = {
    "pg_server_version_info": Spec("gauge", (*TARGET, "version"), "Server version, value 1."),
    "pg_settings_max_connections": Spec("gauge", TARGET, "The max_connections setting."),
}


async def fetch(conn: asyncpg.Connection) -> ServerInfo:
    """Server version, role privileges and the pg_stat_statements installation."""
    r = await conn.fetchrow(PROBE)
    return ServerInfo(
        version_num=r["version_num"], version=r["version"], in_recovery=r["in_recovery"],
        max_connections=r["max_connections"], datname=r["datname"],
        pgss_version=r["pgss_version"], pgss_schema=r["pgss_schema"],
        read_all_stats=r["read_all_stats"],
    )


async def _fetch(conn: asyncpg.Connection, context: Context) -> ServerInfo:
    return await fetch(conn)


def emit(out: Out, target: str, info: ServerInfo) -> None:
    """The server's version and max_connections."""
    out.add("pg_server_version_info", (target, info.version), 1)
    out.add("pg_settings_max_connections", (target,), info.max_connections)


# The scrape runs this one first, before every other collector: it gates them (a failed
# probe is a down target) and its ServerInfo chooses their SQL. It cannot be disabled.
COLLECTOR = Collector("server", SPECS, _fetch, emit)
