"""pg_stat_activity: client backends by state and application, and the oldest transaction."""

from pgarchitect.db import mark

# The exporter's own backend is left out: it is always active while it asks.
CONNECTIONS = mark("""
SELECT coalesce(datname, '') AS datname, coalesce(state, 'unknown') AS state,
       coalesce(application_name, '') AS application_name, count(*)::int8 AS count
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 1, 2, 3""")

MAX_TX_DURATION = mark("""
SELECT d.datname,
       coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start)), 0)::float8 AS seconds
FROM pg_database d
LEFT JOIN pg_stat_activity a
       ON a.datid = d.oid AND a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid()
      AND a.backend_type = 'client backend'
WHERE d.datallowconn
GROUP BY d.datname""")
