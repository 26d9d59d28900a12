"""pg_stat_user_tables: the top $1 tables of the connected database."""

from pgarchitect.db import mark

# Ranked by whichever is highest of rows read by sequential scans, live rows and dead rows,
# so a big table, a seq-scanned one and a bloated one all make the list.
TABLES = mark("""
SELECT current_database() AS datname, schemaname, relname,
       coalesce(seq_scan, 0)::int8 AS seq_scan, coalesce(idx_scan, 0)::int8 AS idx_scan,
       n_live_tup, n_dead_tup
FROM (
  SELECT t.*,
         least(rank() OVER (ORDER BY coalesce(seq_tup_read, 0) DESC),
               rank() OVER (ORDER BY n_live_tup DESC),
               rank() OVER (ORDER BY n_dead_tup DESC)) AS best
  FROM pg_stat_user_tables t
) AS ranked
ORDER BY best, schemaname, relname
LIMIT $1""")
