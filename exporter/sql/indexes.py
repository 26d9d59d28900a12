"""pg_stat_user_indexes: the $1 most used indexes and up to $1 never-used ones (largest first)."""

from pgarchitect.db import mark

INDEXES = mark("""
(SELECT current_database() AS datname, schemaname, relname, indexrelname,
        idx_scan::int8 AS idx_scan
 FROM pg_stat_user_indexes
 WHERE idx_scan > 0
 ORDER BY idx_scan DESC, schemaname, indexrelname
 LIMIT $1)
UNION ALL
(SELECT current_database(), schemaname, relname, indexrelname, 0::int8
 FROM pg_stat_user_indexes
 WHERE idx_scan = 0
 ORDER BY pg_relation_size(indexrelid) DESC, schemaname, indexrelname
 LIMIT $1)""")
