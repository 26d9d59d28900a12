-- Analyzer I: what snapshots, regression detection and clustering need beyond 0001.

-- Statements pgarchitect sent itself are remembered (so their texts are not fetched again)
-- but never analysed.
ALTER TABLE pgarchitect.statement_text ADD COLUMN own boolean NOT NULL DEFAULT false;

-- A regression is one statement group (same dbid, toplevel and pglast fingerprint): all the
-- queryids it stands for, and how its change looked.
ALTER TABLE pgarchitect.regression
    ADD COLUMN queryids        text[] NOT NULL DEFAULT '{}',
    ADD COLUMN toplevel        boolean NOT NULL DEFAULT true,
    ADD COLUMN baseline_calls  bigint,
    ADD COLUMN baseline_stddev_ms double precision,
    ADD COLUMN current_stddev_ms  double precision,
    ADD COLUMN changed_since   timestamptz,
    ADD COLUMN tables          text[] NOT NULL DEFAULT '{}',
    ADD COLUMN plan            jsonb;

-- Plan shapes seen by audits, so a later audit can tell how a plan changed.
CREATE TABLE pgarchitect.statement_plan (
    target      text        NOT NULL,
    dbid        oid         NOT NULL,
    fingerprint text        NOT NULL,
    audit_id    bigint      NOT NULL REFERENCES pgarchitect.audit_run (id) ON DELETE CASCADE,
    captured_at timestamptz NOT NULL DEFAULT now(),
    shape       jsonb       NOT NULL,
    PRIMARY KEY (target, dbid, fingerprint, audit_id)
);
CREATE INDEX statement_plan_lookup_idx
    ON pgarchitect.statement_plan (target, dbid, fingerprint, captured_at DESC);
