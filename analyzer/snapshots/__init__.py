"""Snapshots of pg_stat_statements: reading a target, storing and loading them."""
