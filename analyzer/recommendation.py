"""The recommendation as a value: what a generator proposes and the memory stores.

The identity of a recommendation is its kind, table and columns (in index order): two audits
that propose the same index on the same table propose the same thing, whatever the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("create_index", "drop_index", "analyze", "vacuum", "n_plus_one", "work_mem", "rewrite")
VALIDATED_BY = ("hypopg", "sandbox", "transaction", "none")


@dataclass(frozen=True)
class Recommendation:
    """One recommendation for one target, before or after it was stored.

    `statements` are the normalised texts of the statements it is for (as pg_stat_statements
    shows them); they give the embedding its shape and the pull request its examples.
    """

    kind: str
    table: str
    columns: tuple[str, ...]
    ddl: str
    revert_ddl: str
    rationale: str
    confidence: float
    queryids: tuple[str, ...] = ()
    statements: tuple[str, ...] = ()
    evidence: Mapping[str, Any] = field(default_factory=dict, compare=False)
    estimated_cost_before: float | None = None
    estimated_cost_after: float | None = None
    validated_by: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown recommendation kind {self.kind!r}")
        if self.validated_by not in VALIDATED_BY:
            raise ValueError(f"unknown validation {self.validated_by!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")

    @property
    def identity(self) -> tuple[str, str, tuple[str, ...]]:
        """Kind, table and columns: what makes two recommendations the same one."""
        return (self.kind, self.table, self.columns)

    @property
    def estimated_improvement(self) -> float | None:
        """The planner's relative saving (0.75: a quarter of the cost is left), if known."""
        before, after = self.estimated_cost_before, self.estimated_cost_after
        if before is None or after is None or before <= 0:
            return None
        return max(0.0, 1.0 - after / before)
