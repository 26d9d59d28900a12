"""pg_stat_database: per-database counters (the shared-objects row, datname NULL, skipped)."""

from pgarchitect.db import mark

DATABASES = mark("""
SELECT datname, blks_hit, blks_read, xact_commit, xact_rollback, deadlocks, temp_bytes,
       conflicts
FROM pg_stat_database
WHERE datname IS NOT NULL""")
