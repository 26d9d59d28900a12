"""Shared pieces of pgarchitect: CLI, configuration, embedded PostgreSQL, store migrations."""
