"""The recommendation store: optimization_log rows and their status history
(optimization_history); the rules are analyzer/lifecycle.py's and analyzer/memory.py's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from psycopg.rows import args_row
from psycopg.types.json import Jsonb

from analyzer.lifecycle import (
    ACTORS,
    STATUSES,
    Change,
    StoredRecommendation,
    UnknownRecommendation,
    check,
)
from analyzer.recommend.model import Recommendation
from analyzer.store.connection import Conn, rows_as
from analyzer.vocabulary import Actor, RecommendationStatus
from pgarchitect.errors import UserError

_COLUMNS = ("id, target, status, kind, coalesce(table_name, ''), columns, coalesce(ddl, ''),"
            " coalesce(revert_ddl, ''), rationale, confidence, queryids, statements, evidence,"
            " estimated_cost_before, estimated_cost_after, validated_by, audit_id, created_at,"
            " last_seen_at, times_seen, status_changed_at, applied_at, index_definition,"
            " measured_change, reverts_id")


def _stored(
    id: int, target: str, status: str, kind: str, table: str, columns: list[str], ddl: str,
    revert_ddl: str, rationale: str, confidence: float, queryids: list[str],
    statements: list[str], evidence: Mapping[str, Any] | None,
    estimated_cost_before: float | None, estimated_cost_after: float | None,
    validated_by: str, audit_id: int | None, created_at: datetime, last_seen_at: datetime,
    times_seen: int, status_changed_at: datetime, applied_at: datetime | None,
    index_definition: str | None, measured_change: Mapping[str, Any] | None,
    reverts_id: int | None,
) -> StoredRecommendation:
    """A row of _COLUMNS (these parameters, in that order) as a stored recommendation."""
    rec = Recommendation(
        kind=kind, table=table, columns=tuple(columns), ddl=ddl, revert_ddl=revert_ddl,
        rationale=rationale, confidence=float(confidence), queryids=tuple(queryids),
        statements=tuple(statements), evidence=dict(evidence or {}),
        estimated_cost_before=estimated_cost_before, estimated_cost_after=estimated_cost_after,
        validated_by=validated_by,
    )
    return StoredRecommendation(
        id=int(id), target=target, status=status, recommendation=rec, audit_id=audit_id,
        created_at=created_at, last_seen_at=last_seen_at, times_seen=int(times_seen),
        status_changed_at=status_changed_at, applied_at=applied_at,
        index_definition=index_definition,
        measured_change=None if measured_change is None else dict(measured_change),
        reverts_id=reverts_id,
    )


# A history row, in Change's field order.
_CHANGE = "recommendation_id, from_status, to_status, changed_at, changed_by, note"


def history(conn: Conn, rec_id: int) -> tuple[Change, ...]:
    """Every recorded status change of a recommendation, oldest first."""
    with conn.cursor(row_factory=args_row(Change)) as cur:
        return tuple(cur.execute(
            f"/* pgarchitect */ SELECT {_CHANGE} FROM pgarchitect.optimization_history"
            " WHERE recommendation_id = %s ORDER BY changed_at, id".encode(), (rec_id,)))


def get(conn: Conn, rec_id: int, *, for_update: bool = False) -> StoredRecommendation:
    """One recommendation with its history, or UnknownRecommendation."""
    lock = " FOR UPDATE" if for_update else ""
    with conn.cursor(row_factory=args_row(_stored)) as cur:
        row = cur.execute(
            f"/* pgarchitect */ SELECT {_COLUMNS} FROM pgarchitect.optimization_log"
            f" WHERE id = %s{lock}".encode(), (rec_id,),
        ).fetchone()
    if row is None:
        raise UnknownRecommendation(f"no recommendation with id {rec_id}")
    return replace(row, history=history(conn, rec_id))


def list_recommendations(conn: Conn, target: str | None = None,
                         status: str | None = None) -> list[StoredRecommendation]:
    """Recommendations, newest first, optionally of one target and one status."""
    if status is not None and status not in STATUSES:
        raise UserError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
    return rows_as(
        conn, _stored,
        f"/* pgarchitect */ SELECT {_COLUMNS} FROM pgarchitect.optimization_log"
        " WHERE (%(target)s::text IS NULL OR target = %(target)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY id DESC".encode(), {"target": target, "status": status})


def histories(conn: Conn, ids: Sequence[int]) -> dict[int, tuple[Change, ...]]:
    """The histories of several recommendations at once."""
    out: dict[int, list[Change]] = {}
    with conn.cursor(row_factory=args_row(Change)) as cur:
        for c in cur.execute(
                f"/* pgarchitect */ SELECT {_CHANGE} FROM pgarchitect.optimization_history"
                " WHERE recommendation_id = ANY(%s) ORDER BY recommendation_id, changed_at, id"
                .encode(), (list(ids),)):
            out.setdefault(c.recommendation_id, []).append(c)
    return {k: tuple(v) for k, v in out.items()}


def with_history(conn: Conn,
                 recs: Sequence[StoredRecommendation]) -> list[StoredRecommendation]:
    """The recommendations with their histories filled in (one query)."""
    found = histories(conn, [r.id for r in recs])
    return [replace(r, history=found.get(r.id, ())) for r in recs]


class StatusGroup(NamedTuple):
    """The recommendations of one target, kind and status (the service's gauge labels)."""

    target: str
    kind: str
    status: str


class _Count(NamedTuple):
    target: str
    kind: str
    status: str
    recommendations: int


def status_counts(conn: Conn) -> dict[StatusGroup, int]:
    """(target, kind, status) -> number of recommendations (for the service's gauge)."""
    with conn.cursor(row_factory=args_row(_Count)) as cur:
        rows = cur.execute(
            "/* pgarchitect */ SELECT target, kind, status, count(*)"
            " FROM pgarchitect.optimization_log GROUP BY target, kind, status").fetchall()
    return {StatusGroup(r.target, r.kind, r.status): int(r.recommendations) for r in rows}


def record(conn: Conn, rec_id: int, from_status: str | None, to_status: str, by: str,
           note: str | None = None, at: datetime | None = None) -> Change:
    """Write one history row (the status itself is the caller's to set)."""
    if by not in ACTORS:
        raise ValueError(f"unknown actor {by!r}")
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.optimization_history"
        " (recommendation_id, from_status, to_status, changed_at, changed_by, note)"
        " VALUES (%s, %s, %s, coalesce(%s, clock_timestamp()), %s, %s) RETURNING changed_at",
        (rec_id, from_status, to_status, at, by, note),
    ).fetchone()
    assert row is not None
    changed_at: datetime = row[0]
    return Change(rec_id, from_status, to_status, changed_at, by, note)


def set_status(conn: Conn, rec_id: int, to_status: str, by: str, note: str | None = None,
               at: datetime | None = None,
               measured: Mapping[str, Any] | None = None) -> Change:
    """Move a recommendation to `to_status` if the lifecycle allows it, and record it.

    `at` is when it happened (the snapshot that saw an index appear); now by default.
    `measured` replaces the stored measured outcome.
    """
    with conn.transaction():
        current = get(conn, rec_id, for_update=True)
        check(rec_id, current.status, to_status, by)
        change = record(conn, rec_id, current.status, to_status, by, note, at)
        conn.execute(
            "/* pgarchitect */ UPDATE pgarchitect.optimization_log SET status = %(to)s,"
            " status_changed_at = %(at)s, updated_at = clock_timestamp(),"
            " applied_at = CASE WHEN %(to)s = 'applied' THEN %(at)s ELSE applied_at END,"
            " verified_at = CASE WHEN %(to)s IN ('verified', 'ineffective') THEN %(at)s"
            "   ELSE verified_at END,"
            " measured_change = coalesce(%(measured)s, measured_change) WHERE id = %(id)s",
            {"to": to_status, "at": change.changed_at, "id": rec_id,
             "measured": None if measured is None else Jsonb(dict(measured))},
        )
    return change


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


class _Near(NamedTuple):
    id: int
    status: str
    kind: str
    table: str
    columns: list[str]
    similarity: float


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
        with conn.cursor(row_factory=args_row(_Near)) as cur:
            rows = cur.execute(RECALL, {"v": np.asarray(vector, dtype=np.float32),
                                        "target": target, "exclude": exclude or 0,
                                        "limit": limit}).fetchall()
    return [SimilarPast(r.id, r.similarity, r.status, r.kind, r.table, tuple(r.columns))
            for r in rows]


class SameIdentity(NamedTuple):
    """A stored recommendation with the same identity (kind, table, columns) as a new one."""

    id: int
    status: str
    rationale: str
    ever_ineffective: bool
    note: str | None  # the note of the change to its current status


_SAME = ("/* pgarchitect */ SELECT l.id, l.status, l.rationale,"
         " EXISTS (SELECT 1 FROM pgarchitect.optimization_history h"
         "         WHERE h.recommendation_id = l.id AND h.to_status = 'ineffective'),"
         " (SELECT h.note FROM pgarchitect.optimization_history h WHERE h.recommendation_id"
         "  = l.id AND h.to_status = l.status ORDER BY h.changed_at DESC, h.id DESC LIMIT 1)"
         " FROM pgarchitect.optimization_log l"
         " WHERE l.target = %s AND l.kind = %s AND coalesce(l.table_name, '') = %s"
         " AND l.columns = %s::text[] ORDER BY l.id DESC")


def same_identity(conn: Conn, target: str, rec: Recommendation) -> list[SameIdentity]:
    """The target's recommendations with `rec`'s kind, table and columns, newest first."""
    return rows_as(conn, SameIdentity, _SAME, (target, rec.kind, rec.table, list(rec.columns)))


def insert(conn: Conn, target: str, rec: Recommendation, vector: np.ndarray,
           index_definition: str | None, audit_id: int | None,
           reverts_id: int | None = None) -> int:
    """Store a new recommendation, `proposed`, with its history's first row; its id."""
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.optimization_log (audit_id, last_audit_id,"
        " kind, target, table_name, columns, ddl, revert_ddl, queryids, statements, rationale,"
        " evidence, estimated_cost_before, estimated_cost_after, estimated_improvement,"
        " confidence, validated_by, embedding, index_definition, reverts_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        (audit_id, audit_id, rec.kind, target, rec.table, list(rec.columns), rec.ddl,
         rec.revert_ddl, list(rec.queryids), list(rec.statements), rec.rationale,
         Jsonb(dict(rec.evidence)), rec.estimated_cost_before, rec.estimated_cost_after,
         rec.estimated_improvement, rec.confidence, rec.validated_by,
         np.asarray(vector, dtype=np.float32), index_definition, reverts_id),
    ).fetchone()
    assert row is not None
    rec_id = int(row[0])
    record(conn, rec_id, None, RecommendationStatus.PROPOSED, Actor.ANALYZER,
           f"proposed by audit {audit_id}" if audit_id is not None else "proposed")
    return rec_id


class Proposed(NamedTuple):
    """What a pending recommendation was proposed with (kept when a repeat merges into it)."""

    queryids: list[str]
    statements: list[str]
    ddl: str | None
    revert_ddl: str | None


def lock_proposed(conn: Conn, rec_id: int) -> Proposed:
    """A pending recommendation's statements and DDL, its row locked for the merge."""
    with conn.cursor(row_factory=args_row(Proposed)) as cur:
        row = cur.execute(
            "/* pgarchitect */ SELECT queryids, statements, ddl, revert_ddl"
            " FROM pgarchitect.optimization_log WHERE id = %s FOR UPDATE", (rec_id,),
        ).fetchone()
    assert row is not None
    return row


def update_merged(conn: Conn, rec_id: int, merged: Recommendation, vector: np.ndarray,
                  audit_id: int | None) -> None:
    """A repeat merged into the pending recommendation `rec_id`: seen once more."""
    conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.optimization_log SET"
        " last_audit_id = coalesce(%s, last_audit_id), queryids = %s, statements = %s,"
        " rationale = %s, evidence = %s, estimated_cost_before = %s, estimated_cost_after = %s,"
        " estimated_improvement = %s, confidence = %s, validated_by = %s, embedding = %s,"
        " last_seen_at = clock_timestamp(), updated_at = clock_timestamp(),"
        " times_seen = times_seen + 1 WHERE id = %s",
        (audit_id, list(merged.queryids), list(merged.statements), merged.rationale,
         Jsonb(dict(merged.evidence)), merged.estimated_cost_before,
         merged.estimated_cost_after, merged.estimated_improvement, merged.confidence,
         merged.validated_by, np.asarray(vector, dtype=np.float32), rec_id),
    )


def set_embeddings(conn: Conn, vectors: Sequence[tuple[int, np.ndarray]]) -> None:
    """Replace the embeddings of recommendations (id, vector): after the embedder changed."""
    with conn.cursor() as cur:
        cur.executemany(
            "/* pgarchitect */ UPDATE pgarchitect.optimization_log SET embedding = %s"
            " WHERE id = %s", [(np.asarray(v, dtype=np.float32), i) for i, v in vectors])
