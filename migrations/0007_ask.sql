-- Ask (docs/ask.md): knowledge for natural-language questions, the questions asked, which
-- embedder made the stored vectors, and a role that can only read the store.

-- What the answerer retrieves from: question->SQL examples (curated with pgarchitect, or an
-- operator's own), schema descriptions (a target's tables from its catalog snapshots),
-- documentation snippets (the store's tables explained, an operator's notes), and contrast
-- questions (about an application's own data: what the store's examples must not answer).
-- `scope` is 'store' for knowledge about this database, or a target's name.
CREATE TABLE pgarchitect.ask_knowledge (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('example', 'schema', 'doc', 'contrast')),
    source     text NOT NULL CHECK (source IN ('curated', 'operator', 'catalog', 'docs')),
    scope      text NOT NULL DEFAULT 'store',
    key        text NOT NULL,         -- unique within (source, scope): what a sync replaces
    question   text,                  -- examples: the question, one phrasing per row
    sql        text,                  -- examples: the SQL, slots as {name}
    body       text NOT NULL,         -- what is embedded and shown to a model
    embedding  vector(384),
    model      text,                  -- the embedder that made `embedding`
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, scope, key),
    CHECK (kind <> 'example' OR (question IS NOT NULL AND sql IS NOT NULL))
);
CREATE INDEX ask_knowledge_embedding_idx
    ON pgarchitect.ask_knowledge USING hnsw (embedding vector_cosine_ops);

-- Every question asked, with what answered it and how it went.
CREATE TABLE pgarchitect.ask_question (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asked_at    timestamptz NOT NULL DEFAULT now(),
    asked_by    text NOT NULL CHECK (asked_by IN ('cli', 'api', 'demo')),
    question    text NOT NULL,
    target      text,
    database    text NOT NULL CHECK (database IN ('store', 'target')),
    generator   text NOT NULL,
    sql         text,
    outcome     text NOT NULL CHECK (outcome IN ('answered', 'unknown', 'refused', 'failed')),
    reason      text,                 -- why it was refused or failed
    row_count   integer,
    truncated   boolean,
    examples    jsonb NOT NULL DEFAULT '[]',
    seconds     double precision NOT NULL,
    promoted_id bigint REFERENCES pgarchitect.ask_knowledge (id) ON DELETE SET NULL
);
CREATE INDEX ask_question_asked_at_idx ON pgarchitect.ask_question (asked_at DESC);

-- Which embedder made each set of stored vectors ('memory': optimization_log, 'ask':
-- ask_knowledge), and every re-embedding after the embedder changed.
CREATE TABLE pgarchitect.embedding_space (
    space      text PRIMARY KEY CHECK (space IN ('memory', 'ask')),
    model      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE pgarchitect.embedding_migration (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    space       text NOT NULL,
    from_model  text,                 -- null: vectors from before the embedder was recorded
    to_model    text NOT NULL,
    rows        integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The role answers run as on the store: it can read the pgarchitect schema's tables and
-- nothing else (no other schema, no writes). Roles are cluster-wide: another store database
-- on the same server shares it. The migrating role becomes a member so that a session can
-- SET ROLE to it. A migrating role that may not create roles leaves a notice, and `ask`
-- refuses to run anything on the store until an administrator creates it (docs/ask.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgarchitect_reader') THEN
        BEGIN
            CREATE ROLE pgarchitect_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOINHERIT NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create the role pgarchitect_reader (docs/ask.md)';
            RETURN;
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'pgarchitect_reader', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT pgarchitect_reader TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot grant pgarchitect_reader to %', current_user;
        END;
    END IF;
    GRANT USAGE ON SCHEMA pgarchitect TO pgarchitect_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA pgarchitect TO pgarchitect_reader;
    ALTER DEFAULT PRIVILEGES IN SCHEMA pgarchitect GRANT SELECT ON TABLES TO pgarchitect_reader;
END $$;
