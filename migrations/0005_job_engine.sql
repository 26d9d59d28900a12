-- The analyzer service's job engine (procrastinate) and what the service needs beyond 0002.
-- The line below is replaced by procrastinate's own schema when the migration is applied
-- (pgarchitect/migrate.py); see docs/analyzer.md, "Job engine".
-- @include procrastinate-schema

-- An audit requested through the admin API is recorded at once as 'queued', so the caller
-- gets its id before a worker picks it up.
ALTER TABLE pgarchitect.audit_run DROP CONSTRAINT audit_run_status_check;
ALTER TABLE pgarchitect.audit_run ADD CONSTRAINT audit_run_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed'));
ALTER TABLE pgarchitect.audit_run ADD COLUMN requested_by text NOT NULL DEFAULT 'cli'
    CHECK (requested_by IN ('cli', 'api', 'schedule'));
CREATE INDEX audit_run_open_idx ON pgarchitect.audit_run (target)
    WHERE status IN ('queued', 'running');

-- The latest quick regression check after a snapshot, one row per target: every replica
-- exports the same pgarchitect_regressions / pgarchitect_regression_clusters from it.
CREATE TABLE pgarchitect.regression_check (
    target      text PRIMARY KEY,
    snapshot_id bigint,  -- no foreign key: snapshot is partitioned by time (0004)
    checked_at  timestamptz NOT NULL DEFAULT now(),
    regressions integer NOT NULL,
    clusters    integer NOT NULL,
    note        text
);
