"""pg_locks: backends waiting for a lock, per database (0 where none wait)."""

from pgarchitect.db import mark

# Row-lock waits are on transactionid locks whose `database` is NULL, so the database comes
# from the waiting backend, not from the lock.
LOCKS_WAITING = mark("""
SELECT d.datname, count(DISTINCT l.pid)::int8 AS waiting
FROM pg_database d
LEFT JOIN pg_stat_activity a ON a.datid = d.oid
LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
WHERE d.datallowconn
GROUP BY d.datname""")
