"""One recommendation step: candidates from the statements, judged on their evidence, chosen
for the workload as a whole.

The thin I/O shell around the pure parts: it resolves table names and reads column statistics
and representative parameter values on the target (recommend/parameters.py), judges each
candidate alone (recommend/judge.py: measured history, custom plans, generic plans, via the
what-if checks of recommend/validate.py), then chooses the set to propose against all costly
statements together (recommend/selection.py). Everything considered and not proposed is
returned with its reason. `recommend` takes statements, a catalog and a target connection, so
any caller (the audit, `advise`) can run it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from analyzer.analysis.features import parse_statement
from analyzer.names import pair, split_qualified
from analyzer.plans import resolve_tables
from analyzer.recommend import ddl, evidence, maintenance, parameters, selection
from analyzer.recommend.candidates import ColumnStats, generate
from analyzer.recommend.judge import Context, Judged, consider, ids, planned_pairs
from analyzer.recommend.model import (
    Candidate,
    DroppedIndex,
    NotProposed,
    Recommendation,
    RecommendResult,
    StatementCost,
    StatementEvidence,
)
from analyzer.recommend.predicates import Access, access, read_relations
from analyzer.recommend.validate import Validator
from analyzer.snapshots.catalog import Catalog
from analyzer.snapshots.own import register_own
from pgarchitect.config import AnalyzerSettings
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.recommend")

COLUMN_STATS = """/* pgarchitect */
SELECT k.name, a.attname,
       CASE WHEN s.n_distinct IS NULL THEN NULL
            WHEN s.n_distinct >= 0 THEN s.n_distinct
            ELSE -s.n_distinct * greatest(c.reltuples, 0) END
FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(name, nsp, rel)
JOIN pg_namespace n ON n.nspname = k.nsp
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = k.rel
JOIN pg_attribute a ON a.attrelid = c.oid
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
                    AND s.attname = a.attname AND NOT s.inherited
WHERE a.attnum > 0 AND NOT a.attisdropped
"""
register_own(COLUMN_STATS)


def column_stats(conn: psycopg.Connection[Any], tables: Sequence[str]
                 ) -> tuple[dict[str, frozenset[str]], ColumnStats]:
    """Each table's columns, and the distinct values of those pg_stats shows."""
    columns: dict[str, set[str]] = {}
    stats: dict[str, dict[str, float]] = {}
    if not tables:
        return {}, {}
    try:
        names = sorted(set(tables))  # printed, qualified (analyzer/names.py)
        pairs = [split_qualified(t) for t in names]
        rows = conn.execute(COLUMN_STATS, (names, [p[0] for p in pairs],
                                           [p[1] for p in pairs])).fetchall()
    except psycopg.Error as exc:
        log.warning(event("recommend.stats_failed", reason=first_line(exc)))
        return {}, {}
    for table, column, distinct in rows:
        columns.setdefault(str(table), set()).add(str(column))
        if distinct is not None:
            stats.setdefault(str(table), {})[str(column)] = float(distinct)
    return {t: frozenset(c) for t, c in columns.items()}, stats


def _statement_json(s: StatementEvidence, cost: StatementCost | None,
                    samples: parameters.Samples | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "queryid": str(s.queryids[0]), "queryids": s.queryid_texts, "query": s.query,
        "calls": s.calls, "total_ms": round(s.total_ms, 3), "mean_ms": round(s.mean_ms, 4),
        "regressed": s.regressed,
        "cost_before": None if cost is None else round(cost.before, 2),
        "cost_after": None if cost is None or cost.after is None else round(cost.after, 2),
        "uses_index": None if cost is None else cost.uses_index}
    if cost is not None and cost.samples:
        out["samples"] = [{"cost_before": round(b, 2),
                           "cost_after": None if a is None else round(a, 2)}
                          for b, a in cost.samples]
    if samples is not None:
        out["parameters"] = samples.source
    return out


def _ddl_for(c: Candidate, catalog: Catalog) -> tuple[str, str, str, str]:
    """(CREATE … CONCURRENTLY, its plain form for validation, revert, index name)."""
    schema, table = pair(c.table)
    if c.definition is not None and c.name is not None:
        name = split_qualified(c.name)[1]
        create = ddl.concurrent(c.definition)
        return create, c.definition, ddl.drop_index(schema, name), name
    parts = [col.text.partition("(")[0].strip('"') if col.expression or col.column is None
             else col.column for col in c.columns]
    name = ddl.index_name(table, parts, (i.name for i in catalog.indexes if i.schema == schema))
    create = ddl.create_index(schema, name, table, c.columns, method=c.method, where=c.where)
    return create, ddl.plain(create), ddl.drop_index(schema, name), name


def _rationale(c: Candidate, served: Sequence[StatementEvidence], j: evidence.Judgement,
               before: float | None, after: float | None) -> str:
    cols = ", ".join(c.column_texts)
    one = len(served) == 1
    what = "1 statement" if one else f"{len(served)} statements"
    their = "its" if one else "their"
    saved = (f"saves about {j.benefit_ms_per_day:,.0f} ms of statement time a day")
    if j.evidence_kind == "measured_history":
        figures = f"{saved} (measured: the time they lost when it was dropped)"
    elif before is not None and after is not None:
        how = ("with representative parameter values" if j.evidence_kind == "custom_plan"
               else "with a generic plan")
        figures = (f"cuts {their} planned cost from {before:,.0f} to {after:,.0f} {how} and "
                   f"{saved}")
    else:
        figures = saved
    if c.source == "dropped_index" and c.name is not None:
        return (f"Index {split_qualified(c.name)[1]} was dropped and the {what} on {c.table} "
                f"it served regressed; recreating it {figures}.")
    roles = {col.role for col in c.columns}
    how = ("filter" if roles & {"equality", "in", "range"} else "join") + (
        " and sort" if "sort" in roles else "")
    verb = how.replace("filter", "filters").replace("join", "joins").replace(
        "sort", "sorts") if one else how
    rest = "reads" if one else "read"
    return (f"{what.capitalize()} on {c.table} {verb} by {cols} and {rest} far more of the "
            f"table than {'it returns' if one else 'they return'}; an index on ({cols}) "
            f"{figures}.")


def _proposal(x: Judged, total_ms: float) -> Recommendation:
    c, j, v = x.candidate, x.judgement, x.validation
    pairs = planned_pairs(v, x.planned) if v is not None else []
    costs = {s.queryids[0]: k for s, k in pairs}
    before = sum(k.before for _, k in pairs) if pairs else None
    after = sum(k.after or 0.0 for _, k in pairs) if pairs else None
    weight = sum(max(y.statement.total_ms, 1e-9) for y in j.savings)
    improvement = sum(max(y.statement.total_ms, 1e-9) * y.fraction for y in j.savings) / \
        weight if weight else None
    served = [y.statement for y in j.savings]
    share = sum(s.total_ms for s in served) / max(total_ms, 1e-9)
    create, _, revert, name = x.ddls
    measured = [{"queryids": [str(q) for q in m.queryids], "before_mean_ms": round(m.before_ms, 4),
                 "after_mean_ms": round(m.after_ms, 4), "calls": m.calls,
                 "p_value": m.p_value} for m in (x.history.measured if x.history else ())]
    return Recommendation(
        "create_index", c.table, c.column_texts, create, revert,
        _rationale(c, served, j, before, after), confidence=j.confidence,
        queryids=ids(c.statements), statements=tuple(s.query for s in c.statements),
        estimated_cost_before=before, estimated_cost_after=after,
        estimated_improvement=improvement, validated_by=v.method if v is not None else "none",
        benefit_ms_per_day=j.benefit_ms_per_day, evidence_kind=j.evidence_kind,
        evidence={
            "index_name": name, "source": c.source, "definition": c.definition,
            "evidence_kind": j.evidence_kind,
            "benefit_ms_per_day": round(j.benefit_ms_per_day, 3),
            "saved_ms_per_day": round(j.saved_ms_per_day, 3),
            "write_ms_per_day": round(j.write_ms_per_day, 3),
            "writes_per_day": round(x.writes_per_day, 1),
            "saving_spread": j.spread, "consistent_share": round(j.consistent, 4),
            "measured": measured,
            "statements": [_statement_json(s, costs.get(s.queryids[0]),
                                           x.samples.get(s.fingerprint))
                           for s in c.statements],
            "validation": None if v is None else {
                "method": v.method, "seconds": round(v.seconds, 4), "plans": v.plans,
                "index_bytes": v.index_bytes},
            "share_of_time": round(share, 4),
        })


def _evaluator(v: Validator, judged: Sequence[Judged], catalog: Catalog
               ) -> selection.Evaluate:
    """Each statement's saving with a set of candidates present (all planned together where
    they can be: hypopg holds several hypothetical indexes at once)."""
    def evaluate(keys: frozenset[int]) -> list[evidence.Saving]:
        members = [judged[k] for k in sorted(keys)]
        alone = [list(m.judgement.savings) for m in members]
        planned = [m for m in members if m.validation is not None and m.history is None]
        if len(planned) < 2 or not v.available or any(_proxied(m) for m in planned):
            return evidence.combine(alone)
        statements = list({s.fingerprint: s for m in planned for s in m.planned}.values())
        values = {fp: smp.values for fp, smp in planned[0].samples.items() if smp.custom}
        result = v.check([(m.ddls[1], m.ddls[3]) for m in planned], planned[0].candidate.table,
                         statements, values)
        if not result.ok:
            return evidence.combine(alone)
        together = evidence.from_plans(planned_pairs(result, statements))
        history = [list(m.judgement.savings) for m in members if m not in planned]
        return evidence.combine([together, *history])
    return evaluate


def _proxied(m: Judged) -> bool:
    v = m.validation
    return v is not None and v.detail is not None and "stand-in" in v.detail


def recommend(
    target_conn: psycopg.Connection[Any],
    statements: Sequence[StatementEvidence],
    catalog: Catalog,
    dropped: Sequence[DroppedIndex],
    settings: AnalyzerSettings,
    server_version_num: int,
    now: datetime | None = None,
    observed_since: datetime | None = None,
    validator: Validator | None = None,
    table_writes: Mapping[str, int] | None = None,
    window_seconds: float | None = None,
    logged_parameters: Mapping[str, tuple[tuple[str | None, ...], ...]] | None = None,
) -> RecommendResult:
    """Every recommendation these statements and this catalog support, judged and chosen.

    `statements` are the costly and regressed statement groups, measured over a window of
    `window_seconds` (None: their totals are taken as a day's); `dropped` the indexes whose
    drop a regression cluster was attributed to, with the cluster's measured change;
    `observed_since` the first snapshot of the target (the age of the statistics when the
    server never reset them); `table_writes` the rows each table had written (inserted,
    non-HOT updated, deleted) over the window, when the caller has two catalog reads to tell;
    `logged_parameters` the bind parameters of the server's log
    (`parameters.logged_values`), where the caller reads it (`pgarchitect advise --log`).
    """
    now = now or datetime.now(UTC)
    statements = sorted(statements, key=lambda s: (not s.regressed, -s.total_ms))
    total_ms = sum(s.total_ms for s in statements)
    written = sorted({t for s in statements for t in parse_statement(s.query).tables})
    resolved = resolve_tables(target_conn, written)
    relations = read_relations(target_conn, written)  # views, partitions, column types
    columns_of, stats = column_stats(target_conn, sorted(set(resolved.values())
                                                         | set(relations.tables())))
    accesses: dict[str, Access] = {}
    for s in statements:
        accesses.setdefault(s.fingerprint, access(s.query, resolved, columns_of, relations))
    candidates, not_proposed = generate(statements, accesses, catalog, stats, dropped,
                                        relations)

    own = validator is None
    v = validator or Validator(target_conn, settings.validation, server_version_num,
                               connect_timeout=settings.connect_timeout)
    judged: list[Judged] = []
    try:
        bound = {s.fingerprint: parameters.bindings(s.query, resolved, columns_of)
                 for s in statements}
        sources = parameters.read_sources(target_conn, statements, bound, logged_parameters) \
            if v.available else parameters.Sources()
        samples = {s.fingerprint: parameters.samples(s, bound[s.fingerprint], sources)
                   for s in statements}
        limit = settings.validation.max_candidates
        ctx = Context(v, catalog, samples, window_seconds, table_writes,
                      settings.min_confidence, settings.min_benefit,
                      settings.regression.max_p_value, {d.name: d for d in dropped})
        for n, c in enumerate(candidates):
            try:
                ddls = _ddl_for(c, catalog)
            except ValueError as exc:  # a dropped index's definition we cannot rebuild
                not_proposed.append(NotProposed(
                    "create_index", c.table, c.column_texts, "validation_failed", str(exc)))
                continue
            why = "" if v.available and n < limit else (
                (v.unavailable or "validation is off") if not v.available else
                f"more than analyzer.validation.max_candidates ({limit}) candidates")
            finding = consider(c, ddls, replace(ctx, validate=not why, why_not=why))
            if isinstance(finding, Judged):
                judged.append(finding)
            else:
                not_proposed.append(finding)
        chosen = selection.select(
            [selection.Option(k, x.candidate.table, x.judgement.write_ms_per_day,
                              x.index_bytes) for k, x in enumerate(judged)],
            _evaluator(v, judged, catalog), window_seconds, settings.min_benefit)
    finally:
        if own:
            v.close()
    proposed: list[Recommendation] = [_proposal(judged[k], total_ms) for k in chosen.chosen]
    for k, by in chosen.served_by.items():
        x = judged[k]
        names = ", ".join(judged[b].ddls[3] for b in by) or "the chosen set"
        not_proposed.append(NotProposed(
            "create_index", x.candidate.table, x.candidate.column_texts,
            "served_by_another_proposal",
            f"{names} already serves its statements: it would add no more than "
            f"analyzer.min_benefit ({settings.min_benefit:g} ms a day)",
            ids(x.candidate.statements), x.judgement.confidence,
            x.validation.method if x.validation is not None else "none"))
    before = sum(evidence.per_day(s, window_seconds) for s in statements)
    saved = sum(evidence.per_day(x.statement, window_seconds) * x.fraction
                for x in chosen.savings)
    workload = {"ms_per_day_before": round(before, 3),
                "ms_per_day_after": round(max(0.0, before - saved + chosen.write_ms_per_day), 3)
                } if statements else None

    findings: list[maintenance.Finding] = []
    findings += maintenance.drop_indexes(catalog, now, observed_since,
                                         settings.unused_index_min_age)
    # Stale statistics and dead tuples matter on any table of a size to matter, not only on
    # those the costly statements name: the next plan to go wrong may be anyone's.
    findings += maintenance.statistics(catalog)
    findings += maintenance.n_plus_one(statements, accesses)
    findings += maintenance.work_mem(statements, catalog.settings.get("work_mem"),
                                     target_conn.info.dbname)
    findings += maintenance.rewrites(statements, accesses, catalog)
    for f in findings:
        if isinstance(f, NotProposed):
            not_proposed.append(f)
        elif f.confidence >= settings.min_confidence:
            proposed.append(f)
        else:
            not_proposed.append(NotProposed(
                f.kind, f.table or None, f.columns, "low_confidence",
                f"confidence {f.confidence:.2f} < {settings.min_confidence:g}", f.queryids,
                f.confidence))
    log.info(event("recommend.done", candidates=len(candidates), proposed=len(proposed),
                   not_proposed=len(not_proposed), validations=v.validations, plans=v.plans))
    return RecommendResult(tuple(proposed), tuple(not_proposed), v.validations, v.plans,
                           v.seconds, v.method if v.available else "none", workload)
