"""The ask knowledge in the store: curated and taught examples, schema and documentation
snippets, embedded in `pgarchitect.ask_knowledge` (pgvector, HNSW; its SQL in
analyzer/store/ask.py, searched by cosine there: `nearest`).

Curated examples and the store's documentation come from `data/examples.yaml`, synced into the
store whenever the shipped file changed; a target's schema comes from its latest catalog
snapshot (tables with their counters, indexes with their definitions); columns, types and
comments are added from the target itself when `describe_target` can reach it.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import normalize

from analyzer import embedspace
from analyzer.memory import DIMENSIONS
from analyzer.store import ask as store
from analyzer.store.ask import Item
from analyzer.store.connection import Conn
from analyzer.store.locks import lock_reembedding

EXAMPLES_FILE = Path(__file__).resolve().parent / "data" / "examples.yaml"
_WORD = re.compile(r"[a-z0-9_]+")


class TextEmbedder(Protocol):
    """Texts to unit vectors of 384 floats."""

    dimensions: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class HashingTextEmbedder:
    """The offline fallback for texts: hashed words, word pairs and word-start trigrams."""

    dimensions = DIMENSIONS
    name = embedspace.HASHING

    def __init__(self) -> None:
        self._hasher = FeatureHasher(n_features=DIMENSIONS, input_type="string",
                                     alternate_sign=False)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS))
        docs = []
        for text in texts:
            words = _WORD.findall(text.lower())
            docs.append(words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
                        + [f"<{w[:4]}" for w in words if len(w) > 4])
        matrix = self._hasher.transform(docs)
        return np.asarray(normalize(matrix, norm="l2").toarray(), dtype=np.float64)


def text_embedder(embedder: object | None = None) -> TextEmbedder:
    """The embedder for ask's texts: the memory's when it embeds texts (MiniLM), else hashing."""
    chosen = embedder if embedder is not None else embedspace.default_embedder()
    if hasattr(chosen, "embed_texts"):
        return chosen  # type: ignore[return-value]
    return HashingTextEmbedder()


@dataclass(frozen=True)
class Example:
    """A curated question->SQL example: phrasings, SQL with {slots}, defaults, columns."""

    id: str
    questions: tuple[str, ...]
    sql: str
    slots: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()


def curated() -> tuple[tuple[Example, ...], Mapping[str, str], str]:
    """The shipped examples, the documentation snippets and the file's checksum."""
    examples, docs, _, checksum = _shipped()
    return examples, docs, checksum


def contrast() -> tuple[str, ...]:
    """The shipped questions about an application's own data, and requests for actions."""
    return _shipped()[2]


@cache
def _shipped() -> tuple[tuple[Example, ...], Mapping[str, str], tuple[str, ...], str]:
    raw = EXAMPLES_FILE.read_bytes()
    data = yaml.safe_load(raw)
    examples = tuple(Example(id=e["id"], questions=tuple(e["questions"]), sql=e["sql"].strip(),
                             slots=dict(e.get("slots") or {}), columns=tuple(e["columns"]),
                             requires=tuple(e.get("requires") or ()))
                     for e in data["examples"])
    return (examples, dict(data["docs"]), tuple(data["application_data"] + data["actions"]),
            hashlib.sha256(raw).hexdigest()[:16])


def example(example_id: str) -> Example | None:
    """A curated example by id."""
    return next((e for e in curated()[0] if e.id == example_id), None)


def _store(conn: Conn, items: Sequence[Item], embedder: TextEmbedder) -> None:
    vectors = np.asarray(embedder.embed_texts([i.body for i in items]))
    store.store(conn, items, vectors, embedspace.name_of(embedder))


def _reembed(conn: Conn, embedder: TextEmbedder) -> int:
    rows = store.bodies(conn)
    model = embedspace.name_of(embedder)
    for start in range(0, len(rows), 256):
        chunk = rows[start:start + 256]
        vectors = np.asarray(embedder.embed_texts([r.body for r in chunk]))
        store.set_embeddings(conn, [(r.id, v) for r, v in zip(chunk, vectors, strict=True)],
                             model)
    return len(rows)


def curated_items() -> list[Item]:
    """The shipped examples (one row per phrasing), documentation snippets and contrast
    questions."""
    examples, docs, _ = curated()
    items = [Item("example", "curated", "store", f"{e.id}#{n}", q, q, e.sql)
             for e in examples for n, q in enumerate(e.questions)]
    items += [Item("doc", "docs", "store", key, text) for key, text in docs.items()]
    items += [Item("contrast", "curated", "store", f"#application-data {n}", q, q)
              for n, q in enumerate(contrast())]
    return items


def sync(conn: Conn, embedder: TextEmbedder) -> None:
    """Bring the store's knowledge up to date: vectors of this embedder, the shipped
    examples and docs as this version ships them, each target's latest schema."""
    embedspace.ensure(conn, "ask", embedder, _reembed)
    _, _, checksum = curated()
    with conn.transaction():
        if store.version(conn, "docs", "store") != checksum:
            lock_reembedding(conn)
            if store.version(conn, "docs", "store") != checksum:
                store.delete_shipped(conn)
                _store(conn, curated_items(), embedder)
                store.set_version(conn, "docs", "store", checksum)
        _sync_schema(conn, embedder)


def _sync_schema(conn: Conn, embedder: TextEmbedder) -> None:
    for latest in store.latest_catalogs(conn):
        mark = f"#catalog {latest.id}"
        if store.version(conn, "catalog", latest.target) == mark:
            continue
        store.delete_schema(conn, latest.target, columns=False)
        items = [Item("schema", "catalog", latest.target, f"table:{name}", text)
                 for name, text in schema_texts(latest.catalog).items()]
        _store(conn, items, embedder)
        store.set_version(conn, "catalog", latest.target, mark)


def schema_texts(catalog: Mapping[str, Any]) -> dict[str, str]:
    """One description per table of a stored catalog: its counters and its indexes."""
    out: dict[str, str] = {}
    for t in catalog.get("tables", ()):
        name = f"{t['schema']}.{t['name']}"
        out[name] = (f"table {name}: about {t.get('live_tuples', 0)} rows,"
                     f" {t.get('dead_tuples', 0)} dead")
    for i in catalog.get("indexes", ()):
        name = f"{i['schema']}.{i['table']}"
        out.setdefault(name, f"table {name}")
        out[name] += f"; index {i['name']}: {i['definition']}"
    return out


def describe_target(conn: Conn, target: str, target_conn: Any, embedder: TextEmbedder) -> None:
    """Columns, types and comments of a target's user tables (read there, as its monitoring
    role), stored as schema knowledge of that target."""
    rows = target_conn.execute(
        "/* pgarchitect */ SELECT n.nspname || '.' || c.relname,"
        " string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
        "   || coalesce(' -- ' || col_description(c.oid, a.attnum), ''), ', ' ORDER BY a.attnum),"
        " obj_description(c.oid, 'pg_class')"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
        " AND n.nspname NOT LIKE 'pg_temp%%' GROUP BY 1, c.oid ORDER BY 1 LIMIT 500").fetchall()
    items = [Item("schema", "catalog", target, f"columns:{name}",
                  f"table {name} ({columns})" + (f" -- {comment}" if comment else ""))
             for name, columns, comment in rows]
    with conn.transaction():
        store.delete_schema(conn, target, columns=True)
        if items:
            _store(conn, items, embedder)


def learn(conn: Conn, question: str, sql: str, scope: str, embedder: TextEmbedder) -> int:
    """An operator's example (replacing one with the same question in that scope)."""
    key = " ".join(question.lower().split())
    _store(conn, [Item("example", "operator", scope, key, question, question, sql)], embedder)
    return store.knowledge_id(conn, "operator", scope, key)


def note(conn: Conn, text: str, scope: str, embedder: TextEmbedder) -> int:
    """An operator's documentation note."""
    key = "note:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    _store(conn, [Item("doc", "operator", scope, key, text)], embedder)
    return store.knowledge_id(conn, "operator", scope, key)
