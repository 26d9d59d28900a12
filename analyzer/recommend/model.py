"""The values recommendation works with: statement evidence in, recommendations out.

`Recommendation` is the one type from candidate to store (the memory, the lifecycle and
`propose` use it as it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.analysis.regression import GroupStat
from analyzer.vocabulary import EvidenceKind, RecommendationKind, ValidatedBy

KINDS = tuple(RecommendationKind)
VALIDATED_BY = tuple(ValidatedBy)
# The evidence that carried a recommendation, strongest first: the statements' measured
# before/after around a change (a dropped index), a what-if planned with representative
# parameter values, a what-if with a generic plan, the catalog's counters alone.
EVIDENCE_KINDS = tuple(EvidenceKind)

# Why a considered candidate was not proposed (the report's `not_proposed[].reason`).
REASONS = (
    "covered_by_existing_index",  # a valid index already leads with these columns
    "table_too_small",  # a sequential scan of the table is cheap whatever the filter
    "low_selectivity",  # the filter columns have too few distinct values
    "statement_too_cheap",  # no served statement costs the minimum planner units
    "saving_below_threshold",  # the index would save less than the minimum share
    "low_confidence",  # validated, but the confidence is below min_confidence
    "not_validated",  # validation is off, or no validation method is available
    "lock_not_available",  # validation could not take its lock within lock_timeout
    "validation_timeout",  # validation ran into statement_timeout
    "validation_failed",  # validation hit another error (its first line is in the detail)
    "table_too_large",  # transaction mode and the table is above max_table_bytes
    "too_young",  # an unused index observed for less than unused_index_min_age
    "not_explainable",  # no served statement could be planned
    "shape_not_handled",  # a predicate shape no index candidate is made for (detail: which)
    "benefit_below_threshold",  # saves less statement time per day than min_benefit
    "served_by_another_proposal",  # the workload's selection: a chosen index serves these
    "write_cost_exceeds_benefit",  # the table's writes cost the index more than it saves
)


@dataclass(frozen=True)
class StatementEvidence:
    """What the audit measured of one statement group over its window."""

    dbid: int
    queryids: tuple[int, ...]
    fingerprint: str
    query: str  # the normalized text ($1, $2 … for constants)
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    temp_blks_written: int = 0
    shared_blks_read: int = 0
    regressed: bool = False
    datname: str | None = None

    @classmethod
    def of_group(cls, group: GroupStat, query: str, regressed: bool = False,
                 datname: str | None = None) -> StatementEvidence:
        """The evidence of one statement group's current window (as the audit has it)."""
        st = group.stat
        return cls(dbid=group.key[0], queryids=group.queryids, fingerprint=str(group.key[1]),
                   query=query, calls=st.calls, total_ms=st.moments.total,
                   mean_ms=st.moments.mean, rows=st.rows,
                   temp_blks_written=st.temp_blks_written,
                   shared_blks_read=st.shared_blks_read, regressed=regressed, datname=datname)

    @property
    def queryid_texts(self) -> list[str]:
        """The queryids as strings (64-bit values do not survive JSON numbers)."""
        return [str(q) for q in self.queryids]


@dataclass(frozen=True)
class DroppedIndex:
    """An index whose drop the audit named as a regression cluster's cause."""

    name: str  # schema.index
    table: str  # schema.table
    definition: str  # pg_get_indexdef as the catalog snapshot kept it
    queryids: tuple[int, ...] = ()  # the cluster's statements
    measured: tuple[MeasuredChange, ...] = ()  # the cluster's regressions, measured


@dataclass(frozen=True)
class MeasuredChange:
    """One regressed statement group's measured means around the change (the history)."""

    queryids: tuple[int, ...]
    before_ms: float  # per call, baseline window
    after_ms: float  # per call, current window
    calls: int  # in the current window
    p_value: float  # the regression test's


@dataclass(frozen=True)
class IndexColumn:
    """One key column of a candidate index, as PostgreSQL prints it."""

    text: str  # `customer_id`, `"Customer"`, `lower(email)`
    role: str  # equality | in | range | sort | join
    descending: bool = False
    column: str | None = None  # the bare column underneath (None: not known)
    expression: bool = False  # a function of the column, not the column itself
    opclass: str | None = None  # text_pattern_ops, gin_trgm_ops, ... (None: the default)


@dataclass(frozen=True)
class Candidate:
    """An index that might help some statements of one table (before validation)."""

    table: str  # schema.table
    columns: tuple[IndexColumn, ...]
    statements: tuple[StatementEvidence, ...]
    source: str = "predicates"  # predicates | dropped_index
    definition: str | None = None  # dropped_index: the catalog's definition
    name: str | None = None  # dropped_index: the old index's name (schema.index)
    method: str = "btree"  # btree | gin
    where: str | None = None  # a partial index's predicate, built from names and constants

    @property
    def column_texts(self) -> tuple[str, ...]:
        """The key columns as printed, in index order."""
        return tuple(c.text for c in self.columns)


@dataclass(frozen=True)
class StatementCost:
    """Planner cost of one statement before and with a candidate index."""

    queryid: int
    before: float
    after: float | None  # None: could not be planned with the index
    uses_index: bool = False
    samples: tuple[tuple[float, float | None], ...] = ()  # (before, after) per parameter sample
    custom: bool = False  # planned with parameter values (custom plans), not generically

    @property
    def savings(self) -> tuple[float, ...]:
        """The planned fraction saved, per sample (0 where the plan did not get cheaper)."""
        pairs = self.samples or ((self.before, self.after),)
        return tuple(max(0.0, 1.0 - a / b) if a is not None and b > 0 else 0.0
                     for b, a in pairs)


@dataclass(frozen=True)
class Validation:
    """The outcome of one what-if check."""

    method: str  # hypopg | sandbox | transaction | none
    ok: bool
    reason: str | None = None  # a REASONS code when not ok
    detail: str | None = None
    costs: tuple[StatementCost, ...] = ()
    index_bytes: int | None = None  # hypopg's size estimate, or the built index's size
    seconds: float = 0.0
    plans: int = 0  # EXPLAINs this check ran


@dataclass(frozen=True)
class Recommendation:
    """One proposal for one target, from the engine to the store and back (one type).

    Its identity is kind + table + columns (in index order): two audits that propose the same
    index propose the same thing, whatever their evidence. `table`, `ddl` and `revert_ddl` are
    "" where there is none (a work_mem setting has no table, an N+1 hint no DDL).
    `statements` are the normalised texts it is for (the embedding's shape, the PR's
    examples). `evidence_kind` names the evidence that carried it (EVIDENCE_KINDS, strongest
    first); `benefit_ms_per_day` the statement time it saves per day, where known.
    """

    kind: str
    table: str
    columns: tuple[str, ...]
    ddl: str
    revert_ddl: str
    rationale: str
    confidence: float = 0.0
    queryids: tuple[str, ...] = ()
    statements: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict, compare=False)
    estimated_cost_before: float | None = None
    estimated_cost_after: float | None = None
    validated_by: str = "none"
    estimated_improvement: float | None = None  # None: from the costs, where both are known
    benefit_ms_per_day: float | None = None
    evidence_kind: str = "catalog"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown recommendation kind {self.kind!r}")
        if self.validated_by not in VALIDATED_BY:
            raise ValueError(f"unknown validation {self.validated_by!r}")
        if self.evidence_kind not in EVIDENCE_KINDS:
            raise ValueError(f"unknown evidence kind {self.evidence_kind!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")
        before, after = self.estimated_cost_before, self.estimated_cost_after
        if self.estimated_improvement is None and before and after is not None and before > 0:
            object.__setattr__(self, "estimated_improvement", max(0.0, 1.0 - after / before))

    @property
    def identity(self) -> tuple[str, str, tuple[str, ...]]:
        """Kind, table and columns: what makes two recommendations the same one."""
        return (self.kind, self.table, self.columns)

    def to_json(self) -> dict[str, Any]:
        """The report's form (docs/report.md); the audit adds id, status, similar_past."""
        return {
            "kind": self.kind, "table": self.table or None, "columns": list(self.columns),
            "ddl": self.ddl or None, "revert_ddl": self.revert_ddl or None,
            "queryids": list(self.queryids),
            "estimated_cost_before": _round(self.estimated_cost_before),
            "estimated_cost_after": _round(self.estimated_cost_after),
            "estimated_improvement": _round(self.estimated_improvement),
            "confidence": round(self.confidence, 3),
            "benefit_ms_per_day": _round(self.benefit_ms_per_day),
            "evidence_kind": self.evidence_kind, "validated_by": self.validated_by,
            "rationale": self.rationale, "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class NotProposed:
    """A candidate that was considered and why it was not proposed."""

    kind: str
    table: str | None
    columns: tuple[str, ...]
    reason: str
    detail: str | None = None
    queryids: tuple[str, ...] = ()
    confidence: float | None = None
    validated_by: str = "none"

    def to_json(self) -> dict[str, Any]:
        """The report's `not_proposed` entry."""
        out: dict[str, Any] = {"kind": self.kind, "table": self.table,
                               "columns": list(self.columns), "reason": self.reason}
        if self.detail:
            out["detail"] = self.detail
        if self.queryids:
            out["queryids"] = list(self.queryids)
        if self.confidence is not None:
            out["confidence"] = round(self.confidence, 3)
            out["validated_by"] = self.validated_by
        return out


@dataclass(frozen=True)
class RecommendResult:
    """What one recommendation step found."""

    proposed: tuple[Recommendation, ...] = ()
    not_proposed: tuple[NotProposed, ...] = ()
    validations: int = 0
    plans: int = 0
    validation_seconds: float = 0.0
    method: str = "none"  # the validation method used for create_index candidates
    # the costly statements' time per day before and after the proposed set (the report's
    # `workload`); None when no statement time was known
    workload: Mapping[str, float] | None = None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
