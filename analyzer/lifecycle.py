"""The recommendation lifecycle: the allowed status changes, each one recorded in the history.

```
proposed -> accepted | rejected
proposed | accepted -> applied
applied -> verified | ineffective
applied | verified | ineffective -> reverted
```

Anything else is refused with :class:`TransitionRefused`. A person (``cli``, ``api``) records
decisions -- accepted, rejected, applied, reverted; ``verified`` and ``ineffective`` are
measurements, so only the analyzer sets them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from analyzer.recommendation import Recommendation
from analyzer.snapshots.repository import Conn
from pgarchitect.errors import UserError

STATUSES = ("proposed", "accepted", "rejected", "applied", "verified", "ineffective", "reverted")
PENDING = ("proposed", "accepted")
ACTORS = ("analyzer", "api", "cli")
PERSON_STATUSES = ("accepted", "rejected", "applied", "reverted")

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "proposed": frozenset({"accepted", "rejected", "applied"}),
    "accepted": frozenset({"applied"}),
    "rejected": frozenset(),
    "applied": frozenset({"verified", "ineffective", "reverted"}),
    "verified": frozenset({"reverted"}),
    "ineffective": frozenset({"reverted"}),
    "reverted": frozenset(),
}


class TransitionRefused(UserError):
    """A status change the lifecycle does not allow."""


class UnknownRecommendation(UserError):
    """No recommendation has that id."""


def allowed(from_status: str, to_status: str, by: str = "analyzer") -> bool:
    """True when `by` may move a recommendation from `from_status` to `to_status`."""
    if by != "analyzer" and to_status not in PERSON_STATUSES:
        return False
    return to_status in TRANSITIONS.get(from_status, frozenset())


def check(rec_id: int, from_status: str, to_status: str, by: str = "analyzer") -> None:
    """Raise TransitionRefused (one readable line) unless the change is allowed."""
    if to_status not in STATUSES:
        raise TransitionRefused(f"unknown status {to_status!r} (one of: {', '.join(STATUSES)})")
    if allowed(from_status, to_status, by):
        return
    if by != "analyzer" and to_status not in PERSON_STATUSES:
        raise TransitionRefused(
            f"recommendation {rec_id}: {to_status} is measured by the analyzer, not set by hand "
            f"(a person may set: {', '.join(PERSON_STATUSES)})")
    nexts = sorted(TRANSITIONS.get(from_status, frozenset()))
    raise TransitionRefused(
        f"recommendation {rec_id} is {from_status}: it cannot become {to_status} "
        f"(allowed from {from_status}: {', '.join(nexts) if nexts else 'none'})")


@dataclass(frozen=True)
class Change:
    """One recorded status change."""

    recommendation_id: int
    from_status: str | None
    to_status: str
    changed_at: datetime
    changed_by: str
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"from": self.from_status, "to": self.to_status,
                "at": self.changed_at.isoformat(), "by": self.changed_by, "note": self.note}


@dataclass(frozen=True)
class StoredRecommendation:
    """A recommendation as the store holds it, with its place in the lifecycle."""

    id: int
    target: str
    status: str
    recommendation: Recommendation
    audit_id: int | None
    created_at: datetime
    last_seen_at: datetime
    times_seen: int
    status_changed_at: datetime
    applied_at: datetime | None = None
    index_definition: str | None = None
    measured_change: Mapping[str, Any] | None = None
    reverts_id: int | None = None
    history: tuple[Change, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        """The recommendation as the report and the API show it."""
        r = self.recommendation
        return {
            "id": str(self.id), "kind": r.kind, "status": self.status, "target": self.target,
            "table": r.table, "columns": list(r.columns), "ddl": r.ddl,
            "revert_ddl": r.revert_ddl, "queryids": list(r.queryids),
            "estimated_cost_before": r.estimated_cost_before,
            "estimated_cost_after": r.estimated_cost_after,
            "estimated_improvement": r.estimated_improvement, "confidence": r.confidence,
            "validated_by": r.validated_by, "rationale": r.rationale,
            "similar_past": list(r.evidence.get("similar_past", [])),
            "audit_id": None if self.audit_id is None else str(self.audit_id),
            "created_at": self.created_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(), "times_seen": self.times_seen,
            "applied_at": None if self.applied_at is None else self.applied_at.isoformat(),
            "measured": None if self.measured_change is None else dict(self.measured_change),
            "evidence": dict(r.evidence),
            "history": [c.to_json() for c in self.history],
        }


_COLUMNS = ("id, target, status, kind, coalesce(table_name, ''), columns, coalesce(ddl, ''),"
            " coalesce(revert_ddl, ''), rationale, confidence, queryids, statements, evidence,"
            " estimated_cost_before, estimated_cost_after, validated_by, audit_id, created_at,"
            " last_seen_at, times_seen, status_changed_at, applied_at, index_definition,"
            " measured_change, reverts_id")


def _row(r: Sequence[Any]) -> StoredRecommendation:
    rec = Recommendation(
        kind=r[3], table=r[4], columns=tuple(r[5]), ddl=r[6], revert_ddl=r[7], rationale=r[8],
        confidence=float(r[9]), queryids=tuple(r[10]), statements=tuple(r[11]),
        evidence=dict(r[12] or {}), estimated_cost_before=r[13], estimated_cost_after=r[14],
        validated_by=r[15],
    )
    return StoredRecommendation(
        id=int(r[0]), target=r[1], status=r[2], recommendation=rec, audit_id=r[16],
        created_at=r[17], last_seen_at=r[18], times_seen=int(r[19]), status_changed_at=r[20],
        applied_at=r[21], index_definition=r[22],
        measured_change=None if r[23] is None else dict(r[23]), reverts_id=r[24],
    )


def history(conn: Conn, rec_id: int) -> tuple[Change, ...]:
    """Every recorded status change of a recommendation, oldest first."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT recommendation_id, from_status, to_status, changed_at,"
        " changed_by, note FROM pgarchitect.optimization_history"
        " WHERE recommendation_id = %s ORDER BY changed_at, id", (rec_id,),
    ).fetchall()
    return tuple(Change(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows)


def get(conn: Conn, rec_id: int, *, for_update: bool = False) -> StoredRecommendation:
    """One recommendation with its history, or UnknownRecommendation."""
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(
        f"/* pgarchitect */ SELECT {_COLUMNS} FROM pgarchitect.optimization_log"
        f" WHERE id = %s{lock}".encode(), (rec_id,),
    ).fetchone()
    if row is None:
        raise UnknownRecommendation(f"no recommendation with id {rec_id}")
    return replace(_row(row), history=history(conn, rec_id))


def list_recommendations(conn: Conn, target: str | None = None,
                         status: str | None = None) -> list[StoredRecommendation]:
    """Recommendations, newest first, optionally of one target and one status."""
    if status is not None and status not in STATUSES:
        raise UserError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
    rows = conn.execute(
        f"/* pgarchitect */ SELECT {_COLUMNS} FROM pgarchitect.optimization_log"
        " WHERE (%(target)s::text IS NULL OR target = %(target)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY id DESC".encode(), {"target": target, "status": status},
    ).fetchall()
    return [_row(r) for r in rows]


def histories(conn: Conn, ids: Sequence[int]) -> dict[int, tuple[Change, ...]]:
    """The histories of several recommendations at once."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT recommendation_id, from_status, to_status, changed_at,"
        " changed_by, note FROM pgarchitect.optimization_history"
        " WHERE recommendation_id = ANY(%s) ORDER BY recommendation_id, changed_at, id",
        (list(ids),),
    ).fetchall()
    out: dict[int, list[Change]] = {}
    for r in rows:
        out.setdefault(int(r[0]), []).append(Change(int(r[0]), r[1], r[2], r[3], r[4], r[5]))
    return {k: tuple(v) for k, v in out.items()}


def with_history(conn: Conn,
                 recs: Sequence[StoredRecommendation]) -> list[StoredRecommendation]:
    """The recommendations with their histories filled in (one query)."""
    found = histories(conn, [r.id for r in recs])
    return [replace(r, history=found.get(r.id, ())) for r in recs]


def status_counts(conn: Conn) -> dict[tuple[str, str, str], int]:
    """(target, kind, status) -> number of recommendations (for the service's gauge)."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT target, kind, status, count(*)"
        " FROM pgarchitect.optimization_log GROUP BY target, kind, status").fetchall()
    return {(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in rows}


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
    return Change(rec_id, from_status, to_status, row[0], by, note)


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
