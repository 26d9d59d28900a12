"""The ask store: knowledge rows (ask_knowledge: examples, schema, docs, contrast questions,
with their vectors) and the questions asked (ask_question); the rules are analyzer/ask/'s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from psycopg.types.json import Jsonb

from analyzer.store.connection import Conn, rows_as

# The row that holds the checksum of the shipped examples and docs (source 'docs'), and the
# one per target that holds which catalog snapshot its schema rows describe (source 'catalog').
VERSION_KEY = "#version"


@dataclass(frozen=True)
class Item:
    """One knowledge row to store; (source, scope, key) is what a later store replaces."""

    kind: str
    source: str
    scope: str
    key: str
    body: str
    question: str | None = None
    sql: str | None = None


@dataclass(frozen=True)
class Hit:
    """A knowledge row near a question."""

    id: int
    kind: str
    source: str
    scope: str
    key: str
    question: str | None
    sql: str | None
    body: str
    similarity: float


def store(conn: Conn, items: Sequence[Item], vectors: np.ndarray, model: str) -> None:
    """Insert or replace knowledge rows with their vectors, made by `model`."""
    with conn.cursor() as cur:
        cur.executemany(
            "/* pgarchitect */ INSERT INTO pgarchitect.ask_knowledge (kind, source, scope, key,"
            " question, sql, body, embedding, model) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (source, scope, key) DO UPDATE SET kind = excluded.kind,"
            " question = excluded.question, sql = excluded.sql, body = excluded.body,"
            " embedding = excluded.embedding, model = excluded.model",
            [(i.kind, i.source, i.scope, i.key, i.question, i.sql, i.body,
              np.asarray(v, dtype=np.float32), model)
             for i, v in zip(items, vectors, strict=True)])


def knowledge_id(conn: Conn, source: str, scope: str, key: str) -> int:
    """The id of a stored knowledge row."""
    row = conn.execute("/* pgarchitect */ SELECT id FROM pgarchitect.ask_knowledge WHERE"
                       " source = %s AND scope = %s AND key = %s", (source, scope, key)).fetchone()
    assert row is not None
    return int(row[0])


class Body(NamedTuple):
    """What a knowledge row's vector is made from."""

    id: int
    body: str


def bodies(conn: Conn) -> list[Body]:
    """Every embedded knowledge row's text, by id."""
    return rows_as(conn, Body, "/* pgarchitect */ SELECT id, body"
                   " FROM pgarchitect.ask_knowledge WHERE embedding IS NOT NULL ORDER BY id")


def set_embeddings(conn: Conn, vectors: Sequence[tuple[int, np.ndarray]], model: str) -> None:
    """Replace knowledge rows' vectors (id, vector), made by `model`."""
    with conn.cursor() as cur:
        cur.executemany("/* pgarchitect */ UPDATE pgarchitect.ask_knowledge SET"
                        " embedding = %s, model = %s WHERE id = %s",
                        [(np.asarray(v, dtype=np.float32), model, i) for i, v in vectors])


def version(conn: Conn, source: str, scope: str) -> str | None:
    """What the version row of (source, scope) says (None: none stored)."""
    row = conn.execute("/* pgarchitect */ SELECT body FROM pgarchitect.ask_knowledge"
                       " WHERE source = %s AND scope = %s AND key = %s",
                       (source, scope, VERSION_KEY)).fetchone()
    return None if row is None else str(row[0])


def set_version(conn: Conn, source: str, scope: str, body: str) -> None:
    """Record what (source, scope)'s rows were made from."""
    conn.execute("/* pgarchitect */ INSERT INTO pgarchitect.ask_knowledge (kind, source, scope,"
                 " key, body) VALUES ('doc', %s, %s, %s, %s) ON CONFLICT (source, scope, key)"
                 " DO UPDATE SET body = excluded.body", (source, scope, VERSION_KEY, body))


def delete_shipped(conn: Conn) -> None:
    """Drop the shipped examples and docs (before the current ones are stored)."""
    conn.execute("/* pgarchitect */ DELETE FROM pgarchitect.ask_knowledge"
                 " WHERE source IN ('curated', 'docs')")


def delete_schema(conn: Conn, target: str, *, columns: bool) -> None:
    """Drop a target's schema rows: those from the target itself (`columns`), or those from
    its catalog snapshots."""
    like = "LIKE" if columns else "NOT LIKE"
    conn.execute(f"/* pgarchitect */ DELETE FROM pgarchitect.ask_knowledge WHERE"
                 f" source = 'catalog' AND scope = %s AND key {like} 'columns:%%'".encode(),
                 (target,))


class LatestCatalog(NamedTuple):
    """A target's newest catalog snapshot."""

    target: str
    id: int
    catalog: Mapping[str, Any]


def latest_catalogs(conn: Conn) -> list[LatestCatalog]:
    """Each target's newest catalog snapshot."""
    return rows_as(
        conn, LatestCatalog,
        "/* pgarchitect */ SELECT DISTINCT ON (c.target) c.target, c.id, c.catalog"
        " FROM pgarchitect.catalog_snapshot c ORDER BY c.target, c.taken_at DESC, c.id DESC")


def nearest(conn: Conn, vector: np.ndarray, kinds: Iterable[str], scopes: Iterable[str],
            limit: int) -> list[Hit]:
    """The `limit` knowledge rows of those kinds and scopes nearest to `vector` (cosine),
    nearest first."""
    with conn.transaction():
        conn.execute("/* pgarchitect */ SELECT set_config('hnsw.iterative_scan',"
                     " 'relaxed_order', true) FROM pg_extension WHERE extname = 'vector'"
                     " AND string_to_array(extversion, '.')::int[] >= '{0,8}'")
        hits = rows_as(
            conn, Hit,
            "/* pgarchitect */ SELECT id, kind, source, scope, key, question, sql, body,"
            " 1 - (embedding <=> %(v)s) AS similarity FROM pgarchitect.ask_knowledge"
            " WHERE embedding IS NOT NULL AND kind = ANY(%(kinds)s)"
            " AND scope = ANY(%(scopes)s) ORDER BY embedding <=> %(v)s LIMIT %(limit)s",
            {"v": np.asarray(vector, dtype=np.float32), "kinds": list(kinds),
             "scopes": list(scopes), "limit": limit})
    return sorted(hits, key=lambda h: -h.similarity)


def names(conn: Conn) -> tuple[list[str], list[str]]:
    """The target names and the table names (schema.table) the store knows."""
    targets = [r[0] for r in conn.execute(
        "/* pgarchitect */ SELECT DISTINCT target FROM pgarchitect.audit_run UNION"
        " SELECT DISTINCT target FROM pgarchitect.catalog_snapshot").fetchall()]
    tables = [r[0] for r in conn.execute(
        "/* pgarchitect */ SELECT DISTINCT (t ->> 'schema') || '.' || (t ->> 'name') FROM"
        " (SELECT DISTINCT ON (target) catalog FROM pgarchitect.catalog_snapshot"
        "  ORDER BY target, taken_at DESC) c,"
        " jsonb_array_elements(c.catalog -> 'tables') t"
        " UNION SELECT DISTINCT table_name FROM pgarchitect.optimization_log"
        " WHERE table_name <> ''").fetchall()]
    return targets, tables


class Asked(NamedTuple):
    """One question asked and how it went (a row of ask_question)."""

    asked_by: str
    question: str
    target: str | None
    database: str
    generator: str
    sql: str | None
    outcome: str
    reason: str | None
    row_count: int
    truncated: bool
    examples: Sequence[Mapping[str, Any]]
    seconds: float


def log_question(conn: Conn, asked: Asked) -> None:
    """Record a question asked."""
    conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.ask_question (asked_by, question, target,"
        " database, generator, sql, outcome, reason, row_count, truncated, examples, seconds)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (asked.asked_by, asked.question, asked.target, asked.database, asked.generator,
         asked.sql, asked.outcome, asked.reason, asked.row_count, asked.truncated,
         Jsonb([dict(e) for e in asked.examples]), asked.seconds))


class Logged(NamedTuple):
    """A logged question as the API lists it."""

    id: int
    asked_at: datetime
    asked_by: str
    question: str
    target: str | None
    database: str
    generator: str
    sql: str | None
    outcome: str
    reason: str | None
    row_count: int | None
    seconds: float
    promoted_id: int | None


_LOGGED = ("/* pgarchitect */ SELECT id, asked_at, asked_by, question, target, database,"
           " generator, sql, outcome, reason, row_count, seconds, promoted_id"
           " FROM pgarchitect.ask_question")


def logged(conn: Conn, limit: int) -> list[Logged]:
    """The logged questions, newest first."""
    return rows_as(conn, Logged, f"{_LOGGED} ORDER BY id DESC LIMIT %s".encode(), (limit,))


def logged_question(conn: Conn, question_id: int) -> Logged | None:
    """One logged question (None: no such one)."""
    found = rows_as(conn, Logged, f"{_LOGGED} WHERE id = %s".encode(), (question_id,))
    return found[0] if found else None


def mark_promoted(conn: Conn, question_id: int, knowledge_id: int) -> None:
    """A logged question was made the example `knowledge_id`."""
    conn.execute("/* pgarchitect */ UPDATE pgarchitect.ask_question SET promoted_id = %s"
                 " WHERE id = %s", (knowledge_id, question_id))
