"""Benefit and confidence of an index candidate: two things, from the evidence (pure).

Benefit is time: the statement time an index saves per day (ms), from the statements'
measured time per day x the fraction the evidence says is saved, less the time its writes
cost on the table. Confidence is how sure we are that it helps, ranked by the kind of
evidence (model.EVIDENCE_KINDS):

* `measured_history`: the statements regressed when this index was dropped, significantly by
  the regression test — near-certain (1 - the test's p-value); the saving is the measured
  before/after, not a plan;
* `custom_plan`: planned with representative parameter values (recommend/parameters.py) —
  high when the saving holds over the samples: 0.5 + 0.45 x the share of samples in which
  the candidate saves at least MIN_SAVING of its statements' time (each sample's saving
  weighted over the statements by their measured time);
* `generic_plan`: planned with parameters unknown — lower: 0.9 x the planned saving.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from analyzer.recommend.model import MeasuredChange, StatementCost, StatementEvidence

DAY = 86400.0
# The share of a statement's planned cost an index must save (in the median sample).
MIN_SAVING = 0.5
# Planner units one written row costs an index (descend the tree, write a leaf page): about
# a random page plus CPU; turned into time by the statements' own measured ms per unit.
INDEX_WRITE_COST = 10.0
HISTORY_CEILING = 0.999
GENERIC_WEIGHT = 0.9


@dataclass(frozen=True)
class Saving:
    """What one statement would save with an index (or a set of them)."""

    statement: StatementEvidence
    fractions: tuple[float, ...]  # per parameter sample (one for a generic plan or history)
    kind: str  # measured_history | custom_plan | generic_plan

    @property
    def fraction(self) -> float:
        """The expected share of the statement's time saved (mean over the samples)."""
        return sum(self.fractions) / len(self.fractions) if self.fractions else 0.0


@dataclass(frozen=True)
class Judgement:
    """Benefit and confidence of one candidate (or set), with the figures behind them."""

    evidence_kind: str
    confidence: float
    saved_ms_per_day: float
    write_ms_per_day: float
    savings: tuple[Saving, ...] = ()
    spread: dict[str, float] = field(default_factory=dict)  # min / median / max saving
    consistent: float = 0.0  # share of samples saving >= MIN_SAVING

    @property
    def benefit_ms_per_day(self) -> float:
        return self.saved_ms_per_day - self.write_ms_per_day


def per_day(statement: StatementEvidence, window_seconds: float | None) -> float:
    """The statement's measured time per day (its window's total, scaled to a day)."""
    if not window_seconds or window_seconds <= 0:
        return statement.total_ms
    return statement.total_ms * DAY / window_seconds


def from_plans(costs: Sequence[tuple[StatementEvidence, StatementCost]]) -> list[Saving]:
    """Each planned statement's saving per sample."""
    return [Saving(s, c.savings, "custom_plan" if c.custom else "generic_plan")
            for s, c in costs]


def from_history(statements: Sequence[StatementEvidence], measured: Sequence[MeasuredChange]
                 ) -> list[Saving]:
    """The measured fraction each regressed statement would get back: 1 - before / after."""
    out = []
    for s in statements:
        m = next((m for m in measured if set(m.queryids) & set(s.queryids)), None)
        if m is not None and m.after_ms > 0:
            out.append(Saving(s, (max(0.0, 1.0 - m.before_ms / m.after_ms),),
                              "measured_history"))
    return out


def write_ms_per_day(writes_per_day: float, costs: Sequence[tuple[StatementEvidence,
                                                                  StatementCost]]) -> float:
    """The time the index's maintenance costs a day: rows written x INDEX_WRITE_COST planner
    units x the served statements' measured ms per planner unit (0 when nothing is planned)."""
    units = sum(s.calls * c.before for s, c in costs if c.before > 0)
    if units <= 0 or writes_per_day <= 0:
        return 0.0
    ms_per_unit = sum(s.calls * s.mean_ms for s, c in costs if c.before > 0) / units
    return writes_per_day * INDEX_WRITE_COST * ms_per_unit


def judge(savings: Sequence[Saving], window_seconds: float | None, write_ms: float,
          measured: Sequence[MeasuredChange] = ()) -> Judgement:
    """Benefit and confidence from the strongest evidence among `savings`."""
    saved = sum(per_day(x.statement, window_seconds) * x.fraction for x in savings)
    history = [x for x in savings if x.kind == "measured_history"]
    samples = per_sample(savings)
    ordered = sorted(samples)
    spread = {"min": round(ordered[0], 4), "median": round(statistics.median(ordered), 4),
              "max": round(ordered[-1], 4)} if ordered else {}
    consistent = sum(1 for f in samples if f >= MIN_SAVING) / len(samples) if samples else 0.0
    weight = sum(max(x.statement.total_ms, 1e-9) for x in savings)
    if history:
        p = max((m.p_value for m in measured), default=1.0)
        return Judgement("measured_history", min(HISTORY_CEILING, max(0.0, 1.0 - p)), saved,
                         write_ms, tuple(savings), spread, consistent)
    if savings and all(x.kind == "custom_plan" for x in savings):
        return Judgement("custom_plan", 0.5 + 0.45 * consistent, saved, write_ms,
                         tuple(savings), spread, consistent)
    improvement = sum(max(x.statement.total_ms, 1e-9) * x.fraction for x in savings) / weight \
        if savings else 0.0
    return Judgement("generic_plan", GENERIC_WEIGHT * improvement, saved, write_ms,
                     tuple(savings), spread, consistent)


def per_sample(savings: Sequence[Saving]) -> list[float]:
    """The candidate's saving in each parameter sample: the statements' savings in that
    sample, weighted by their measured time (a statement with fewer samples repeats them)."""
    n = max((len(x.fractions) for x in savings), default=0)
    weight = sum(max(x.statement.total_ms, 1e-9) for x in savings if x.fractions)
    return [sum(max(x.statement.total_ms, 1e-9) * x.fractions[k % len(x.fractions)]
                for x in savings if x.fractions) / weight for k in range(n)] if weight else []


def combine(per_statement: Sequence[Sequence[Saving]]) -> list[Saving]:
    """For a set of indexes: each statement saves what its best member saves (not the sum)."""
    best: dict[str, Saving] = {}
    for group in per_statement:
        for x in group:
            old = best.get(x.statement.fingerprint)
            if old is None or x.fraction > old.fraction:
                best[x.statement.fingerprint] = x
    return list(best.values())
