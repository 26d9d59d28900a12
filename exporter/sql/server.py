"""The probe: server version, role, and where (and which) pg_stat_statements is installed."""

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
