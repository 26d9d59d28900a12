"""The recommendation lifecycle: the allowed status changes and the types of a stored
recommendation and of one change (analyzer/store/recommendations.py reads and writes them).

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analyzer.recommend.model import Recommendation
from analyzer.vocabulary import Actor, RecommendationStatus
from pgarchitect.errors import UserError

S = RecommendationStatus
STATUSES = tuple(S)
PENDING = (S.PROPOSED, S.ACCEPTED)  # not applied yet: a repeat is merged into one of these
ACTORS = tuple(Actor)
PERSON_STATUSES = (S.ACCEPTED, S.REJECTED, S.APPLIED, S.REVERTED)

TRANSITIONS: Mapping[str, frozenset[str]] = {
    S.PROPOSED: frozenset({S.ACCEPTED, S.REJECTED, S.APPLIED}),
    S.ACCEPTED: frozenset({S.APPLIED}),
    S.REJECTED: frozenset(),
    S.APPLIED: frozenset({S.VERIFIED, S.INEFFECTIVE, S.REVERTED}),
    S.VERIFIED: frozenset({S.REVERTED}),
    S.INEFFECTIVE: frozenset({S.REVERTED}),
    S.REVERTED: frozenset(),
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
