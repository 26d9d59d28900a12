"""Replication lag: pg_stat_replication on a primary, the replay timestamp on a standby."""

from pgarchitect.db import mark

# replay_lag turns NULL once a standby has replayed everything and the primary has gone
# quiet: that is 0. It is also NULL before a standby's first reply, when the lag is unknown;
# such a standby is left out rather than reported as not lagging.
PRIMARY = mark("""
SELECT coalesce(application_name, '') AS application_name,
       coalesce(extract(epoch FROM replay_lag), 0)::float8 AS lag
FROM pg_stat_replication
WHERE replay_lag IS NOT NULL OR replay_lsn = sent_lsn""")

# A standby whose WAL receiver runs and has replayed everything it received is not lagging,
# however old the last transaction is. Without a WAL receiver (the primary is gone) it falls
# behind by the age of its last replayed transaction.
STANDBY = mark("""
SELECT 'standby' AS application_name,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                 AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag""")
