-- The pgarchitect store: snapshots of pg_stat_statements, audits, regressions, clusters and
-- the memory of recommendations (with pgvector embeddings). SPEC section 4.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS pgarchitect;

-- One reading of a target's pg_stat_statements.
CREATE TABLE pgarchitect.snapshot (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target          text        NOT NULL,
    taken_at        timestamptz NOT NULL DEFAULT now(),
    server_version  text,
    stats_reset     timestamptz,           -- pg_stat_statements_info.stats_reset (PG14+)
    dealloc         bigint,                -- pg_stat_statements_info.dealloc (PG14+)
    statement_count integer     NOT NULL DEFAULT 0
);
CREATE INDEX snapshot_target_taken_at_idx ON pgarchitect.snapshot (target, taken_at);

-- Normalized statement texts, fetched once per (target, dbid, queryid).
CREATE TABLE pgarchitect.statement_text (
    target      text        NOT NULL,
    dbid        oid         NOT NULL,
    queryid     bigint      NOT NULL,
    fingerprint text,                      -- pglast fingerprint: groups parameter-type variants
    query       text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, dbid, queryid)
);
CREATE INDEX statement_text_fingerprint_idx ON pgarchitect.statement_text (target, fingerprint);

-- Cumulative counters per statement in a snapshot (deltas are computed by the analyzer).
CREATE TABLE pgarchitect.statement_stat (
    snapshot_id         bigint  NOT NULL REFERENCES pgarchitect.snapshot (id) ON DELETE CASCADE,
    dbid                oid     NOT NULL,
    datname             text,
    userid              oid     NOT NULL,
    username            text,
    queryid             bigint  NOT NULL,
    toplevel            boolean NOT NULL DEFAULT true,
    calls               bigint  NOT NULL,
    total_exec_time     double precision NOT NULL,   -- milliseconds
    min_exec_time       double precision,
    max_exec_time       double precision,
    mean_exec_time      double precision,
    stddev_exec_time    double precision,            -- population stddev since stats_since
    total_plan_time     double precision,
    rows                bigint,
    shared_blks_hit     bigint,
    shared_blks_read    bigint,
    shared_blks_dirtied bigint,
    shared_blks_written bigint,
    temp_blks_read      bigint,
    temp_blks_written   bigint,
    blk_read_time       double precision,
    blk_write_time      double precision,
    wal_bytes           numeric,
    stats_since         timestamptz,                 -- PG17+: entry (re)creation time
    PRIMARY KEY (snapshot_id, dbid, userid, queryid, toplevel)
);

CREATE TABLE pgarchitect.audit_run (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target              text        NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    status              text        NOT NULL DEFAULT 'running'
                        CHECK (status IN ('running', 'succeeded', 'failed')),
    duration_seconds    double precision,
    server_version      text,
    snapshot_id         bigint REFERENCES pgarchitect.snapshot (id) ON DELETE SET NULL,
    statements_analyzed integer,
    regression_count    integer,
    cluster_count       integer,
    recommendation_count integer,
    error               text,
    report              jsonb
);
CREATE INDEX audit_run_target_started_idx ON pgarchitect.audit_run (target, started_at DESC);

CREATE TABLE pgarchitect.regression_cluster (
    audit_id    bigint  NOT NULL REFERENCES pgarchitect.audit_run (id) ON DELETE CASCADE,
    cluster_id  integer NOT NULL,
    queryids    text[]  NOT NULL,
    tables      text[]  NOT NULL DEFAULT '{}',
    summary     text    NOT NULL,
    features    jsonb,
    PRIMARY KEY (audit_id, cluster_id)
);

CREATE TABLE pgarchitect.regression (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audit_id         bigint  NOT NULL REFERENCES pgarchitect.audit_run (id) ON DELETE CASCADE,
    dbid             oid,
    queryid          bigint  NOT NULL,
    fingerprint      text,
    query            text,
    calls            bigint  NOT NULL,
    baseline_mean_ms double precision NOT NULL,
    current_mean_ms  double precision NOT NULL,
    ratio            double precision NOT NULL,
    p_value          double precision NOT NULL,
    cluster_id       integer,
    detected_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX regression_audit_idx ON pgarchitect.regression (audit_id);

-- One row per recommendation, with its lifecycle and its embedding for recall.
CREATE TABLE pgarchitect.optimization_log (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audit_id              bigint REFERENCES pgarchitect.audit_run (id) ON DELETE SET NULL,
    kind                  text NOT NULL CHECK (kind IN (
                              'create_index', 'drop_index', 'analyze', 'vacuum',
                              'n_plus_one', 'work_mem', 'rewrite')),
    target                text NOT NULL,
    table_name            text,
    columns               text[] NOT NULL DEFAULT '{}',
    ddl                   text,
    queryids              text[] NOT NULL DEFAULT '{}',
    rationale             text NOT NULL,
    evidence              jsonb NOT NULL DEFAULT '{}',
    estimated_cost_before double precision,
    estimated_cost_after  double precision,
    estimated_improvement double precision,
    confidence            double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    validated_by          text NOT NULL DEFAULT 'none'
                          CHECK (validated_by IN ('hypopg', 'transaction', 'none')),
    status                text NOT NULL DEFAULT 'proposed' CHECK (status IN (
                              'proposed', 'accepted', 'rejected', 'applied', 'verified',
                              'reverted')),
    measured_change       jsonb,
    embedding             vector(384),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    status_changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX optimization_log_status_idx ON pgarchitect.optimization_log (target, status);
CREATE INDEX optimization_log_embedding_idx
    ON pgarchitect.optimization_log USING hnsw (embedding vector_cosine_ops);
