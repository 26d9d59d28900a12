"""Recommendation memory: embeddings, recall of similar past recommendations, and the rules
that keep an advisor from proposing the same thing again and again.

The default embedder hashes tokens (kind, table, columns, the statements' normalised shapes)
with scikit-learn's FeatureHasher into 384 dimensions and L2-normalises them: offline, no
model to download, and the same vector in every process on every machine (MurmurHash3 with a
fixed seed). Any class with ``dimensions = 384`` and ``embed(recommendations) -> array`` can
replace it (``analyzer.embedder``; docs/analyzer.md shows a sentence-embedding model).

Rules (docs/analyzer.md, Memory), checked in this order against the same target's past:

* one with the same identity that was ever ``ineffective`` is not proposed again;
* a repeat of a pending (``proposed`` / ``accepted``) one is merged into it: one row, its
  evidence, confidence and last-seen time updated;
* a repeat of one that is ``applied`` or ``verified`` is not proposed (``already_applied``);
* a repeat -- or a near one -- of a ``rejected`` one has its confidence lowered, and says
  why; below ``analyzer.min_confidence`` it is not proposed (``repeat_of_rejected``).
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pglast
from pglast import ast
from pglast.stream import RawStream
from pglast.visitors import Visitor
from pgvector.psycopg import register_vector as _register_vector
from psycopg.types.json import Jsonb
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import normalize

from analyzer import embedspace, lifecycle
from analyzer.recommendation import Recommendation
from analyzer.snapshots import repository
from analyzer.snapshots.repository import Conn
from pgarchitect.config import AnalyzerSettings
from pgarchitect.dsn import Dsn
from pgarchitect.errors import ConfigError, UserError

DIMENSIONS = 384

# Token weights: what a recommendation is (kind, table, columns) counts more than the
# wording of its statements, which only tells similar recommendations apart.
_W_KIND = 3.0
_W_TABLE = 3.0
_W_COLUMN = 2.0
_W_SHAPE = 3.0  # spread over all the statement tokens
_WORD = re.compile(r"[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)*|\$\d+|[=<>!~]+|\(|\)")


@runtime_checkable
class Embedder(Protocol):
    """Turns recommendations into unit vectors of `dimensions` floats (one row each)."""

    dimensions: int

    def embed(self, recommendations: Sequence[Recommendation]) -> np.ndarray: ...


def describe(rec: Recommendation) -> str:
    """A plain-text description of a recommendation (for text-embedding models)."""
    parts = [f"{rec.kind.replace('_', ' ')} on {rec.table}"]
    if rec.columns:
        parts.append(f"columns {', '.join(rec.columns)}")
    parts += [" ".join(s.split()) for s in rec.statements]
    return ". ".join(parts)


def shape_tokens(statement: str) -> list[str]:
    """The words of a normalised statement: keywords, names, operators; no constants."""
    words = _WORD.findall(statement.lower())
    return ["$" if w.startswith("$") else w for w in words]


def features(rec: Recommendation) -> dict[str, float]:
    """The weighted tokens of a recommendation that the default embedder hashes."""
    out: dict[str, float] = {f"kind={rec.kind}": _W_KIND, f"table={rec.table.lower()}": _W_TABLE}
    for i, col in enumerate(rec.columns):
        name = " ".join(col.lower().split())
        out[f"column={name}"] = out.get(f"column={name}", 0.0) + _W_COLUMN
        out[f"column{i}={name}"] = 1.0
    grams: list[str] = []
    for statement in rec.statements:
        tokens = shape_tokens(statement)
        grams += tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    for g in grams:
        out[f"shape={g}"] = out.get(f"shape={g}", 0.0) + _W_SHAPE / len(grams)
    return out


class HashingEmbedder:
    """The default embedder: hashed, weighted tokens, L2-normalised (deterministic)."""

    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self._hasher = FeatureHasher(n_features=self.dimensions, input_type="dict",
                                     alternate_sign=False)

    def embed(self, recommendations: Sequence[Recommendation]) -> np.ndarray:
        if not recommendations:
            return np.zeros((0, self.dimensions))
        matrix = self._hasher.transform([features(r) for r in recommendations])
        return np.asarray(normalize(matrix, norm="l2").toarray(), dtype=np.float64)


def load_embedder(path: str) -> Embedder:
    """An instance of the class named by a dotted path (`analyzer.embedder`); `auto`: MiniLM
    with the `ask` extra, else the hashing embedder (analyzer/embedspace.py)."""
    if path == "auto":
        return embedspace.default_embedder()
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        embedder = cls()
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise ConfigError("analyzer.embedder", f"cannot load {path!r}: {exc}") from None
    if not isinstance(embedder, Embedder):
        raise ConfigError("analyzer.embedder", f"{path} has no dimensions and embed()")
    if embedder.dimensions != DIMENSIONS:
        raise ConfigError("analyzer.embedder", f"{path} gives {embedder.dimensions} dimensions;"
                          f" the store holds vector({DIMENSIONS})")
    return embedder


def embed_one(embedder: Embedder, rec: Recommendation) -> np.ndarray:
    """One recommendation's unit vector."""
    vector = np.asarray(embedder.embed([rec]), dtype=np.float64)[0]
    norm = float(np.linalg.norm(vector))
    unit: np.ndarray = vector / norm if norm > 0 else vector
    return unit


def register_vector(conn: Conn) -> None:
    """Register pgvector's codecs on one store connection (also a pool's `configure` hook).

    The codecs need the type's oid, so this must run after the extension was created (by
    `pgarchitect migrate`) and on every new connection.
    """
    row = conn.execute("/* pgarchitect */ SELECT extversion FROM pg_extension"
                       " WHERE extname = 'vector'").fetchone()
    if row is None:
        raise UserError("the store has no pgvector extension (run `pgarchitect migrate`)")
    _register_vector(conn)


class _ConstantCasts(Visitor):
    """Drops casts of constants: pg_get_indexdef writes `'done'::text` where DDL has `'done'`."""

    def visit_TypeCast(self, ancestors: object, node: ast.TypeCast) -> ast.Node | None:
        return node.arg if isinstance(node.arg, ast.A_Const) else None


def normalise_index_definition(sql: str) -> str | None:
    """A CREATE INDEX statement without its name, CONCURRENTLY and IF NOT EXISTS, its table
    schema-qualified (public by default) and casts of constants left out, deparsed by
    PostgreSQL's own grammar (pglast); None for anything else. Two indexes with the same
    normalised definition index the same way."""
    try:
        stmts = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, pglast.ast.IndexStmt):
        return None
    node = stmts[0].stmt
    node.idxname = None
    node.concurrent = False
    node.if_not_exists = False
    if node.relation is not None and node.relation.schemaname is None:
        node.relation.schemaname = "public"
    _ConstantCasts()(node)
    return str(RawStream()(node))


def index_definition(rec: Recommendation) -> str | None:
    """The normalised definition of the index a recommendation creates or drops."""
    if rec.kind == "create_index":
        return normalise_index_definition(rec.ddl)
    if rec.kind == "drop_index":
        return normalise_index_definition(rec.revert_ddl)
    return None


@dataclass(frozen=True)
class SimilarPast:
    """A past recommendation near a new one (cosine similarity of their embeddings)."""

    id: int
    similarity: float
    status: str
    kind: str
    table: str
    columns: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "similarity": round(self.similarity, 4),
                "status": self.status}


RECALL = ("/* pgarchitect */ SELECT id, status, kind, coalesce(table_name, ''), columns,"
          " 1 - (embedding <=> %(v)s) AS similarity FROM pgarchitect.optimization_log"
          " WHERE target = %(target)s AND embedding IS NOT NULL AND id <> %(exclude)s"
          " ORDER BY embedding <=> %(v)s LIMIT %(limit)s")


def recall(conn: Conn, target: str, vector: np.ndarray, limit: int,
           exclude: int | None = None) -> list[SimilarPast]:
    """The `limit` past recommendations of `target` nearest to `vector`, nearest first.

    The HNSW cosine index answers it. Its scan filters by target after the graph search, so
    the scan is made iterative: with many targets in one store the first candidates may all
    be another target's, and the search goes on until `limit` of this one are found.
    """
    with conn.transaction():
        # pgvector before 0.8 has no iterative scans (and rejects the unknown setting).
        conn.execute("/* pgarchitect */ SELECT set_config('hnsw.iterative_scan',"
                     " 'strict_order', true) FROM pg_extension WHERE extname = 'vector'"
                     " AND string_to_array(extversion, '.')::int[] >= '{0,8}'")
        rows = conn.execute(RECALL, {"v": np.asarray(vector, dtype=np.float32),
                                     "target": target, "exclude": exclude or 0,
                                     "limit": limit}).fetchall()
    return [SimilarPast(int(r[0]), float(r[5]), r[1], r[2], r[3], tuple(r[4])) for r in rows]


@dataclass(frozen=True)
class MemoryOutcome:
    """What the memory made of a new recommendation.

    `action`: ``proposed`` (a new row), ``merged`` (into the pending row `id`) or
    ``not_proposed`` (with `reason`). `recommendation` is as stored (confidence lowered,
    rationale extended where a rejected one was repeated).
    """

    action: str
    recommendation: Recommendation
    id: int | None = None
    status: str | None = None
    reason: str | None = None
    note: str | None = None
    similar_past: tuple[SimilarPast, ...] = field(default=())

    @property
    def proposed(self) -> bool:
        return self.action in ("proposed", "merged")

    def to_json(self) -> dict[str, Any]:
        """The report's `recommendations` entry, or its `not_proposed` entry."""
        r = self.recommendation
        similar = [s.to_json() for s in self.similar_past]
        if not self.proposed:
            return {"kind": r.kind, "table": r.table, "columns": list(r.columns),
                    "reason": self.reason, "detail": self.note, "confidence": r.confidence,
                    "similar_past": similar}
        return {
            "id": str(self.id), "kind": r.kind, "status": self.status, "table": r.table,
            "columns": list(r.columns), "ddl": r.ddl, "revert_ddl": r.revert_ddl,
            "queryids": list(r.queryids), "estimated_cost_before": r.estimated_cost_before,
            "estimated_cost_after": r.estimated_cost_after,
            "estimated_improvement": r.estimated_improvement, "confidence": r.confidence,
            "validated_by": r.validated_by, "rationale": r.rationale, "similar_past": similar,
            "merged": self.action == "merged",
        }


_SAME = ("/* pgarchitect */ SELECT l.id, l.status, l.rationale,"
         " EXISTS (SELECT 1 FROM pgarchitect.optimization_history h"
         "         WHERE h.recommendation_id = l.id AND h.to_status = 'ineffective'),"
         " (SELECT h.note FROM pgarchitect.optimization_history h WHERE h.recommendation_id"
         "  = l.id AND h.to_status = l.status ORDER BY h.changed_at DESC, h.id DESC LIMIT 1)"
         " FROM pgarchitect.optimization_log l"
         " WHERE l.target = %s AND l.kind = %s AND coalesce(l.table_name, '') = %s"
         " AND l.columns = %s::text[] ORDER BY l.id DESC")


def _union(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))


def remember(conn: Conn, target: str, rec: Recommendation, *, embedder: Embedder,
             settings: AnalyzerSettings, audit_id: int | None = None) -> MemoryOutcome:
    """Apply the memory rules to a new recommendation and store the result.

    Call inside the audit's store transaction; the connection must have pgvector's codecs
    (`register_vector`).
    """
    embedspace.ensure_memory(conn, embedder)
    vector = embed_one(embedder, rec)
    same = conn.execute(_SAME, (target, rec.kind, rec.table, list(rec.columns))).fetchall()
    pending = next((r for r in same if r[1] in lifecycle.PENDING), None)
    exclude = int(pending[0]) if pending else None
    similar = tuple(recall(conn, target, vector, settings.memory.similar_limit, exclude))

    ineffective = next((r for r in same if r[3]), None)
    if ineffective is not None:
        return MemoryOutcome(
            "not_proposed", rec, reason="proved_ineffective", similar_past=similar,
            note=f"recommendation {ineffective[0]} was applied and measured ineffective")
    if pending is not None:
        return _merge(conn, int(pending[0]), str(pending[1]), rec, vector, similar, audit_id)
    applied = next((r for r in same if r[1] in ("applied", "verified")), None)
    if applied is not None:
        return MemoryOutcome(
            "not_proposed", rec, reason="already_applied", similar_past=similar,
            note=f"recommendation {applied[0]} is {applied[1]}")

    rejected = [(int(r[0]), 1.0, r[4]) for r in same if r[1] == "rejected"]
    rejected += [(s.id, s.similarity, None) for s in similar
                 if s.status == "rejected" and s.kind == rec.kind and s.table == rec.table
                 and s.similarity >= settings.memory.repeat_similarity
                 and s.id not in {r[0] for r in rejected}]
    if rejected:
        rid, sim, why = max(rejected, key=lambda x: x[1])
        lowered = rec.confidence * (1.0 - settings.memory.rejected_penalty * min(sim, 1.0))
        because = f"recommendation {rid} (similarity {sim:.2f}) was rejected" + (
            f": {why}" if why else "")
        if lowered < settings.min_confidence:
            return MemoryOutcome(
                "not_proposed", replace(rec, confidence=round(lowered, 4)),
                reason="repeat_of_rejected", similar_past=similar,
                note=f"confidence lowered from {rec.confidence:.2f} to {lowered:.2f}: {because}")
        rec = replace(rec, confidence=round(lowered, 4),
                      rationale=f"{rec.rationale} Confidence lowered from "
                                f"{rec.confidence:.2f} to {lowered:.2f}: {because}.")
    return _insert(conn, target, rec, vector, similar, audit_id)


def _evidence(rec: Recommendation, similar: Sequence[SimilarPast]) -> dict[str, Any]:
    return {**dict(rec.evidence), "similar_past": [s.to_json() for s in similar]}


def _insert(conn: Conn, target: str, rec: Recommendation, vector: np.ndarray,
            similar: Sequence[SimilarPast], audit_id: int | None,
            reverts_id: int | None = None) -> MemoryOutcome:
    evidence = _evidence(rec, similar)
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.optimization_log (audit_id, last_audit_id,"
        " kind, target, table_name, columns, ddl, revert_ddl, queryids, statements, rationale,"
        " evidence, estimated_cost_before, estimated_cost_after, estimated_improvement,"
        " confidence, validated_by, embedding, index_definition, reverts_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (audit_id, audit_id, rec.kind, target, rec.table, list(rec.columns), rec.ddl,
         rec.revert_ddl, list(rec.queryids), list(rec.statements), rec.rationale,
         Jsonb(evidence), rec.estimated_cost_before, rec.estimated_cost_after,
         rec.estimated_improvement, rec.confidence, rec.validated_by,
         np.asarray(vector, dtype=np.float32), index_definition(rec), reverts_id),
    ).fetchone()
    assert row is not None
    rec_id = int(row[0])
    lifecycle.record(conn, rec_id, None, "proposed", "analyzer",
                     f"proposed by audit {audit_id}" if audit_id is not None else "proposed")
    return MemoryOutcome("proposed", replace(rec, evidence=evidence), rec_id, "proposed",
                         similar_past=tuple(similar))


def _merge(conn: Conn, rec_id: int, status: str, rec: Recommendation, vector: np.ndarray,
           similar: Sequence[SimilarPast], audit_id: int | None) -> MemoryOutcome:
    old = conn.execute(
        "/* pgarchitect */ SELECT queryids, statements, ddl, revert_ddl"
        " FROM pgarchitect.optimization_log WHERE id = %s FOR UPDATE", (rec_id,),
    ).fetchone()
    assert old is not None
    # The DDL stays as it was proposed (and perhaps accepted): same index, same statement.
    merged = replace(rec, queryids=_union(old[0], rec.queryids),
                     statements=_union(old[1], rec.statements),
                     ddl=old[2] or rec.ddl, revert_ddl=old[3] or rec.revert_ddl)
    evidence = _evidence(merged, similar)
    conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.optimization_log SET"
        " last_audit_id = coalesce(%s, last_audit_id), queryids = %s, statements = %s,"
        " rationale = %s, evidence = %s, estimated_cost_before = %s, estimated_cost_after = %s,"
        " estimated_improvement = %s, confidence = %s, validated_by = %s, embedding = %s,"
        " last_seen_at = clock_timestamp(), updated_at = clock_timestamp(),"
        " times_seen = times_seen + 1 WHERE id = %s",
        (audit_id, list(merged.queryids), list(merged.statements), merged.rationale,
         Jsonb(evidence), merged.estimated_cost_before, merged.estimated_cost_after,
         merged.estimated_improvement, merged.confidence, merged.validated_by,
         np.asarray(vector, dtype=np.float32), rec_id),
    )
    return MemoryOutcome("merged", replace(merged, evidence=evidence), rec_id, status,
                         similar_past=tuple(similar))


def propose_revert(conn: Conn, target: str, of: lifecycle.StoredRecommendation,
                   rec: Recommendation, *, embedder: Embedder, settings: AnalyzerSettings,
                   audit_id: int | None = None) -> MemoryOutcome:
    """Store the revert of a recommendation measured ineffective (linked by `reverts_id`).

    A pending revert of the same index is merged into, like any repeat.
    """
    embedspace.ensure_memory(conn, embedder)
    vector = embed_one(embedder, rec)
    same = conn.execute(_SAME, (target, rec.kind, rec.table, list(rec.columns))).fetchall()
    pending = next((r for r in same if r[1] in lifecycle.PENDING), None)
    exclude = int(pending[0]) if pending else None
    similar = tuple(recall(conn, target, vector, settings.memory.similar_limit, exclude))
    if pending is not None:
        return _merge(conn, int(pending[0]), str(pending[1]), rec, vector, similar, audit_id)
    return _insert(conn, target, rec, vector, similar, audit_id, reverts_id=of.id)


# The store schema version the memory needs (migrations/0007_ask.sql: embedding_space).
SCHEMA_VERSION = 7


def connect_store(dsn: Dsn, connect_timeout: float = 5.0) -> Conn:
    """A store session for the memory: migrated far enough, with pgvector's codecs."""
    conn = repository.connect_store(dsn, connect_timeout)
    row = conn.execute("/* pgarchitect */ SELECT max(version)"
                       " FROM pgarchitect.schema_migrations").fetchone()
    if row is None or row[0] is None or int(row[0]) < SCHEMA_VERSION:
        conn.close()
        raise UserError(f"the store {dsn.masked} is not migrated to version {SCHEMA_VERSION} "
                        "(run `pgarchitect migrate --store DSN`)")
    try:
        register_vector(conn)
    except UserError:
        conn.close()
        raise
    return conn
