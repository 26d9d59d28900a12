"""Recommendation memory: embeddings, recall of similar past recommendations, and the rules
that keep an advisor from proposing the same thing again and again.

The default (``analyzer.embedder: auto``) is all-MiniLM-L6-v2 with the ``ask`` extra
(analyzer/minilm.py, chosen in analyzer/embedspace.py); without it, `HashingEmbedder` hashes
tokens (kind, table, columns, the statements' normalised shapes) with scikit-learn's
FeatureHasher into 384 dimensions and L2-normalises them: offline, no model to download, and
the same vector in every process on every machine (MurmurHash3 with a fixed seed). Any class
with ``dimensions = 384`` and ``embed(recommendations) -> array`` can replace it
(``analyzer.embedder``); a change of embedder re-embeds the stored vectors (embedspace).

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
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import normalize

from analyzer import embedspace, lifecycle
from analyzer.lifecycle import PENDING
from analyzer.recommend.model import Recommendation
from analyzer.store import recommendations
from analyzer.store.connection import Conn
from analyzer.store.recommendations import SimilarPast
from analyzer.vocabulary import RecommendationKind, RecommendationStatus
from pgarchitect.config import AnalyzerSettings
from pgarchitect.errors import ConfigError

# A repeat of one of these is not proposed again.
_APPLIED = (RecommendationStatus.APPLIED, RecommendationStatus.VERIFIED)

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
    if rec.kind == RecommendationKind.CREATE_INDEX:
        return normalise_index_definition(rec.ddl)
    if rec.kind == RecommendationKind.DROP_INDEX:
        return normalise_index_definition(rec.revert_ddl)
    return None




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
    same = recommendations.same_identity(conn, target, rec)
    pending = next((r for r in same if r.status in PENDING), None)
    similar = tuple(recommendations.recall(conn, target, vector, settings.memory.similar_limit,
                                           pending.id if pending else None))

    ineffective = next((r for r in same if r.ever_ineffective), None)
    if ineffective is not None:
        return MemoryOutcome(
            "not_proposed", rec, reason="proved_ineffective", similar_past=similar,
            note=f"recommendation {ineffective.id} was applied and measured ineffective")
    if pending is not None:
        return _merge(conn, pending.id, pending.status, rec, vector, similar, audit_id)
    applied = next((r for r in same if r.status in _APPLIED), None)
    if applied is not None:
        return MemoryOutcome(
            "not_proposed", rec, reason="already_applied", similar_past=similar,
            note=f"recommendation {applied.id} is {applied.status}")

    rejected = [(r.id, 1.0, r.note) for r in same
                if r.status == RecommendationStatus.REJECTED]
    rejected += [(s.id, s.similarity, None) for s in similar
                 if s.status == RecommendationStatus.REJECTED
                 and s.kind == rec.kind and s.table == rec.table
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
    stored = replace(rec, evidence=_evidence(rec, similar))
    rec_id = recommendations.insert(conn, target, stored, vector, index_definition(rec),
                                    audit_id, reverts_id)
    return MemoryOutcome("proposed", stored, rec_id, RecommendationStatus.PROPOSED,
                         similar_past=tuple(similar))


def _merge(conn: Conn, rec_id: int, status: str, rec: Recommendation, vector: np.ndarray,
           similar: Sequence[SimilarPast], audit_id: int | None) -> MemoryOutcome:
    old = recommendations.lock_proposed(conn, rec_id)
    # The DDL stays as it was proposed (and perhaps accepted): same index, same statement.
    merged = replace(rec, queryids=_union(old.queryids, rec.queryids),
                     statements=_union(old.statements, rec.statements),
                     ddl=old.ddl or rec.ddl, revert_ddl=old.revert_ddl or rec.revert_ddl)
    merged = replace(merged, evidence=_evidence(merged, similar))
    recommendations.update_merged(conn, rec_id, merged, vector, audit_id)
    return MemoryOutcome("merged", merged, rec_id, status, similar_past=tuple(similar))


def propose_revert(conn: Conn, target: str, of: lifecycle.StoredRecommendation,
                   rec: Recommendation, *, embedder: Embedder, settings: AnalyzerSettings,
                   audit_id: int | None = None) -> MemoryOutcome:
    """Store the revert of a recommendation measured ineffective (linked by `reverts_id`).

    A pending revert of the same index is merged into, like any repeat.
    """
    embedspace.ensure_memory(conn, embedder)
    vector = embed_one(embedder, rec)
    same = recommendations.same_identity(conn, target, rec)
    pending = next((r for r in same if r.status in PENDING), None)
    similar = tuple(recommendations.recall(conn, target, vector, settings.memory.similar_limit,
                                           pending.id if pending else None))
    if pending is not None:
        return _merge(conn, pending.id, pending.status, rec, vector, similar, audit_id)
    return _insert(conn, target, rec, vector, similar, audit_id, reverts_id=of.id)
