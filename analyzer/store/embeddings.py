"""Which embedder made each set of stored vectors (embedding_space), and the record of every
re-embedding (embedding_migration); the rules are analyzer/embedspace.py's."""

from __future__ import annotations

from datetime import datetime

from analyzer.store.connection import Conn
from analyzer.store.locks import lock_reembedding


def recorded(conn: Conn, space: str) -> str | None:
    """The model recorded for a set of vectors (None before the first record)."""
    row = conn.execute("/* pgarchitect */ SELECT model FROM pgarchitect.embedding_space"
                       " WHERE space = %s", (space,)).fetchone()
    return None if row is None else str(row[0])


def begin_reembedding(conn: Conn, space: str) -> tuple[str | None, datetime]:
    """Take the re-embedding lock (inside the caller's transaction); the model recorded once
    it is held, and the time it started."""
    lock_reembedding(conn)
    row = conn.execute("/* pgarchitect */ SELECT clock_timestamp()").fetchone()
    assert row is not None
    return recorded(conn, space), row[0]


def record(conn: Conn, space: str, before: str | None, model: str, rows: int,
           started_at: datetime) -> None:
    """`space`'s vectors are `model`'s now; a re-embedding of `rows` rows is recorded when
    there were any, or when another model had been recorded."""
    conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.embedding_space (space, model)"
        " VALUES (%s, %s) ON CONFLICT (space) DO UPDATE SET model = excluded.model,"
        " updated_at = clock_timestamp()", (space, model))
    if rows or before is not None:
        conn.execute(
            "/* pgarchitect */ INSERT INTO pgarchitect.embedding_migration"
            " (space, from_model, to_model, rows, started_at) VALUES (%s, %s, %s, %s, %s)",
            (space, before, model, rows, started_at))
