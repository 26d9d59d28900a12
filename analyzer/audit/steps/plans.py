"""Steps: plan analysis on the target and the regressions described with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg

from analyzer.analysis.features import parse_statement, qualify
from analyzer.analysis.regression import GroupKey, Regression
from analyzer.audit.values import PlanAnalysis, WindowStatistics
from analyzer.plans import (
    column_selectivity,
    explain_generic,
    leading_index_columns,
    resolve_tables,
)
from analyzer.snapshots.model import TextKey
from analyzer.store import audits
from analyzer.store.connection import Conn
from pgarchitect.config import AnalyzerSettings


def analyze_plans(
    conn: psycopg.Connection[Any], store: Conn, target: str, audit_id: int | None,
    stats: WindowStatistics, found: Sequence[Regression], settings: AnalyzerSettings,
    server_version_num: int, explain: bool = True,
) -> PlanAnalysis:
    """Parse the regressed and the costliest statements; ask the target about their tables and,
    when `explain`, for their generic plans; fetch the plans earlier audits stored."""
    top = sorted(stats.current.values(), key=lambda g: -g.stat.moments.total)
    wanted: dict[GroupKey, int] = {r.key: r.queryid for r in found}
    for g in top[: settings.plan_top_n] if explain else ():
        wanted.setdefault(g.key, g.queryids[0])
    raw = {gk: parse_statement(stats.texts.get(TextKey(gk.dbid, q), ""))
           for gk, q in wanted.items()}
    resolved = resolve_tables(conn, sorted({t for s in raw.values() for t in s.tables}))
    tables = sorted(set(resolved.values()))
    shapes = {gk: qualify(s, resolved) for gk, s in raw.items()}
    plans: dict[GroupKey, Mapping[str, Any]] = {}
    for gk, q in list(wanted.items())[: settings.max_explain] if explain else ():
        text = stats.texts.get(TextKey(gk.dbid, q))
        plan = None if not text else explain_generic(
            conn, text, shapes[gk], server_version_num, settings.statement_timeout,
            settings.lock_timeout)
        if plan is not None:
            plans[gk] = plan
    previous = {} if audit_id is None or not plans else audits.previous_plans(
        store, target, [(gk.dbid, gk.fingerprint) for gk in plans], audit_id)
    return PlanAnalysis(shapes=shapes, plans=plans, previous_plans=previous,
                        indexed=frozenset(leading_index_columns(conn, tables)),
                        selective=column_selectivity(conn, tables))


def describe_regressions(
    found: Sequence[Regression], stats: WindowStatistics, plans: PlanAnalysis,
    onsets: Mapping[GroupKey, datetime],
) -> tuple[Regression, ...]:
    """The regressions with their text, tables, current plan and onset (pure)."""
    return tuple(
        replace(r, query=stats.texts.get(TextKey(r.dbid, r.queryid), ""),
                tables=plans.shapes[r.key].tables, plan=plans.plans.get(r.key),
                changed_since=onsets.get(r.key))
        for r in found
    )
