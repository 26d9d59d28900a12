-- Recommendation memory: the full lifecycle (with `ineffective`), its history, revert DDL,
-- sandbox validation, repeats merged into one row (last seen, times seen) and verification.

ALTER TABLE pgarchitect.optimization_log
    DROP CONSTRAINT IF EXISTS optimization_log_status_check,
    DROP CONSTRAINT IF EXISTS optimization_log_validated_by_check,
    ADD CONSTRAINT optimization_log_status_check CHECK (status IN (
        'proposed', 'accepted', 'rejected', 'applied', 'verified', 'ineffective', 'reverted')),
    ADD CONSTRAINT optimization_log_validated_by_check CHECK (validated_by IN (
        'hypopg', 'sandbox', 'transaction', 'none')),
    ADD COLUMN revert_ddl    text,
    -- The normalised index definition (no name, no CONCURRENTLY, schema-qualified), so a
    -- catalog snapshot can tell that the recommended index now exists, whatever its name.
    ADD COLUMN index_definition text,
    ADD COLUMN statements    text[] NOT NULL DEFAULT '{}',   -- normalised statement texts
    ADD COLUMN last_audit_id bigint REFERENCES pgarchitect.audit_run (id) ON DELETE SET NULL,
    ADD COLUMN last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN times_seen    integer NOT NULL DEFAULT 1,
    ADD COLUMN applied_at    timestamptz,
    ADD COLUMN verified_at   timestamptz,
    ADD COLUMN reverts_id    bigint REFERENCES pgarchitect.optimization_log (id) ON DELETE SET NULL;

CREATE INDEX optimization_log_definition_idx
    ON pgarchitect.optimization_log (target, index_definition)
    WHERE index_definition IS NOT NULL;

-- One row per status change of a recommendation (its creation included: from_status NULL).
CREATE TABLE pgarchitect.optimization_history (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recommendation_id bigint NOT NULL
                      REFERENCES pgarchitect.optimization_log (id) ON DELETE CASCADE,
    from_status       text,
    to_status         text NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    changed_by        text NOT NULL CHECK (changed_by IN ('analyzer', 'api', 'cli')),
    note              text
);
CREATE INDEX optimization_history_recommendation_idx
    ON pgarchitect.optimization_history (recommendation_id, changed_at);
