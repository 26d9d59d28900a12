"""Async Prometheus exporter for PostgreSQL (pg_stat_statements, health, ORM-path histograms)."""
