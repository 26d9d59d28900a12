"""Steps: the recommendation input and the recommendation step (the engine by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg

from analyzer.analysis.regression import Regression
from analyzer.audit.values import (
    Cluster,
    Clustering,
    PlanAnalysis,
    RecommendationInput,
    WindowStatistics,
)
from analyzer.recommend import engine
from analyzer.recommend.model import (
    DroppedIndex,
    MeasuredChange,
    RecommendResult,
    StatementEvidence,
)
from analyzer.snapshots.catalog import Catalog, TableInfo
from analyzer.snapshots.model import SnapshotMeta, TextKey
from analyzer.snapshots.own import register_own
from analyzer.snapshots.take import SnapshotResult
from analyzer.store.catalogs import CatalogHistory
from analyzer.vocabulary import CauseKind
from pgarchitect.config import AnalyzerSettings

DATABASE_OID = "/* pgarchitect */ SELECT oid FROM pg_database WHERE datname = current_database()"
register_own(DATABASE_OID)


def recommendation_input(
    clustering: Clustering, stats: WindowStatistics, plans: PlanAnalysis, snap: SnapshotResult,
    settings: AnalyzerSettings, stored: Sequence[SnapshotMeta], history: CatalogHistory,
) -> RecommendationInput:
    """Everything the recommendation step needs, frozen (pure: `stored` is the target's
    snapshot list, `history` its catalogs since the analysed windows began)."""
    start = stats.windows.current[0].taken_at if stats.windows.current else None
    return RecommendationInput(
        clustering.regressions, clustering.clusters, stats, plans, snap.catalog, settings,
        snap.server_version_num, stored[0].taken_at if stored else None,
        window_writes(history, start, snap.catalog))


def _written(t: TableInfo) -> int:
    return t.inserts + max(t.updates - t.hot_updates, 0) + t.deletes


def window_writes(history: Sequence[tuple[datetime, Catalog]], start: datetime | None,
                  now: Catalog) -> dict[str, int] | None:
    """Rows written per table since the window's start (pure).

    Catalogs are stored when their structure changes, so the counters at the start are the
    last stored catalog's at or before it (or the first one after): the writes counted may
    reach further back than the window, never less far — an index looks costlier, not
    cheaper. A counter that went down (statistics reset) counts from zero.
    """
    if not history:
        return None
    before = [c for at, c in history if start is None or at <= start]
    base = before[-1] if before else history[0][1]
    out = {}
    for t in now.tables:
        then = base.table(t.qualified)
        written = _written(t) - (_written(then) if then is not None else 0)
        out[t.qualified] = written if written >= 0 else _written(t)
    return out


def statement_evidence(inputs: RecommendationInput, dbid: int | None
                       ) -> tuple[StatementEvidence, ...]:
    """Every regressed group of one database, then the costliest others while the whole is
    under `max_explain` (validation has its own bound, `validation.max_candidates`)."""
    stats = inputs.statistics
    regressed = {r.key for r in inputs.regressions}
    groups = sorted(stats.current.values(),
                    key=lambda g: (g.key not in regressed, -g.stat.moments.total))
    out: list[StatementEvidence] = []
    for g in groups:
        text = stats.texts.get(TextKey(g.key.dbid, g.queryids[0]))
        if not text or (dbid is not None and g.key.dbid != dbid) or g.stat.calls <= 0:
            continue
        if g.key not in regressed and len(out) >= inputs.settings.max_explain:
            break
        out.append(StatementEvidence.of_group(g, text, regressed=g.key in regressed))
    return tuple(out)


def dropped_indexes(clusters: Sequence[Cluster], regressions: Sequence[Regression] = ()
                    ) -> tuple[DroppedIndex, ...]:
    """The indexes whose drop a cluster was attributed to, to be proposed back, with the
    clusters' measured changes (the evidence that carries them): one per index, however many
    clusters name it (its statements and regressions joined), so it is proposed once."""
    found: dict[str, DroppedIndex] = {}
    for c in clusters:
        if c.cause is None or c.cause.kind != CauseKind.INDEX_DROPPED or not c.cause.definition:
            continue
        measured = tuple(MeasuredChange(r.queryids, r.baseline.moments.mean,
                                        r.current.moments.mean, r.current.calls, r.p_value)
                         for i, r in enumerate(regressions) if i in c.members)
        queryids = tuple(int(q) for q in c.queryids)
        old = found.get(c.cause.object)
        if old is None:
            found[c.cause.object] = DroppedIndex(
                c.cause.object, c.cause.table or (c.tables[0] if c.tables else ""),
                c.cause.definition, queryids, measured)
        else:
            found[c.cause.object] = replace(
                old, queryids=tuple(dict.fromkeys(old.queryids + queryids)),
                measured=old.measured + measured)
    return tuple(found.values())


def engine_recommender(conn: psycopg.Connection[Any], inputs: RecommendationInput
                       ) -> RecommendResult:
    """The default recommendation step: the recommend engine, validating on `conn` as
    `analyzer.validation` says (docs/analyzer.md, "Recommendations")."""
    row = conn.execute(DATABASE_OID, prepare=False).fetchone()
    dbid = int(row[0]) if row else None
    span = inputs.statistics.windows.current_span
    return engine.recommend(
        conn, statement_evidence(inputs, dbid), inputs.catalog,
        dropped_indexes(inputs.clusters, inputs.regressions), inputs.settings,
        inputs.server_version_num, observed_since=inputs.observed_since,
        table_writes=inputs.table_writes,
        window_seconds=(span[1] - span[0]).total_seconds() if span else None)


