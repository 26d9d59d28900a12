"""One recommendation step: candidates from the statements, validated, gated by confidence.

The thin I/O shell around the pure parts: it resolves table names and reads column
statistics on the target, runs the what-if checks (recommend/validate.py) and applies the
thresholds. Everything considered and not proposed is returned with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from analyzer.analysis.features import parse_statement
from analyzer.plans import resolve_tables
from analyzer.recommend import ddl, maintenance, proxy
from analyzer.recommend.candidates import ColumnStats, generate, normalize
from analyzer.recommend.model import (
    Candidate,
    DroppedIndex,
    NotProposed,
    Recommendation,
    RecommendResult,
    StatementCost,
    StatementEvidence,
    Validation,
)
from analyzer.recommend.predicates import Access, access
from analyzer.snapshots.catalog import Catalog, TableInfo
from analyzer.snapshots.own import register_own
from analyzer.recommend.validate import Validator
from pgarchitect.config import AnalyzerSettings
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.recommend")

# A statement must cost at least this many planner units to be worth an index, and the index
# must save at least this share of its (time-weighted) cost.
MIN_STATEMENT_COST = 100.0
MIN_SAVING = 0.5
# Planner units one written row costs an index (descend the tree, write a leaf page): about
# a random page plus CPU. Weighed against the cost the index saves the reads it speeds up.
INDEX_WRITE_COST = 10.0

COLUMN_STATS = """/* pgarchitect */
SELECT n.nspname || '.' || c.relname, a.attname,
       CASE WHEN s.n_distinct IS NULL THEN NULL
            WHEN s.n_distinct >= 0 THEN s.n_distinct
            ELSE -s.n_distinct * greatest(c.reltuples, 0) END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
                    AND s.attname = a.attname AND NOT s.inherited
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname || '.' || c.relname = ANY(%s::text[])
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
        rows = conn.execute(COLUMN_STATS, (sorted(set(tables)),)).fetchall()
    except psycopg.Error as exc:
        log.warning(event("recommend.stats_failed", reason=first_line(exc)))
        return {}, {}
    for table, column, distinct in rows:
        columns.setdefault(str(table), set()).add(str(column))
        if distinct is not None:
            stats.setdefault(str(table), {})[str(column)] = float(distinct)
    return {t: frozenset(c) for t, c in columns.items()}, stats


def write_factor(table: TableInfo | None, saved: float, calls: int,
                 window_writes: int | None) -> tuple[float, float]:
    """(confidence factor, rows written per read) for an index on `table`.

    `saved` is the planner cost the index saves over the window's `calls`; the writes are the
    window's (`window_writes`) where the caller measured them, else estimated from the
    table's cumulative writes per read scan.
    """
    if window_writes is not None:
        writes = float(window_writes)
    elif table is not None:
        total = table.inserts + max(table.updates - table.hot_updates, 0) + table.deletes
        writes = calls * total / max(table.seq_scans + table.index_scans, 1)
    else:
        writes = 0.0
    overhead = writes * INDEX_WRITE_COST
    factor = saved / (saved + overhead) if saved + overhead > 0 else 1.0
    return factor, writes / max(calls, 1)


def _statement_json(s: StatementEvidence, cost: StatementCost | None) -> dict[str, Any]:
    return {"queryid": str(s.queryids[0]), "queryids": s.queryid_texts, "query": s.query,
            "calls": s.calls, "total_ms": round(s.total_ms, 3), "mean_ms": round(s.mean_ms, 4),
            "regressed": s.regressed,
            "cost_before": None if cost is None else round(cost.before, 2),
            "cost_after": None if cost is None or cost.after is None else round(cost.after, 2),
            "uses_index": None if cost is None else cost.uses_index}


def _ddl_for(c: Candidate, catalog: Catalog) -> tuple[str, str, str, str]:
    """(CREATE … CONCURRENTLY, its plain form for validation, revert, index name)."""
    schema, _, table = c.table.partition(".")
    if c.definition is not None and c.name is not None:
        name = c.name.partition(".")[2]
        create = ddl.concurrent(c.definition)
        return create, c.definition, ddl.drop_index(schema, name), name
    parts = [col.text.partition("(")[0].strip('"') if col.expression or col.column is None
             else col.column for col in c.columns]
    name = ddl.index_name(table, parts, (i.name for i in catalog.indexes if i.schema == schema))
    create = ddl.create_index(schema, name, table, c.columns)
    return create, ddl.plain(create), ddl.drop_index(schema, name), name


def _rationale(c: Candidate, served: Sequence[StatementEvidence], before: float, after: float,
               share: float) -> str:
    cols = ", ".join(c.column_texts)
    one = len(served) == 1
    what = "1 statement" if one else f"{len(served)} statements"
    their = "its" if one else "their"
    figures = (f"cuts {their} planned cost from {before:,.0f} to {after:,.0f} "
               f"({share:.0%} of the statement time seen)")
    if c.source == "dropped_index" and c.name is not None:
        return (f"Index {c.name.partition('.')[2]} was dropped and the {what} on {c.table} "
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


def _judge(c: Candidate, v: Validation, served: Sequence[StatementEvidence],
           catalog: Catalog, total_ms: float, min_confidence: float,
           ddls: tuple[str, str, str, str], window_writes: int | None
           ) -> Recommendation | NotProposed:
    qids = tuple(str(q) for s in served for q in s.queryids)

    def no(reason: str, detail: str | None = None, confidence: float | None = None
           ) -> NotProposed:
        return NotProposed("create_index", c.table, c.column_texts, reason, detail, qids,
                           confidence, v.method)

    if not v.ok:
        return no(v.reason or "validation_failed", v.detail)
    by_id = {cost.queryid: cost for cost in v.costs}
    measured = [(s, by_id[s.queryids[0]]) for s in served if s.queryids[0] in by_id
                and by_id[s.queryids[0]].after is not None]
    if not measured:
        return no("not_explainable", "no statement could be planned with the index")
    weight = sum(max(s.total_ms, 1e-9) for s, _ in measured)
    improvement = sum(max(s.total_ms, 1e-9) * max(0.0, 1.0 - (k.after or 0.0) / k.before)
                      for s, k in measured) / weight
    before = sum(k.before for _, k in measured)
    after = sum(k.after or 0.0 for _, k in measured)
    if not any(k.uses_index for _, k in measured):
        return no("saving_below_threshold", "the planner does not use the index")
    if improvement < MIN_SAVING:
        return no("saving_below_threshold",
                  f"saves {improvement:.0%} of the planned cost (needs {MIN_SAVING:.0%})")
    saved = sum(s.calls * max(0.0, k.before - (k.after or 0.0)) for s, k in measured)
    calls = sum(s.calls for s, _ in measured)
    factor, per_read = write_factor(catalog.table(c.table), saved, calls, window_writes)
    confidence = improvement * factor
    if confidence < min_confidence:
        detail = f"confidence {confidence:.2f} < {min_confidence:g}"
        if factor < 0.99:
            detail += f" ({per_read:.1f} rows written per read it speeds up)"
        return no("low_confidence", detail, confidence)
    share = sum(s.total_ms for s, _ in measured) / max(total_ms, 1e-9)
    create, _, revert, name = ddls
    costs = {s.queryids[0]: k for s, k in measured}
    return Recommendation(
        "create_index", c.table, c.column_texts, create, revert,
        _rationale(c, [s for s, _ in measured], before, after, share),
        queryids=qids, estimated_cost_before=before, estimated_cost_after=after,
        estimated_improvement=improvement, confidence=confidence, validated_by=v.method,
        evidence={
            "index_name": name, "source": c.source, "definition": c.definition,
            "statements": [_statement_json(s, costs.get(s.queryids[0])) for s in served],
            "validation": {"method": v.method, "seconds": round(v.seconds, 4),
                           "plans": v.plans, "index_bytes": v.index_bytes},
            "write_factor": round(factor, 4), "writes_per_read": round(per_read, 3),
            "share_of_time": round(share, 4),
        })


def _check(v: Validator, c: Candidate, ddls: tuple[str, str, str, str],
           costly: Sequence[StatementEvidence], catalog: Catalog) -> Validation:
    """Validate one candidate; an expression index needs statistics to be judged fairly.

    On the sandbox a rolled-back ANALYZE gives them. On the target it may not: even rolled
    back, ANALYZE reports to the statistics collector (last_analyze, rows changed since), which
    would read as the table having been analysed. There the expression is planned through its
    bare-column stand-in instead (see proxy), for hypopg and transaction alike.
    """
    expression = any(col.column is None or col.expression for col in c.columns)
    if v.method == "sandbox" or not proxy.needs_proxy(c.columns):
        return v.check(ddls[1], ddls[3], c.table, costly,
                       analyze=expression and v.method == "sandbox")
    bare = {ddl.quote_ident(col.column) for col in c.columns
            if proxy.proxy_function(col) and col.column is not None}
    if any(i.valid and i.columns and normalize(i.columns[0]) in {normalize(b) for b in bare}
           for i in catalog.indexes_on(c.table)):
        return v.check(ddls[1], ddls[3], c.table, costly)  # the bare column is indexed
    schema, _, table = c.table.partition(".")
    stand_in = ddl.create_index(schema, ddls[3], table, proxy.proxy_columns(c.columns),
                                concurrently=False)
    statements = []
    for s in costly:
        text = proxy.proxy_query(s.query, c.columns)
        if text is None:
            return v.check(ddls[1], ddls[3], c.table, costly)
        statements.append(replace(s, query=text, fingerprint=s.fingerprint + ":proxy"))
    result = v.check(stand_in, ddls[3], c.table, statements)
    return replace(result, detail="planned through a bare-column stand-in (no statistics "
                                  "for the expression before a real index is analysed)")


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
) -> RecommendResult:
    """Every recommendation these statements and this catalog support, validated and gated.

    `statements` are the audit's costly and regressed statement groups; `dropped` the indexes
    whose drop a regression cluster was attributed to; `observed_since` the first snapshot of
    the target (the age of the statistics when the server never reset them); `table_writes`
    the rows each table had written (inserted, non-HOT updated, deleted) over the window the
    statements' calls were counted in, when the caller has two catalog reads to tell.
    """
    now = now or datetime.now(UTC)
    statements = sorted(statements, key=lambda s: (not s.regressed, -s.total_ms))
    total_ms = sum(s.total_ms for s in statements)
    written = sorted({t for s in statements for t in parse_statement(s.query).tables})
    resolved = resolve_tables(target_conn, written)
    columns_of, stats = column_stats(target_conn, sorted(set(resolved.values())))
    accesses: dict[str, Access] = {}
    for s in statements:
        accesses.setdefault(s.fingerprint, access(s.query, resolved, columns_of))
    candidates, not_proposed = generate(statements, accesses, catalog, stats, dropped)

    proposed: list[Recommendation] = []
    own = validator is None
    v = validator or Validator(target_conn, settings.validation, server_version_num,
                               connect_timeout=settings.connect_timeout)
    try:
        limit = settings.validation.max_candidates
        for n, c in enumerate(candidates):
            try:
                ddls = _ddl_for(c, catalog)
            except ValueError as exc:  # a dropped index's definition we cannot rebuild
                not_proposed.append(NotProposed(
                    "create_index", c.table, c.column_texts, "validation_failed", str(exc)))
                continue
            if not v.available or n >= limit:
                why = (v.unavailable or "validation is off") if not v.available else (
                    f"more than analyzer.validation.max_candidates ({limit}) candidates")
                not_proposed.append(NotProposed(
                    "create_index", c.table, c.column_texts, "not_validated", why,
                    tuple(str(q) for s in c.statements for q in s.queryids)))
                continue
            costly = []
            explained = False
            v.last_failure = None
            for s in c.statements:
                cost = v.cost_before(s)
                explained = explained or cost is not None
                if cost is not None and cost >= MIN_STATEMENT_COST:
                    costly.append(s)
            if not costly:
                reason = "statement_too_cheap" if explained else "not_explainable"
                detail = f"no statement costs {MIN_STATEMENT_COST:g} planner units" if \
                    explained else "no statement could be planned"
                if not explained and v.last_failure is not None and v.last_failure[0] in (
                        "lock_not_available", "validation_timeout"):
                    reason, detail = v.last_failure
                not_proposed.append(NotProposed(
                    "create_index", c.table, c.column_texts, reason, detail,
                    tuple(str(q) for s in c.statements for q in s.queryids)))
                continue
            result = _check(v, c, ddls, costly, catalog)
            writes = None if table_writes is None else table_writes.get(c.table, 0)
            finding = _judge(c, result, costly, catalog, total_ms, settings.min_confidence,
                             ddls, writes)
            if isinstance(finding, Recommendation):
                proposed.append(finding)
            else:
                not_proposed.append(finding)
    finally:
        if own:
            v.close()

    findings: list[maintenance.Finding] = []
    findings += maintenance.drop_indexes(catalog, now, observed_since,
                                         settings.unused_index_min_age)
    # Stale statistics and dead tuples matter on any table of a size to matter, not only on
    # those the costly statements name: the next plan to go wrong may be anyone's.
    findings += maintenance.statistics(catalog)
    findings += maintenance.n_plus_one(statements, accesses)
    findings += maintenance.work_mem(statements, catalog.settings.get("work_mem"))
    findings += maintenance.rewrites(statements, accesses, catalog)
    for f in findings:
        if isinstance(f, NotProposed):
            not_proposed.append(f)
        elif f.confidence >= settings.min_confidence:
            proposed.append(f)
        else:
            not_proposed.append(NotProposed(
                f.kind, f.table, f.columns, "low_confidence",
                f"confidence {f.confidence:.2f} < {settings.min_confidence:g}", f.queryids,
                f.confidence))
    log.info(event("recommend.done", candidates=len(candidates), proposed=len(proposed),
                   not_proposed=len(not_proposed), validations=v.validations, plans=v.plans))
    return RecommendResult(tuple(proposed), tuple(not_proposed), v.validations, v.plans,
                           v.seconds, v.method if v.available else "none")

