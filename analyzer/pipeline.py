"""One audit as a sequence of steps, each taking values and returning values.

`run_audit` is the only place that wires the steps; it reads top to bottom as the workflow
(docs/architecture.md, "Audit step pipeline"): snapshot → applied / reverted recommendations
seen in its catalog → window statistics → regression detection → plan analysis → clustering →
causes → recommendations (validated on the held target session) → memory (repeats merged,
rejected ones lowered, ineffective ones refused) → verification of applied ones → store, the
last three in one transaction. Every step receives frozen values and returns a frozen value;
none writes into a structure another step reads. A step reads the target or the store at its
edges (first the I/O, then the pure analysis in `analyzer.analysis`), so adding a step is one
new function and one line in `run_audit`.

The audit is recorded as 'running' first (so a crash leaves a trace) and ends either
'succeeded' with all its results written in one transaction, or 'failed' with the error; a
failure never leaves partial results. Regressions and clusters are serialised once, by
`regression_record` and `cluster_record`, for both the report and the store rows.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from analyzer import lifecycle, memory, verify
from analyzer.analysis.causes import Cause, ClusterFacts, attribute, catalog_changes
from analyzer.analysis.clustering import ClusterInput, cluster
from analyzer.analysis.delta import WindowStat, merge_windows, pair_delta, segments, was_reset
from analyzer.analysis.features import (
    StatementShape,
    feature_tokens,
    parse_statement,
    qualify,
    unindexed,
)
from analyzer.analysis.regression import (
    GroupKey,
    GroupStat,
    Regression,
    detect,
    group,
    merge_groups,
)
from analyzer.analysis.summary import format_time, summarize
from analyzer.analysis.windows import (
    WindowRequest,
    Windows,
    candidate_points,
    change_points,
    choose_windows,
)
from analyzer.plans import (
    column_selectivity,
    explain_generic,
    leading_index_columns,
    resolve_tables,
)
from analyzer.recommend import engine
from analyzer.recommend.model import (
    DroppedIndex,
    MeasuredChange,
    RecommendResult,
    StatementEvidence,
)
from analyzer.snapshots import catalog_history, repository
from analyzer.snapshots.catalog import Catalog, TableInfo
from analyzer.snapshots.model import SnapshotMeta, StatementCounters, StatementKey
from analyzer.snapshots.own import register_own
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import SnapshotResult, take_snapshot
from pgarchitect.config import AnalyzerSettings, RegressionSettings, Target
from pgarchitect.db import first_line
from pgarchitect.dsn import Dsn, mask_dsn
from pgarchitect.errors import UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.audit")

StepHook = Callable[[str], None]
# The step names `on_step` is called with, in order; "store.regressions" is half-way through
# the result transaction (tests stop the store there).
STEPS = ("snapshot", "observe", "windows", "regressions", "plans", "cluster", "causes",
         "recommend", "store", "memory", "verify", "store.regressions")

DATABASE_OID = "/* pgarchitect */ SELECT oid FROM pg_database WHERE datname = current_database()"
register_own(DATABASE_OID)


class AuditFailed(UserError):
    """An audit did not complete; it is recorded as failed and nothing partial was kept."""

    exit_code = 1


class AuditBusy(UserError):
    """Another audit of the same target is running."""


# ---------------------------------------------------------------------------------------
# The values the steps hand on
# ---------------------------------------------------------------------------------------

TextKey = tuple[int, int]  # (dbid, queryid)


@dataclass(frozen=True)
class WindowStatistics:
    """Per statement group, its activity in the baseline and the current window."""

    windows: Windows
    baseline: Mapping[GroupKey, GroupStat]
    current: Mapping[GroupKey, GroupStat]
    texts: Mapping[TextKey, str]
    fingerprints: Mapping[TextKey, str]
    # change_point mode: the snapshot each group's current window starts at
    splits: Mapping[GroupKey, SnapshotMeta] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanAnalysis:
    """What the target says about the statements worth a closer look."""

    shapes: Mapping[GroupKey, StatementShape]
    plans: Mapping[GroupKey, Mapping[str, Any]]
    previous_plans: Mapping[tuple[int, str], Mapping[str, Any]]
    indexed: frozenset[str]  # "schema.table.column" leading a valid index
    selective: Mapping[str, bool]  # column -> has enough distinct values to be worth an index


@dataclass(frozen=True)
class Cluster:
    """Regressions with a common cause."""

    cluster_id: int
    members: tuple[int, ...]  # positions in Clustering.regressions
    queryids: tuple[str, ...]
    tables: tuple[str, ...]
    summary: str
    features: Mapping[str, Any] = field(default_factory=dict)
    cause: Cause | None = None


@dataclass(frozen=True)
class Clustering:
    """The regressions with their cluster ids, and the clusters."""

    regressions: tuple[Regression, ...] = ()
    clusters: tuple[Cluster, ...] = ()


@dataclass(frozen=True)
class RecommendationInput:
    """What the recommendation step receives (all frozen)."""

    regressions: tuple[Regression, ...]
    clusters: tuple[Cluster, ...]  # with their causes (a dropped index's definition)
    statistics: WindowStatistics  # per statement group, baseline and current; texts
    plans: PlanAnalysis
    catalog: Catalog  # the target's catalog at this audit's snapshot
    settings: AnalyzerSettings = field(default_factory=AnalyzerSettings)
    server_version_num: int = 0
    observed_since: datetime | None = None  # the target's first snapshot
    # rows written per table over the current window (None: not known, the engine estimates)
    table_writes: Mapping[str, int] | None = None


# The recommendation step: reads the target through the held connection (validation), gets
# everything else as frozen values. The default is the recommend engine (`engine_recommender`);
# tests may pass another.
Recommender = Callable[[psycopg.Connection[Any], RecommendationInput], RecommendResult]


@dataclass(frozen=True)
class Remembered:
    """The recommendations after the memory: report entries proposed (new or merged into a
    pending one, with their ids) and refused or not proposed, each with its reason."""

    proposed: tuple[Mapping[str, Any], ...] = ()
    not_proposed: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class AuditResult:
    """The outcome of one audit; the analyzer service derives its self-metrics from it."""

    audit_id: int
    target: str
    status: str
    server_version: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    snapshot_id: int | None
    snapshot_duration_seconds: float
    statements_analyzed: int
    regressions: tuple[Regression, ...]
    clusters: tuple[Cluster, ...]
    recommendations: tuple[Mapping[str, Any], ...] = ()
    not_proposed: tuple[Mapping[str, Any], ...] = ()
    windows: Mapping[str, Any] = field(default_factory=dict)
    verifications: tuple[Mapping[str, Any], ...] = ()
    validation: Mapping[str, Any] = field(default_factory=dict)
    workload: Mapping[str, float] | None = None  # ms per day before / after the proposed set

    def to_json(self) -> dict[str, Any]:
        """The audit report (docs/report.md); queryids are strings."""
        return {
            "audit_id": str(self.audit_id),
            "target": self.target,
            "server_version": self.server_version,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "statements_analyzed": self.statements_analyzed,
            "windows": dict(self.windows),
            "regressions": [regression_record(r) for r in self.regressions],
            "clusters": [cluster_record(c) for c in self.clusters],
            "recommendations": [dict(r) for r in self.recommendations],
            "not_proposed": [dict(r) for r in self.not_proposed],
            "verifications": [dict(v) for v in self.verifications],
            "validation": dict(self.validation),
            "workload": None if self.workload is None else dict(self.workload),
        }


@dataclass(frozen=True)
class QuickCheck:
    """The outcome of a quick regression check (no plans, no validation, nothing stored)."""

    target: str
    checked_at: datetime
    statements_analyzed: int
    regressions: int
    clusters: int
    windows: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Serialisation: once, for the report and for the store
# ---------------------------------------------------------------------------------------


def regression_record(r: Regression) -> dict[str, Any]:
    """One regression, JSON-ready; the report shows it and the store's row is made from it."""
    return {
        "queryid": str(r.queryid),
        "queryids": [str(q) for q in r.queryids],
        "query": r.query,
        "calls": r.current.calls,
        "baseline_calls": r.baseline.calls,
        "baseline_mean_ms": round(r.baseline.moments.mean, 4),
        "current_mean_ms": round(r.current.moments.mean, 4),
        "baseline_stddev_ms": round(math.sqrt(r.baseline.moments.variance), 4),
        "current_stddev_ms": round(math.sqrt(r.current.moments.variance), 4),
        "ratio": round(r.ratio, 3),
        "p_value": float(f"{r.p_value:.3g}"),
        "changed_since": format_time(r.changed_since),
        "cluster_id": r.cluster_id,
        "tables": list(r.tables),
        "dbid": r.dbid,
        "fingerprint": r.fingerprint,
        "toplevel": r.key[2],
        "plan": None if r.plan is None else dict(r.plan),
    }


def cluster_record(c: Cluster) -> dict[str, Any]:
    """One cluster, JSON-ready; the report shows it and the store's row is made from it."""
    return {"cluster_id": c.cluster_id, "queryids": list(c.queryids), "tables": list(c.tables),
            "summary": c.summary, "cause": None if c.cause is None else c.cause.to_json()}


def windows_record(w: Windows) -> dict[str, Any]:
    """Which snapshots the audit compared."""

    def span(metas: Sequence[SnapshotMeta]) -> dict[str, Any] | None:
        if len(metas) < 2:
            return None
        return {"from_snapshot": metas[0].id, "to_snapshot": metas[-1].id,
                "from": metas[0].taken_at.isoformat(), "to": metas[-1].taken_at.isoformat()}

    return {"mode": w.mode, "baseline": span(w.baseline), "current": span(w.current),
            "note": w.note}


# ---------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------


def window_stats(
    store: repository.Conn, metas: Sequence[SnapshotMeta],
    cache: dict[int, dict[StatementKey, StatementCounters]] | None = None,
) -> dict[StatementKey, WindowStat]:
    """Per-statement activity over a window of snapshots (exact across resets and evictions)."""
    loaded = {} if cache is None else cache
    parts = []
    for a, b in segments(metas):
        for m in (a, b):
            if m.id not in loaded:
                loaded[m.id] = repository.load_counters(store, m.id)
        parts.append(pair_delta(loaded[a.id], loaded[b.id], was_reset(a, b)))
    return merge_windows(parts)


def window_statistics(
    store: repository.Conn, target: str, settings: RegressionSettings,
    request: WindowRequest | None,
) -> WindowStatistics:
    """Choose the windows among the stored snapshots and sum each statement group's calls."""
    windows = choose_windows(repository.list_snapshots(store, target), settings, request)
    cache: dict[int, dict[StatementKey, StatementCounters]] = {}
    if windows.mode == "change_point":
        return _change_point_statistics(store, target, windows, settings, cache)
    base_window = window_stats(store, windows.baseline, cache) if windows.baseline else {}
    cur_window = window_stats(store, windows.current, cache)
    keys = {(k[0], k[2]) for k in (*base_window, *cur_window)}
    stored = repository.load_texts(store, target, keys)
    fingerprints = {k: t.fingerprint for k, t in stored.items()}
    return WindowStatistics(
        windows=windows,
        baseline=group(base_window, fingerprints),
        current=group(cur_window, fingerprints),
        texts={k: t.query for k, t in stored.items()},
        fingerprints=fingerprints,
    )


def _change_point_statistics(
    store: repository.Conn, target: str, windows: Windows, settings: RegressionSettings,
    cache: dict[int, dict[StatementKey, StatementCounters]],
) -> WindowStatistics:
    """Each statement group split at its own change point (short history)."""
    metas = windows.current
    points = candidate_points(len(metas))
    raw = [window_stats(store, metas[a: b + 1], cache) for a, b in itertools.pairwise(points)]
    keys = {(k[0], k[2]) for part in raw for k in part}
    stored = repository.load_texts(store, target, keys)
    fingerprints = {k: t.fingerprint for k, t in stored.items()}
    parts = [group(part, fingerprints) for part in raw]
    splits = change_points(parts, settings.min_calls)
    # A group with too few calls for any split is still analysed: its whole history is current.
    whole = {gk: merge_groups([p[gk] for p in parts if gk in p])
             for gk in {gk for p in parts for gk in p} - splits.keys()}
    return WindowStatistics(
        windows=windows,
        baseline={gk: sp.baseline for gk, sp in splits.items()},
        current={**whole, **{gk: sp.current for gk, sp in splits.items()}},
        texts={k: t.query for k, t in stored.items()},
        fingerprints=fingerprints,
        splits={gk: metas[points[sp.boundary]] for gk, sp in splits.items()},
    )


def detect_regressions(stats: WindowStatistics, settings: RegressionSettings
                       ) -> tuple[Regression, ...]:
    """The statement groups that got significantly slower (pure)."""
    return tuple(detect(stats.baseline, stats.current, settings))


def regression_onsets(
    store: repository.Conn, stats: WindowStatistics, found: Sequence[Regression],
    settings: RegressionSettings,
) -> dict[GroupKey, datetime]:
    """When each regressed group's per-call time first crossed the thresholds."""
    if not found:
        return {}
    if stats.splits:  # change points: the current window starts where the change began
        return {r.key: stats.splits[r.key].taken_at for r in found if r.key in stats.splits}
    metas = stats.windows.current
    queryids = {q for r in found for q in r.queryids}
    rows = repository.load_series(store, metas, queryids)
    baseline = {r.key: r.baseline.moments.mean for r in found}
    onsets: dict[GroupKey, datetime] = {}
    for i in range(len(metas) - 1):
        part = pair_delta(rows[i], rows[i + 1], was_reset(metas[i], metas[i + 1]))
        for gk, stat in group(part, stats.fingerprints).items():
            if gk in onsets or gk not in baseline:
                continue
            mean = stat.stat.moments.mean
            if (mean >= baseline[gk] * settings.min_ratio
                    and mean - baseline[gk] >= settings.min_delta_ms):
                onsets[gk] = metas[i].taken_at
    return onsets


def analyze_plans(
    conn: psycopg.Connection[Any], store: repository.Conn, target: str, audit_id: int | None,
    stats: WindowStatistics, found: Sequence[Regression], settings: AnalyzerSettings,
    server_version_num: int, explain: bool = True,
) -> PlanAnalysis:
    """Parse the regressed and the costliest statements; ask the target about their tables and,
    when `explain`, for their generic plans; fetch the plans earlier audits stored."""
    top = sorted(stats.current.values(), key=lambda g: -g.stat.moments.total)
    wanted: dict[GroupKey, int] = {r.key: r.queryid for r in found}
    for g in top[: settings.plan_top_n] if explain else ():
        wanted.setdefault(g.key, g.queryids[0])
    raw = {gk: parse_statement(stats.texts.get((gk[0], q), "")) for gk, q in wanted.items()}
    resolved = resolve_tables(conn, sorted({t for s in raw.values() for t in s.tables}))
    tables = sorted(set(resolved.values()))
    shapes = {gk: qualify(s, resolved) for gk, s in raw.items()}
    plans: dict[GroupKey, Mapping[str, Any]] = {}
    for gk, q in list(wanted.items())[: settings.max_explain] if explain else ():
        text = stats.texts.get((gk[0], q))
        plan = None if not text else explain_generic(
            conn, text, shapes[gk], server_version_num, settings.statement_timeout,
            settings.lock_timeout)
        if plan is not None:
            plans[gk] = plan
    previous = {} if audit_id is None or not plans else repository.previous_plans(
        store, target, [(gk[0], gk[1]) for gk in plans], audit_id)
    return PlanAnalysis(shapes=shapes, plans=plans, previous_plans=previous,
                        indexed=frozenset(leading_index_columns(conn, tables)),
                        selective=column_selectivity(conn, tables))


def describe_regressions(
    found: Sequence[Regression], stats: WindowStatistics, plans: PlanAnalysis,
    onsets: Mapping[GroupKey, datetime],
) -> tuple[Regression, ...]:
    """The regressions with their text, tables, current plan and onset (pure)."""
    return tuple(
        replace(r, query=stats.texts.get((r.dbid, r.queryid), ""),
                tables=plans.shapes[r.key].tables, plan=plans.plans.get(r.key),
                changed_since=onsets.get(r.key))
        for r in found
    )


def cluster_regressions(
    regressions: Sequence[Regression], plans: PlanAnalysis, windows: Windows, distance: float,
) -> Clustering:
    """Group the regressions by cause and write each cluster's summary (pure)."""
    if not regressions:
        return Clustering()
    span = windows.current_span
    items = []
    for r in regressions:
        onset = 1.0
        if span is not None and r.changed_since is not None:
            width = (span[1] - span[0]).total_seconds()
            onset = (r.changed_since - span[0]).total_seconds() / width if width > 0 else 0.0
        shape = plans.shapes[r.key]
        items.append(ClusterInput(
            key=f"{r.dbid}:{r.fingerprint}:{int(r.key[2])}",
            tokens=feature_tokens(shape.tables, shape.columns, r.plan,
                                  unindexed(shape.columns, shape.tables, set(plans.indexed),
                                            plans.selective)),
            onset=onset,
            ratio=r.ratio if math.isfinite(r.ratio) else 1e6,
        ))
    labels = cluster(items, distance)
    labelled = tuple(replace(r, cluster_id=lab)
                     for r, lab in zip(regressions, labels, strict=True))
    clusters = []
    for cid in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == cid]
        members = [labelled[i] for i in idx]
        c = Cluster(
            cluster_id=cid, members=tuple(idx),
            queryids=tuple(str(q) for m in members for q in m.queryids),
            tables=tuple(sorted({t for m in members for t in m.tables})),
            summary="", features={"tokens": [dict(items[i].tokens) for i in idx]},
        )
        clusters.append(replace(c, summary=_summary(c, labelled, plans)))
    return Clustering(labelled, tuple(clusters))


def _summary(c: Cluster, regressions: Sequence[Regression], plans: PlanAnalysis) -> str:
    members = [regressions[i] for i in c.members]
    tokens = c.features.get("tokens", [])
    return summarize(members, {n: plans.shapes[m.key].columns for n, m in enumerate(members)},
                     plans.previous_plans,
                     {n: tokens[n].get("unindexed", ()) for n in range(len(tokens))},
                     None if c.cause is None else c.cause.phrase())


def attribute_causes(
    store: repository.Conn, target: str, stats: WindowStatistics, clustering: Clustering,
    plans: PlanAnalysis, catalog: Catalog,
) -> Clustering:
    """Each cluster's cause from the catalog changes near its onset, said in its summary."""
    if not clustering.clusters:
        return clustering
    metas = sorted({*stats.windows.baseline, *stats.windows.current},
                   key=lambda m: (m.taken_at, m.id))
    history = catalog_history.history(store, target, metas[0].taken_at if metas else None)
    facts = []
    for c in clustering.clusters:
        members = [clustering.regressions[i] for i in c.members]
        onsets = [m.changed_since for m in members if m.changed_since is not None]
        facts.append(ClusterFacts(
            tables=c.tables,
            columns=tuple(sorted({col for m in members for col in plans.shapes[m.key].columns})),
            onset=min(onsets) if onsets else None, size=len(members)))
    causes = attribute(facts, catalog_changes(history), [m.taken_at for m in metas], catalog)
    clusters = tuple(replace(c, cause=cause) for c, cause in
                     zip(clustering.clusters, causes, strict=True))
    return replace(clustering, clusters=tuple(
        replace(c, summary=_summary(c, clustering.regressions, plans)) for c in clusters))


def observe_applied(store: repository.Conn, target: str, snap: SnapshotResult
                    ) -> tuple[lifecycle.Change, ...]:
    """Recommendations applied or reverted on the target, as this snapshot's catalog shows;
    recorded at the snapshot's time (its own transaction: it is part of the snapshot)."""
    valid = {i.qualified_name: i.definition for i in snap.catalog.indexes if i.valid}
    with store.transaction():
        changes = verify.observe_catalog(store, target, valid, at=snap.snapshot.taken_at)
    return tuple(changes)


def recommendation_input(
    store: repository.Conn, target: str, clustering: Clustering, stats: WindowStatistics,
    plans: PlanAnalysis, snap: SnapshotResult, settings: AnalyzerSettings,
) -> RecommendationInput:
    """Everything the recommendation step needs, frozen."""
    first = repository.list_snapshots(store, target)
    start = stats.windows.current[0].taken_at if stats.windows.current else None
    return RecommendationInput(
        clustering.regressions, clustering.clusters, stats, plans, snap.catalog, settings,
        snap.server_version_num, first[0].taken_at if first else None,
        window_writes(catalog_history.history(store, target, start), start, snap.catalog))


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
        text = stats.texts.get((g.key[0], g.queryids[0]))
        if not text or (dbid is not None and g.key[0] != dbid) or g.stat.calls <= 0:
            continue
        if g.key not in regressed and len(out) >= inputs.settings.max_explain:
            break
        out.append(StatementEvidence.of_group(g, text, regressed=g.key in regressed))
    return tuple(out)


def dropped_indexes(clusters: Sequence[Cluster], regressions: Sequence[Regression] = ()
                    ) -> tuple[DroppedIndex, ...]:
    """The indexes whose drop a cluster was attributed to, to be proposed back, with the
    cluster's measured change (the evidence that carries them)."""
    return tuple(
        DroppedIndex(c.cause.object, c.cause.table or (c.tables[0] if c.tables else ""),
                     c.cause.definition, tuple(int(q) for q in c.queryids),
                     tuple(MeasuredChange(r.queryids, r.baseline.moments.mean,
                                          r.current.moments.mean, r.current.calls, r.p_value)
                           for i, r in enumerate(regressions) if i in c.members))
        for c in clusters
        if c.cause is not None and c.cause.kind == "index_dropped" and c.cause.definition)


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


def recommend(recommender: Recommender, conn: psycopg.Connection[Any],
              inputs: RecommendationInput) -> RecommendResult:
    """Candidate generation and validation on the held target session."""
    return recommender(conn, inputs)


def remember_recommendations(
    store: repository.Conn, target: str, found: RecommendResult, embedder: memory.Embedder,
    settings: AnalyzerSettings, audit_id: int,
) -> Remembered:
    """Each proposal through the memory rules (inside the result transaction): new ones
    stored, repeats merged, rejected repeats lowered, ineffective or applied ones refused."""
    proposed: list[Mapping[str, Any]] = []
    refused: list[Mapping[str, Any]] = [n.to_json() for n in found.not_proposed]
    for rec in found.proposed:
        outcome = memory.remember(store, target, rec, embedder=embedder,
                                  settings=settings, audit_id=audit_id)
        if outcome.proposed:
            proposed.append({**rec.to_json(), **outcome.to_json()})
        else:
            refused.append({"queryids": list(rec.queryids), "validated_by": rec.validated_by,
                            **outcome.to_json()})
    return Remembered(tuple(proposed), tuple(refused))


def verify_applied(store: repository.Conn, target: str, settings: AnalyzerSettings,
                   embedder: memory.Embedder, audit_id: int) -> verify.VerifyResult:
    """Measure the applied recommendations (inside the result transaction)."""
    return verify.verify(store, target, settings, embedder=embedder, audit_id=audit_id)


def validation_record(found: RecommendResult) -> dict[str, Any]:
    """How the audit's index candidates were checked."""
    return {"method": found.method, "validations": found.validations, "plans": found.plans,
            "seconds": round(found.validation_seconds, 3)}


def store_audit(
    store: repository.Conn, result: AuditResult, plans: PlanAnalysis,
    on_step: StepHook | None = None,
) -> None:
    """Everything the audit found, in one transaction (a savepoint of the caller's)."""
    report = result.to_json()
    with store.transaction():
        repository.insert_regressions(store, result.audit_id, report["regressions"])
        _step(on_step, "store.regressions")  # half-way through the one transaction
        repository.insert_clusters(store, result.audit_id, [
            {**record, "features": dict(c.features)}
            for c, record in zip(result.clusters, report["clusters"], strict=True)])
        repository.insert_plans(store, result.target, result.audit_id,
                                {(gk[0], gk[1]): p for gk, p in plans.plans.items()})
        repository.finish_audit(store, result.audit_id, {
            "finished_at": result.finished_at, "duration": result.duration_seconds,
            "server_version": result.server_version, "snapshot_id": result.snapshot_id,
            "statements_analyzed": result.statements_analyzed,
            "regressions": len(result.regressions), "clusters": len(result.clusters),
            "recommendations": len(result.recommendations), "report": report,
        })


# ---------------------------------------------------------------------------------------
# The workflows
# ---------------------------------------------------------------------------------------


def _step(hook: StepHook | None, name: str) -> None:
    log.debug(event("audit.step", step=name))
    if hook is not None:
        hook(name)


@dataclass(frozen=True)
class _Run:
    audit_id: int
    started_at: datetime
    started: float  # perf_counter at the start

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def run_audit(
    settings: AnalyzerSettings,
    target: Target,
    store_dsn: Dsn,
    request: WindowRequest | None = None,
    on_step: StepHook | None = None,
    recommender: Recommender = engine_recommender,
    audit_id: int | None = None,
    requested_by: str = "cli",
    embedder: memory.Embedder | None = None,
) -> AuditResult:
    """Run one audit of `target` and record it in the store; AuditFailed when it fails.

    `audit_id` names an audit queued earlier (the analyzer service's requested audits);
    `embedder` defaults to the one `analyzer.embedder` names.
    """
    rs = settings.regression
    embedder = embedder or memory.load_embedder(settings.embedder)
    with _store_session(store_dsn, settings) as store, \
            _recorded_audit(store, store_dsn, target.name, settings, request,
                            audit_id, requested_by) as run, \
            connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        _step(on_step, "snapshot")
        snap = take_snapshot(StatementSource(tconn, settings.all_databases), store,
                             target.name, settings.retention,
                             repository.StatementWriter.for_settings(settings))

        # Recommended indexes that appeared (or went) since the last snapshot: applied / reverted.
        _step(on_step, "observe")
        observe_applied(store, target.name, snap)

        _step(on_step, "windows")
        stats = window_statistics(store, target.name, rs, request)

        _step(on_step, "regressions")
        found = detect_regressions(stats, rs)

        _step(on_step, "plans")
        plans = analyze_plans(tconn, store, target.name, run.audit_id, stats, found, settings,
                              snap.server_version_num)
        onsets = regression_onsets(store, stats, found, rs)
        regressions = describe_regressions(found, stats, plans, onsets)

        _step(on_step, "cluster")
        clustering = cluster_regressions(regressions, plans, stats.windows,
                                         settings.cluster_distance)

        _step(on_step, "causes")
        caused = attribute_causes(store, target.name, stats, clustering, plans, snap.catalog)

        # Recommendations: candidates from the regressions, the clusters' causes (a dropped
        # index proposed back) and the catalog, validated on the held target session.
        _step(on_step, "recommend")
        candidates = recommend(recommender, tconn, recommendation_input(
            store, target.name, caused, stats, plans, snap, settings))

        # Memory, verification and the results: one transaction, all or nothing.
        _step(on_step, "store")
        with store.transaction():
            _step(on_step, "memory")
            remembered = remember_recommendations(store, target.name, candidates, embedder,
                                                  settings, run.audit_id)

            _step(on_step, "verify")
            verified = verify_applied(store, target.name, settings, embedder, run.audit_id)

            result = AuditResult(
                audit_id=run.audit_id, target=target.name, status="succeeded",
                server_version=snap.server_version, started_at=run.started_at,
                finished_at=datetime.now(UTC), duration_seconds=run.elapsed(),
                snapshot_id=snap.snapshot.id, snapshot_duration_seconds=snap.duration_seconds,
                statements_analyzed=len(stats.current), regressions=caused.regressions,
                clusters=caused.clusters,
                recommendations=remembered.proposed + tuple(
                    r.to_json() for r in verified.reverts if r.proposed),
                not_proposed=remembered.not_proposed, windows=windows_record(stats.windows),
                verifications=tuple(v.to_json() for v in verified.verifications),
                validation=validation_record(candidates), workload=candidates.workload,
            )
            store_audit(store, result, plans, on_step)
    log.info(event("audit.finished", target=target.name, audit_id=result.audit_id,
                   regressions=len(result.regressions), clusters=len(result.clusters),
                   recommendations=len(result.recommendations),
                   verifications=len(result.verifications),
                   seconds=round(result.duration_seconds, 2)))
    return result


def run_quick_check(settings: AnalyzerSettings, target: Target, store_dsn: Dsn) -> QuickCheck:
    """Windows, detection and clustering over the stored snapshots: no snapshot, no plans,
    no validation, nothing stored (the analyzer service runs it after every snapshot)."""
    with _store_session(store_dsn, settings) as store, \
            connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        return quick_check(store, tconn, target.name, settings)


def quick_check(store: repository.Conn, tconn: psycopg.Connection[Any], target: str,
                settings: AnalyzerSettings) -> QuickCheck:
    """`run_quick_check` on sessions the caller holds (the service holds the target lock)."""
    rs = settings.regression
    stats = window_statistics(store, target, rs, None)
    found = detect_regressions(stats, rs)
    plans = analyze_plans(tconn, store, target, None, stats, found, settings, 0,
                          explain=False)
    onsets = regression_onsets(store, stats, found, rs)
    regressions = describe_regressions(found, stats, plans, onsets)
    clustering = cluster_regressions(regressions, plans, stats.windows,
                                     settings.cluster_distance)
    return QuickCheck(target=target, checked_at=datetime.now(UTC),
                      statements_analyzed=len(stats.current),
                      regressions=len(clustering.regressions),
                      clusters=len(clustering.clusters), windows=windows_record(stats.windows))


@contextlib.contextmanager
def _store_session(store_dsn: Dsn, settings: AnalyzerSettings) -> Iterator[repository.Conn]:
    store = memory.connect_store(store_dsn, settings.connect_timeout)
    try:
        yield store
    finally:
        with contextlib.suppress(psycopg.Error):
            store.close()


@contextlib.contextmanager
def _recorded_audit(
    store: repository.Conn, store_dsn: Dsn, target: str, settings: AnalyzerSettings,
    request: WindowRequest | None, queued_id: int | None = None, requested_by: str = "cli",
) -> Iterator[_Run]:
    """Hold the target's audit lock, record the audit as running, and as failed on error."""
    lock_key = zlib.crc32(target.encode()) - 2**31  # int4 range
    row = store.execute("/* pgarchitect */ SELECT pg_try_advisory_lock(%s, %s)",
                        (0x70676172, lock_key)).fetchone()
    if not row or not row[0]:
        raise AuditBusy(f"an audit of target {target!r} is already running")
    repository.abandon_running(store, target)
    if request is not None:
        # A mistyped snapshot id is the operator's error, not a failed audit.
        choose_windows(repository.list_snapshots(store, target), settings.regression, request)
    audit_id, started_at = repository.start_audit(store, target, queued_id, requested_by)
    run = _Run(audit_id, started_at, time.perf_counter())
    log.info(event("audit.started", target=target, audit_id=audit_id))
    try:
        yield run
    except Exception as exc:
        reason = first_line(exc) if isinstance(exc, psycopg.Error) else mask_dsn(str(exc))
        reason = reason or type(exc).__name__
        _record_failure(store, store_dsn, audit_id, reason, run.elapsed(), settings)
        log.error(event("audit.failed", target=target, audit_id=audit_id, error=reason))
        raise AuditFailed(f"audit {audit_id} of {target} failed: {reason}") from exc


def _record_failure(store: repository.Conn, store_dsn: Dsn, audit_id: int, reason: str,
                    duration: float, settings: AnalyzerSettings) -> None:
    """Mark the audit failed; through a new session when the old one is gone."""
    for attempt in range(2):
        try:
            conn = store if attempt == 0 and not store.closed and not store.broken else (
                repository.connect_store(store_dsn, settings.connect_timeout))
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            repository.fail_audit(conn, audit_id, reason, duration)
            if conn is not store:
                conn.close()
            return
        except (psycopg.Error, UserError) as exc:
            log.warning(event("audit.record_failure_failed", audit_id=audit_id,
                              attempt=attempt + 1, error=first_line(exc)))
