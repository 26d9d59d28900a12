"""The probe every scrape starts with: version, role, where (and which) pg_stat_statements is."""

from __future__ import annotations

import asyncpg

from exporter.collectors.base import TARGET, Collector, Context, Out, Spec, compat
from exporter.model import ServerInfo
from pgarchitect.db import mark

# The settings exported as postgres_exporter's pg_settings_<name>[_seconds|_bytes]: those the
# postgres-mixin reads and a bounded list of others that capacity dashboards use
# (max_connections is one of ours already, pg_settings_max_connections). As the exporter's
# session sees them; work_mem, statement_timeout and lock_timeout are the exporter's own
# session's (set at connect), so they are not in the list.
SETTINGS = (
    "superuser_reserved_connections", "max_locks_per_transaction",
    "max_pred_locks_per_transaction", "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_scale_factor", "autovacuum_analyze_threshold",
    "autovacuum_analyze_scale_factor", "autovacuum_max_workers", "autovacuum_freeze_max_age",
    "max_wal_senders", "max_replication_slots", "max_worker_processes", "max_parallel_workers",
    "max_prepared_transactions", "shared_buffers", "maintenance_work_mem",
    "effective_cache_size", "max_wal_size", "checkpoint_timeout",
    "idle_in_transaction_session_timeout",
)

_PROBE = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       current_database() AS datname,
       e.extversion AS pgss_version,
       n.nspname AS pgss_schema,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       extract(epoch FROM pg_postmaster_start_time())::float8 AS started_at,
       {settings} AS settings
FROM (SELECT 1) AS one
LEFT JOIN pg_extension e ON e.extname = 'pg_stat_statements'
LEFT JOIN pg_namespace n ON n.oid = e.extnamespace"""
PROBE = mark(_PROBE.format(settings="""ARRAY(
         SELECT ARRAY[name, setting, coalesce(unit, ''), vartype] FROM pg_settings
         WHERE name = ANY($1::text[]) ORDER BY name)"""))
# While the scrape has the settings cached: pg_settings builds every setting's row (about
# half a millisecond of server time at every scrape), so this one does not read it.
PROBE_WITHOUT_SETTINGS = mark(_PROBE.format(settings="'{}'::text[]"))

PING = mark("SELECT 1")

# postgres_exporter's unit conversion: times to seconds, sizes to bytes (name suffixed).
_SECONDS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
_BYTES = {"B": 1, "kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, "1kB": 2**10,
          "2kB": 2**11, "4kB": 2**12, "8kB": 2**13, "16kB": 2**14, "32kB": 2**15,
          "64kB": 2**16, "16MB": 2**24, "32MB": 2**25, "64MB": 2**26}
# The unit of each exported setting (the same on PostgreSQL 13 to 18).
_UNITS = {"shared_buffers": "8kB", "maintenance_work_mem": "kB", "effective_cache_size": "8kB",
          "max_wal_size": "MB", "checkpoint_timeout": "s",
          "idle_in_transaction_session_timeout": "ms"}


def setting_name(name: str, unit: str) -> str:
    """postgres_exporter's metric name of a setting."""
    base = "pg_settings_" + name.replace(".", "_").replace("-", "_")
    if unit in _SECONDS:
        return base + "_seconds"
    if unit in _BYTES:
        return base + "_bytes"
    return base


def setting_value(setting: str, unit: str, vartype: str) -> float:
    """The value in base units (-1, "disabled", stays -1), as postgres_exporter computes it."""
    if vartype == "bool":
        return 1.0 if setting == "on" else 0.0
    value = float(setting)
    if value == -1:
        return value
    return value * _SECONDS.get(unit, 1) * _BYTES.get(unit, 1)


SPECS = {
    "pg_server_version_info": Spec("gauge", (*TARGET, "version"), "Server version, value 1."),
    "pg_settings_max_connections": Spec("gauge", TARGET, "The max_connections setting."),
    **{setting_name(n, _UNITS.get(n, "")): compat(
        "gauge", TARGET, f"Server parameter {n} (postgres_exporter's pg_settings).")
       for n in SETTINGS},
}


async def fetch(conn: asyncpg.Connection, with_settings: bool = True) -> ServerInfo:
    """Server version, role privileges and the pg_stat_statements installation; the
    exported settings too unless `with_settings` is false (the scrape caches them)."""
    if with_settings:
        r = await conn.fetchrow(PROBE, list(SETTINGS))
    else:
        r = await conn.fetchrow(PROBE_WITHOUT_SETTINGS)
    return ServerInfo(
        version_num=r["version_num"], version=r["version"], in_recovery=r["in_recovery"],
        max_connections=r["max_connections"], datname=r["datname"],
        pgss_version=r["pgss_version"], pgss_schema=r["pgss_schema"],
        read_all_stats=r["read_all_stats"], started_at=r["started_at"],
        settings=tuple((n, s, u, t) for n, s, u, t in r["settings"]),
    )


async def _fetch(conn: asyncpg.Connection, context: Context) -> ServerInfo:
    return await fetch(conn)


def emit(out: Out, target: str, info: ServerInfo) -> None:
    """The server's version and max_connections."""
    out.add("pg_server_version_info", (target, info.version), 1)
    out.add("pg_settings_max_connections", (target,), info.max_connections)
    if out.compat:
        for name, setting, unit, vartype in info.settings:
            out.add(setting_name(name, unit), (target,), setting_value(setting, unit, vartype))


# The scrape runs this one first, before every other collector: it gates them (a failed
# probe is a down target) and its ServerInfo chooses their SQL. It cannot be disabled.
COLLECTOR = Collector("server", SPECS, _fetch, emit)
