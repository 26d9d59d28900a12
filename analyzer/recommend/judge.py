"""One index candidate judged on its evidence: planned, measured, or both (I/O via the
validator; the figures come from recommend/evidence.py).

The measured history comes first: a candidate that recreates a dropped index which a
significant regression is blamed on is judged on the statements' measured before/after,
whether or not validation is available (its plans, where they can be had, are kept as
evidence). Otherwise the candidate is planned — custom plans with representative parameter
values where every parameter of a statement has one, a generic plan where none of the
unknown ones is a range; a statement whose range values cannot be known is left out of the
plan-based judgement (the third-of-the-table default says nothing about the workload).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from analyzer.names import pair
from analyzer.recommend import ddl, evidence, proxy
from analyzer.recommend.candidates import normalize
from analyzer.recommend.model import (
    Candidate,
    DroppedIndex,
    NotProposed,
    StatementCost,
    StatementEvidence,
    Validation,
)
from analyzer.recommend.parameters import Samples
from analyzer.recommend.validate import Validator
from analyzer.snapshots.catalog import Catalog, TableInfo

# A statement must cost at least this many planner units to be worth an index.
MIN_STATEMENT_COST = 100.0

Ddls = tuple[str, str, str, str]  # CREATE … CONCURRENTLY, its plain form, revert, index name


@dataclass(frozen=True)
class Judged:
    """A candidate that passed on its own, with everything the selection and the report need."""

    candidate: Candidate
    ddls: Ddls
    judgement: evidence.Judgement
    validation: Validation | None  # None: judged on the history alone
    planned: tuple[StatementEvidence, ...]  # the statements planned with the index
    samples: Mapping[str, Samples]
    history: DroppedIndex | None
    writes_per_day: float
    index_bytes: int


@dataclass(frozen=True)
class Context:
    """What judging needs besides the candidate."""

    validator: Validator
    catalog: Catalog
    samples: Mapping[str, Samples]  # per fingerprint
    window_seconds: float | None
    table_writes: Mapping[str, int] | None
    min_confidence: float
    min_benefit: float
    max_p_value: float
    dropped: Mapping[str, DroppedIndex]  # by name
    validate: bool = True  # False: over max_candidates, or validation not available
    why_not: str = ""


def writes_per_day(table: TableInfo | None, calls: int, window_writes: int | None,
                   window_seconds: float | None) -> float:
    """Rows written to the table per day: the window's (where measured) scaled to a day, else
    estimated from the table's cumulative writes per read scan and the statements' calls."""
    if window_writes is not None:
        writes = float(window_writes)
    elif table is not None:
        total = table.inserts + max(table.updates - table.hot_updates, 0) + table.deletes
        writes = calls * total / max(table.seq_scans + table.index_scans, 1)
    else:
        writes = 0.0
    return writes * (evidence.DAY / window_seconds if window_seconds else 1.0)


def estimated_bytes(table: TableInfo | None, columns: int) -> int:
    """A btree's size, roughly, where no check measured it: 16 bytes a key column a row."""
    rows = max(table.reltuples, float(table.live_tuples), 1.0) if table is not None else 1.0
    return int(rows * (8 + 8 * columns))


def ids(statements: Sequence[StatementEvidence]) -> tuple[str, ...]:
    return tuple(str(q) for s in statements for q in s.queryids)


def check(v: Validator, c: Candidate, ddls: Ddls, statements: Sequence[StatementEvidence],
          catalog: Catalog, samples: Mapping[str, Sequence[Sequence[str | None]]]
          ) -> Validation:
    """Validate one candidate; an expression index needs statistics to be judged fairly.

    On the sandbox a rolled-back ANALYZE gives them. On the target it may not: even rolled
    back, ANALYZE reports to the statistics collector (last_analyze, rows changed since), which
    would read as the table having been analysed. There the expression is planned through its
    bare-column stand-in instead (see proxy), for hypopg and transaction alike.
    """
    expression = any(col.column is None or col.expression for col in c.columns)
    index = [(ddls[1], ddls[3])]
    if v.method == "sandbox" or not proxy.needs_proxy(c.columns):
        return v.check(index, c.table, statements, samples,
                       analyze=expression and v.method == "sandbox")
    bare = {ddl.quote_ident(col.column) for col in c.columns
            if proxy.proxy_function(col) and col.column is not None}
    if any(i.valid and i.columns and normalize(i.columns[0]) in {normalize(b) for b in bare}
           for i in catalog.indexes_on(c.table)):
        return v.check(index, c.table, statements, samples)  # the bare column is indexed
    schema, table = pair(c.table)
    stand_in = ddl.create_index(schema, ddls[3], table, proxy.proxy_columns(c.columns),
                                concurrently=False, method=c.method, where=c.where)
    rewritten = []
    for s in statements:
        text = proxy.proxy_query(s.query, c.columns)
        if text is None:
            return v.check(index, c.table, statements, samples)
        rewritten.append(replace(s, query=text, fingerprint=s.fingerprint + ":proxy"))
    proxied = {s.fingerprint + ":proxy": samples[s.fingerprint] for s in statements
               if s.fingerprint in samples}
    result = v.check([(stand_in, ddls[3])], c.table, rewritten, proxied)
    return replace(result, detail="planned through a bare-column stand-in (no statistics "
                                  "for the expression before a real index is analysed)")


def planned_pairs(v: Validation, statements: Sequence[StatementEvidence]
                  ) -> list[tuple[StatementEvidence, StatementCost]]:
    """The statements whose plans with the index are known, with their costs."""
    by_id = {cost.queryid: cost for cost in v.costs}
    return [(s, by_id[s.queryids[0]]) for s in statements
            if s.queryids[0] in by_id and by_id[s.queryids[0]].after is not None]


def consider(c: Candidate, ddls: Ddls, ctx: Context) -> Judged | NotProposed:
    """Judge one candidate alone: a Judged that may be proposed, or why it may not."""
    drop = ctx.dropped.get(c.name or "") if c.source == "dropped_index" else None
    measured = drop.measured if drop is not None else ()
    history = evidence.from_history(c.statements, measured) if all(
        m.p_value <= ctx.max_p_value for m in measured) else []
    table = ctx.catalog.table(c.table)
    calls = sum(s.calls for s in c.statements)
    writes = writes_per_day(table, calls, None if ctx.table_writes is None
                            else ctx.table_writes.get(c.table, 0), ctx.window_seconds)

    def no(reason: str, detail: str | None = None, confidence: float | None = None,
           method: str = "none") -> NotProposed:
        return NotProposed("create_index", c.table, c.column_texts, reason, detail,
                           ids(c.statements), confidence, method)

    def on_history(v: Validation | None = None, planned: Sequence[StatementEvidence] = (),
                   savings: Sequence[evidence.Saving] = (), write_ms: float = 0.0
                   ) -> Judged | NotProposed:
        covered = {x.statement.fingerprint for x in history}
        j = evidence.judge([*history, *(x for x in savings
                                        if x.statement.fingerprint not in covered)],
                           ctx.window_seconds, write_ms, measured)
        return gate(j, v, planned)

    def gate(j: evidence.Judgement, v: Validation | None, planned: Sequence[StatementEvidence]
             ) -> Judged | NotProposed:
        method = v.method if v is not None else "none"
        if j.confidence < ctx.min_confidence:
            why = f"confidence {j.confidence:.2f} < {ctx.min_confidence:g} ({j.evidence_kind}"
            if j.spread:
                why += (f"; saving over the samples min {j.spread['min']:.0%}, median "
                        f"{j.spread['median']:.0%}, max {j.spread['max']:.0%}")
            return no("low_confidence", why + ")", j.confidence, method)
        if j.benefit_ms_per_day <= 0 < j.write_ms_per_day:
            return no("write_cost_exceeds_benefit",
                      f"saves {j.saved_ms_per_day:,.0f} ms a day; its writes cost "
                      f"{j.write_ms_per_day:,.0f} ms a day ({writes:,.0f} rows written)",
                      j.confidence, method)
        if j.benefit_ms_per_day <= ctx.min_benefit:
            return no("benefit_below_threshold",
                      f"saves {j.benefit_ms_per_day:,.0f} ms a day (analyzer.min_benefit "
                      f"{ctx.min_benefit:g})", j.confidence, method)
        size = (v.index_bytes if v is not None and v.index_bytes else
                estimated_bytes(table, len(c.columns)))
        return Judged(c, ddls, j, v, tuple(planned), ctx.samples, drop, writes, size)

    v = ctx.validator
    if not ctx.validate:
        return on_history() if history else no("not_validated", ctx.why_not)
    costly: list[StatementEvidence] = []
    explained = False
    v.last_failure = None
    for s in c.statements:
        cost = v.cost_before(s)
        explained = explained or cost is not None
        if cost is not None and cost >= MIN_STATEMENT_COST:
            costly.append(s)
    if not costly:
        if history:
            return on_history()
        reason = "statement_too_cheap" if explained else "not_explainable"
        detail = f"no statement costs {MIN_STATEMENT_COST:g} planner units" if explained \
            else "no statement could be planned"
        if not explained and v.last_failure is not None and v.last_failure[0] in (
                "lock_not_available", "validation_timeout"):
            reason, detail = v.last_failure
        return no(reason, detail)
    planned = [s for s in costly if not ctx.samples.get(s.fingerprint, Samples()).unknown_range]
    if not planned:
        return on_history() if history else no(
            "low_confidence", "the values of its range cannot be known (no pg_qualstats "
            "constants, no column statistics) and there is no measured history: a generic "
            "plan's third-of-the-table guess is not evidence")
    values = {s.fingerprint: ctx.samples[s.fingerprint].values for s in planned
              if s.fingerprint in ctx.samples and ctx.samples[s.fingerprint].custom}
    result = check(v, c, ddls, planned, ctx.catalog, values)
    if not result.ok:
        return on_history() if history else no(result.reason or "validation_failed",
                                                result.detail, method=result.method)
    pairs = planned_pairs(result, planned)
    if not pairs:
        return on_history(result) if history else no(
            "not_explainable", "no statement could be planned with the index",
            method=result.method)
    savings = evidence.from_plans(pairs)
    write_ms = evidence.write_ms_per_day(writes, pairs)
    if history:
        return on_history(result, [s for s, _ in pairs], savings, write_ms)
    if not any(k.uses_index for _, k in pairs):
        return no("saving_below_threshold", "the planner does not use the index",
                  method=result.method)
    j = evidence.judge(savings, ctx.window_seconds, write_ms)
    if j.spread and j.spread["median"] < evidence.MIN_SAVING:
        return no("saving_below_threshold",
                  f"saves {j.spread['median']:.0%} of the planned cost in the median sample "
                  f"(needs {evidence.MIN_SAVING:.0%})", method=result.method)
    return gate(j, result, [s for s, _ in pairs])
