-- The store at fleet scale (docs/scaling.md): snapshot headers and statement counters are
-- range-partitioned by the time of the snapshot, so that retention drops whole partitions
-- instead of deleting rows; a snapshot stores only the statements whose counters moved since
-- the target's previous one, except checkpoints (`is_checkpoint`), which store every statement.
--
-- Existing data is kept: every snapshot written before this migration was complete, so each
-- becomes a checkpoint. Partitions for it are daily (the default of
-- analyzer.partition_interval); the snapshot path creates later ones at the configured size.

-- Partitions live in their own schema, so the schema pgarchitect shows the model only.
CREATE SCHEMA IF NOT EXISTS pgarchitect_partitions;

-- Which partitions exist and what time range each holds (maintenance reads this instead of
-- parsing partition bounds out of the catalog).
CREATE TABLE pgarchitect.time_partition (
    parent      text        NOT NULL CHECK (parent IN ('snapshot', 'statement_stat')),
    name        text        NOT NULL,
    lower_bound timestamptz NOT NULL,
    upper_bound timestamptz NOT NULL CHECK (upper_bound > lower_bound),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (parent, lower_bound),
    UNIQUE (name)
);

-- References into the old snapshot table (from audits, and from any later table that
-- pointed at it) cannot follow it into a partitioned table: a snapshot id stays a plain
-- value, which retention may outlive.
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS rel, conname FROM pg_constraint
             WHERE contype = 'f' AND confrelid = 'pgarchitect.snapshot'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.rel, c.conname);
    END LOOP;
END $$;

ALTER TABLE pgarchitect.snapshot RENAME TO snapshot_unpartitioned;
ALTER TABLE pgarchitect.statement_stat RENAME TO statement_stat_unpartitioned;

CREATE SEQUENCE pgarchitect.snapshot_ids AS bigint;

CREATE TABLE pgarchitect.snapshot (
    id              bigint      NOT NULL DEFAULT nextval('pgarchitect.snapshot_ids'),
    target          text        NOT NULL,
    taken_at        timestamptz NOT NULL DEFAULT now(),
    server_version  text,
    stats_reset     timestamptz,
    dealloc         bigint,
    statement_count integer     NOT NULL DEFAULT 0,   -- statements in the view at the time
    stored_count    integer     NOT NULL DEFAULT 0,   -- rows written to statement_stat
    is_checkpoint   boolean     NOT NULL DEFAULT true, -- every statement stored
    PRIMARY KEY (id, taken_at)
) PARTITION BY RANGE (taken_at);
ALTER SEQUENCE pgarchitect.snapshot_ids OWNED BY pgarchitect.snapshot.id;
CREATE INDEX snapshot_target_time_idx ON pgarchitect.snapshot (target, taken_at, id);

-- No primary key: the writer stores each statement key once per snapshot, and a plain
-- index on snapshot_id (deduplicated by btree) costs a few bytes per row where a unique key
-- over five columns plus the time would cost about fifty.
CREATE TABLE pgarchitect.statement_stat (
    snapshot_id         bigint  NOT NULL,
    taken_at            timestamptz NOT NULL,
    dbid                oid     NOT NULL,
    datname             text,
    userid              oid     NOT NULL,
    username            text,
    queryid             bigint  NOT NULL,
    toplevel            boolean NOT NULL DEFAULT true,
    calls               bigint  NOT NULL,
    total_exec_time     double precision NOT NULL,
    min_exec_time       double precision,
    max_exec_time       double precision,
    mean_exec_time      double precision,
    stddev_exec_time    double precision,
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
    wal_bytes           double precision,
    stats_since         timestamptz
) PARTITION BY RANGE (taken_at);
CREATE INDEX statement_stat_snapshot_idx ON pgarchitect.statement_stat (snapshot_id);

-- Daily partitions over the existing data (none for an empty store: the snapshot path
-- creates them ahead of need at the configured interval).
DO $$
DECLARE
    first_day timestamptz;
    last_day  timestamptz;
    day       timestamptz;
    parent    text;
    part      text;
BEGIN
    SELECT date_trunc('day', min(taken_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           date_trunc('day', max(taken_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
      INTO first_day, last_day
      FROM pgarchitect.snapshot_unpartitioned;
    day := first_day;
    WHILE day <= last_day LOOP
        FOREACH parent IN ARRAY ARRAY['snapshot', 'statement_stat'] LOOP
            part := parent || '_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS');
            EXECUTE format('CREATE TABLE pgarchitect_partitions.%I PARTITION OF pgarchitect.%I'
                           ' FOR VALUES FROM (%L) TO (%L)', part, parent, day,
                           day + interval '24 hours');
            INSERT INTO pgarchitect.time_partition (parent, name, lower_bound, upper_bound)
            VALUES (parent, part, day, day + interval '24 hours');
        END LOOP;
        day := day + interval '24 hours';
    END LOOP;
END $$;

INSERT INTO pgarchitect.snapshot (id, target, taken_at, server_version, stats_reset, dealloc,
                                  statement_count, stored_count, is_checkpoint)
SELECT s.id, s.target, s.taken_at, s.server_version, s.stats_reset, s.dealloc,
       s.statement_count, (SELECT count(*) FROM pgarchitect.statement_stat_unpartitioned x
                           WHERE x.snapshot_id = s.id), true
  FROM pgarchitect.snapshot_unpartitioned s;
SELECT setval('pgarchitect.snapshot_ids',
              greatest(coalesce((SELECT max(id) FROM pgarchitect.snapshot), 0), 1),
              (SELECT max(id) IS NOT NULL FROM pgarchitect.snapshot));

INSERT INTO pgarchitect.statement_stat
SELECT x.snapshot_id, s.taken_at, x.dbid, x.datname, x.userid, x.username, x.queryid,
       x.toplevel, x.calls, x.total_exec_time, x.min_exec_time, x.max_exec_time,
       x.mean_exec_time, x.stddev_exec_time, x.total_plan_time, x.rows, x.shared_blks_hit,
       x.shared_blks_read, x.shared_blks_dirtied, x.shared_blks_written, x.temp_blks_read,
       x.temp_blks_written, x.blk_read_time, x.blk_write_time, x.wal_bytes::float8, x.stats_since
  FROM pgarchitect.statement_stat_unpartitioned x
  JOIN pgarchitect.snapshot_unpartitioned s ON s.id = x.snapshot_id;

DROP TABLE pgarchitect.statement_stat_unpartitioned;
DROP TABLE pgarchitect.snapshot_unpartitioned;
