-- Runs once, when the postgres service initialises an empty data directory.
-- "app" (POSTGRES_DB) is the monitored target; "pgarchitect" is the analyzer's store.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE DATABASE pgarchitect;
\connect pgarchitect
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
