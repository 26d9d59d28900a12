-- Catalog snapshots: the target's indexes, per-table counters and plan-relevant settings,
-- stored with a snapshot only when their structure (index definitions and validity, ANALYZE
-- times, settings, statistics reset) differs from the target's previous stored catalog.
CREATE TABLE pgarchitect.catalog_snapshot (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target      text        NOT NULL,
    snapshot_id bigint REFERENCES pgarchitect.snapshot (id) ON DELETE SET NULL,
    taken_at    timestamptz NOT NULL,
    structure   jsonb       NOT NULL,
    catalog     jsonb       NOT NULL
);
CREATE INDEX catalog_snapshot_target_taken_at_idx
    ON pgarchitect.catalog_snapshot (target, taken_at DESC);

-- The cause a cluster of regressions was attributed to (null without evidence).
ALTER TABLE pgarchitect.regression_cluster ADD COLUMN cause jsonb;
