"""Replication lag: pg_stat_replication on a primary, the replay timestamp on a standby."""

from pgarchitect.db import mark

PRIMARY = mark("""
SELECT coalesce(application_name, '') AS application_name,
       coalesce(extract(epoch FROM replay_lag), 0)::float8 AS lag
FROM pg_stat_replication""")

# A standby that has replayed everything it received is not lagging, however old the last
# transaction is.
STANDBY = mark("""
SELECT 'standby' AS application_name,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag""")
