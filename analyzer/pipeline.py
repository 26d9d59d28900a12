"""One audit, step by step (SPEC 5.4): snapshot, window statistics, regression detection,
features and plans, clustering, then everything stored in one transaction.

The audit is recorded as 'running' first (so a crash leaves a trace) and ends either
'succeeded' with all its regressions and clusters written at once, or 'failed' with the error;
a failure never leaves partial results. The recommendation step (a later issue) plugs in
between clustering and storing: it receives the AuditContext and returns recommendation dicts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from analyzer.analysis.clustering import ClusterInput, cluster
from analyzer.analysis.delta import WindowStat, merge_windows, pair_delta, segments, was_reset
from analyzer.analysis.features import (
    StatementShape,
    feature_tokens,
    parse_statement,
    qualify,
    unindexed,
)
from analyzer.analysis.regression import GroupKey, GroupStat, Regression, detect, group
from analyzer.analysis.summary import format_time, summarize
from analyzer.analysis.windows import WindowRequest, Windows, choose_windows
from analyzer.plans import (
    column_selectivity,
    explain_generic,
    leading_index_columns,
    resolve_tables,
)
from analyzer.snapshots import repository
from analyzer.snapshots.model import SnapshotMeta, StatementCounters, StatementKey
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import SnapshotResult, take_snapshot
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.db import first_line
from pgarchitect.dsn import Dsn, mask_dsn
from pgarchitect.errors import UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.audit")

StepHook = Callable[[str], None]
Recommender = Callable[["AuditContext"], list[dict[str, Any]]]
STEPS = ("snapshot", "windows", "statistics", "regressions", "features", "cluster",
         "recommend", "store", "store.regressions")


class AuditFailed(UserError):
    """An audit did not complete; it is recorded as failed and nothing partial was kept."""

    exit_code = 1


class AuditBusy(UserError):
    """Another audit of the same target is running."""


@dataclass(frozen=True)
class Cluster:
    """Regressions with a common cause."""

    cluster_id: int
    members: tuple[int, ...]  # positions in AuditResult.regressions
    queryids: tuple[str, ...]
    tables: tuple[str, ...]
    summary: str
    features: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class AuditContext:
    """What the steps hand to each other (and to the recommendation step)."""

    settings: AnalyzerSettings
    target: str
    audit_id: int
    target_conn: psycopg.Connection[Any]
    store: repository.Conn
    snapshot: SnapshotResult | None = None
    windows: Windows | None = None
    baseline: dict[GroupKey, GroupStat] = field(default_factory=dict)
    current: dict[GroupKey, GroupStat] = field(default_factory=dict)
    texts: dict[tuple[int, int], str] = field(default_factory=dict)
    fingerprints: dict[tuple[int, int], str] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)
    shapes: dict[GroupKey, StatementShape] = field(default_factory=dict)
    plans: dict[GroupKey, dict[str, Any]] = field(default_factory=dict)
    previous_plans: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    indexed: set[str] = field(default_factory=set)  # "schema.table.column" leading an index
    selective: dict[str, bool] = field(default_factory=dict)  # column -> worth an index
    clusters: list[Cluster] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    on_step: StepHook | None = None


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
    recommendations: tuple[dict[str, Any], ...] = ()
    windows: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report of SPEC section 6 (queryids as strings)."""
        return {
            "audit_id": str(self.audit_id),
            "target": self.target,
            "server_version": self.server_version,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "statements_analyzed": self.statements_analyzed,
            "windows": dict(self.windows),
            "regressions": [regression_json(r) for r in self.regressions],
            "clusters": [
                {"cluster_id": c.cluster_id, "queryids": list(c.queryids),
                 "tables": list(c.tables), "summary": c.summary}
                for c in self.clusters
            ],
            "recommendations": list(self.recommendations),
        }


def regression_json(r: Regression) -> dict[str, Any]:
    """One regression as in SPEC section 6, plus the group's other queryids and timing."""
    return {
        "queryid": str(r.queryid),
        "queryids": [str(q) for q in r.queryids],
        "query": r.query,
        "calls": r.current.calls,
        "baseline_calls": r.baseline.calls,
        "baseline_mean_ms": round(r.baseline.moments.mean, 4),
        "current_mean_ms": round(r.current.moments.mean, 4),
        "ratio": round(r.ratio, 3),
        "p_value": float(f"{r.p_value:.3g}"),
        "cluster_id": r.cluster_id,
        "tables": list(r.tables),
        "changed_since": format_time(r.changed_since),
    }


def _step(hook: StepHook | None, name: str) -> None:
    log.debug(event("audit.step", step=name))
    if hook is not None:
        hook(name)


def window_stats(
    store: repository.Conn, metas: Sequence[SnapshotMeta],
    cache: dict[int, dict[StatementKey, StatementCounters]],
) -> dict[StatementKey, WindowStat]:
    """Per-statement activity over a window of snapshots (exact across resets and evictions)."""
    parts = []
    for a, b in segments(metas):
        for m in (a, b):
            if m.id not in cache:
                cache[m.id] = repository.load_counters(store, m.id)
        parts.append(pair_delta(cache[a.id], cache[b.id], was_reset(a, b)))
    return merge_windows(parts)


def _onsets(
    ctx: AuditContext, members: Mapping[GroupKey, set[int]]
) -> dict[GroupKey, datetime]:
    """When each regressed group's per-call time first crossed the thresholds."""
    assert ctx.windows is not None
    rs = ctx.settings.regression
    metas = ctx.windows.current
    queryids = {q for qs in members.values() for q in qs}
    rows = repository.load_series(ctx.store, metas, queryids)
    baseline = {r.key: r.baseline.moments.mean for r in ctx.regressions}
    found: dict[GroupKey, datetime] = {}
    for i in range(len(metas) - 1):
        part = pair_delta(rows[i], rows[i + 1], was_reset(metas[i], metas[i + 1]))
        for gk, stat in group(part, ctx.fingerprints).items():
            if gk in found or gk not in baseline:
                continue
            mean = stat.stat.moments.mean
            if mean >= baseline[gk] * rs.min_ratio and mean - baseline[gk] >= rs.min_delta_ms:
                found[gk] = metas[i].taken_at
    return found


def run_audit(
    settings: AnalyzerSettings,
    target: Target,
    store_dsn: Dsn,
    request: WindowRequest | None = None,
    on_step: StepHook | None = None,
    recommender: Recommender | None = None,
) -> AuditResult:
    """Run one audit of `target` and record it in the store; AuditFailed when it fails."""
    store = repository.connect_store(store_dsn, settings.connect_timeout)
    lock_key = zlib.crc32(target.name.encode()) - 2**31  # int4 range
    try:
        row = store.execute("/* pgarchitect */ SELECT pg_try_advisory_lock(%s, %s)",
                            (0x70676172, lock_key)).fetchone()
        if not row or not row[0]:
            raise AuditBusy(f"an audit of target {target.name!r} is already running")
        repository.abandon_running(store, target.name)
        if request is not None:
            # A mistyped snapshot id is the operator's error, not a failed audit.
            choose_windows(repository.list_snapshots(store, target.name),
                           settings.regression, request)
        audit_id, started_at = repository.start_audit(store, target.name)
        started = time.perf_counter()
        log.info(event("audit.started", target=target.name, audit_id=audit_id))
        try:
            result = _run_steps(settings, target, store, audit_id, started_at, started,
                                request, on_step, recommender)
        except Exception as exc:
            duration = time.perf_counter() - started
            reason = first_line(exc) if isinstance(exc, psycopg.Error) else mask_dsn(str(exc))
            reason = reason or type(exc).__name__
            _record_failure(store, store_dsn, audit_id, reason, duration, settings)
            log.error(event("audit.failed", target=target.name, audit_id=audit_id,
                            error=reason))
            raise AuditFailed(f"audit {audit_id} of {target.name} failed: {reason}") from exc
        log.info(event("audit.finished", target=target.name, audit_id=audit_id,
                       regressions=len(result.regressions), clusters=len(result.clusters),
                       seconds=round(result.duration_seconds, 2)))
        return result
    finally:
        with contextlib.suppress(psycopg.Error):
            store.close()


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


def _run_steps(
    settings: AnalyzerSettings, target: Target, store: repository.Conn, audit_id: int,
    started_at: datetime, started: float, request: WindowRequest | None,
    on_step: StepHook | None, recommender: Recommender | None,
) -> AuditResult:
    rs = settings.regression
    with connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        ctx = AuditContext(settings, target.name, audit_id, tconn, store, on_step=on_step)
        source = StatementSource(tconn, settings.all_databases)

        _step(on_step, "snapshot")
        ctx.snapshot = snap = take_snapshot(source, store, target.name, settings.retention,
                                            repository.StatementWriter.for_settings(settings))

        _step(on_step, "windows")
        ctx.windows = windows = choose_windows(repository.list_snapshots(store, target.name),
                                               rs, request)

        _step(on_step, "statistics")
        cache: dict[int, dict[StatementKey, StatementCounters]] = {}
        base_window = window_stats(store, windows.baseline, cache)
        cur_window = window_stats(store, windows.current, cache)
        keys = {(k[0], k[2]) for k in (*base_window, *cur_window)}
        stored = repository.load_texts(store, target.name, keys)
        ctx.fingerprints = {k: t.fingerprint for k, t in stored.items()}
        ctx.texts = {k: t.query for k, t in stored.items()}
        ctx.baseline = group(base_window, ctx.fingerprints)
        ctx.current = group(cur_window, ctx.fingerprints)

        _step(on_step, "regressions")
        ctx.regressions = detect(ctx.baseline, ctx.current, rs)

        _step(on_step, "features")
        _features(ctx, snap.server_version_num)

        _step(on_step, "cluster")
        _cluster(ctx)

        _step(on_step, "recommend")
        if recommender is not None:
            ctx.recommendations = recommender(ctx)

        _step(on_step, "store")
        finished_at = datetime.now(UTC)
        span = windows.current_span
        base_span = (windows.baseline[0], windows.baseline[-1]) if len(
            windows.baseline) > 1 else None
        result = AuditResult(
            audit_id=audit_id, target=target.name, status="succeeded",
            server_version=snap.server_version, started_at=started_at,
            finished_at=finished_at, duration_seconds=time.perf_counter() - started,
            snapshot_id=snap.snapshot.id, snapshot_duration_seconds=snap.duration_seconds,
            statements_analyzed=len(ctx.current), regressions=tuple(ctx.regressions),
            clusters=tuple(ctx.clusters), recommendations=tuple(ctx.recommendations),
            windows={
                "baseline": None if base_span is None else {
                    "from_snapshot": base_span[0].id, "to_snapshot": base_span[1].id,
                    "from": base_span[0].taken_at.isoformat(),
                    "to": base_span[1].taken_at.isoformat()},
                "current": None if span is None else {
                    "from_snapshot": windows.current[0].id,
                    "to_snapshot": windows.current[-1].id,
                    "from": span[0].isoformat(), "to": span[1].isoformat()},
            },
        )
        _store(ctx, result)
        return result


def _features(ctx: AuditContext, server_version_num: int) -> None:
    """Parse regressed (and top) statements, resolve their tables, explain them."""
    a = ctx.settings
    top = sorted(ctx.current.values(), key=lambda g: -g.stat.moments.total)[: a.plan_top_n]
    wanted: dict[GroupKey, int] = {r.key: r.queryid for r in ctx.regressions}
    for g in top:
        wanted.setdefault(g.key, g.queryids[0])
    raw = {gk: parse_statement(ctx.texts.get((gk[0], q), "")) for gk, q in wanted.items()}
    resolved = resolve_tables(ctx.target_conn, sorted({t for s in raw.values()
                                                       for t in s.tables}))
    ctx.shapes = {gk: qualify(s, resolved) for gk, s in raw.items()}
    ctx.indexed = leading_index_columns(ctx.target_conn, sorted(set(resolved.values())))
    ctx.selective = column_selectivity(ctx.target_conn, sorted(set(resolved.values())))
    explained = 0
    for gk, q in wanted.items():
        if explained >= a.max_explain:
            break
        text = ctx.texts.get((gk[0], q))
        if not text:
            continue
        plan = explain_generic(ctx.target_conn, text, ctx.shapes[gk], server_version_num,
                               a.statement_timeout, a.lock_timeout)
        explained += 1
        if plan is not None:
            ctx.plans[gk] = plan
    ctx.previous_plans = repository.previous_plans(
        ctx.store, ctx.target, [(gk[0], gk[1]) for gk in ctx.plans], ctx.audit_id)
    members = {r.key: set(r.queryids) for r in ctx.regressions}
    onsets = _onsets(ctx, members) if members and ctx.windows else {}
    ctx.regressions = [
        replace(r, query=ctx.texts.get((r.dbid, r.queryid), ""),
                tables=ctx.shapes[r.key].tables, plan=ctx.plans.get(r.key),
                changed_since=onsets.get(r.key))
        for r in ctx.regressions
    ]


def _cluster(ctx: AuditContext) -> None:
    """Group the regressions by cause and write each cluster's summary."""
    if not ctx.regressions:
        return
    span = ctx.windows.current_span if ctx.windows else None
    items = []
    for r in ctx.regressions:
        onset = 1.0
        if span is not None and r.changed_since is not None:
            width = (span[1] - span[0]).total_seconds()
            onset = (r.changed_since - span[0]).total_seconds() / width if width > 0 else 0.0
        shape = ctx.shapes[r.key]
        items.append(ClusterInput(
            key=f"{r.dbid}:{r.fingerprint}:{int(r.key[2])}",
            tokens=feature_tokens(shape.tables, shape.columns, r.plan,
                                  unindexed(shape.columns, shape.tables, ctx.indexed,
                                            ctx.selective)),
            onset=onset,
            ratio=r.ratio if math.isfinite(r.ratio) else 1e6,
        ))
    labels = cluster(items, ctx.settings.cluster_distance)
    ctx.regressions = [replace(r, cluster_id=lab) for r, lab in zip(ctx.regressions, labels,
                                                                    strict=True)]
    clusters = []
    for cid in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == cid]
        members = [ctx.regressions[i] for i in idx]
        columns = {n: ctx.shapes[m.key].columns for n, m in enumerate(members)}
        tables = tuple(sorted({t for m in members for t in m.tables}))
        clusters.append(Cluster(
            cluster_id=cid, members=tuple(idx),
            queryids=tuple(str(q) for m in members for q in m.queryids),
            tables=tables,
            summary=summarize(members, columns, ctx.previous_plans,
                              {n: items[i].tokens["unindexed"] for n, i in enumerate(idx)}),
            features={"tokens": [dict(items[i].tokens) for i in idx]},
        ))
    ctx.clusters = clusters


def _store(ctx: AuditContext, result: AuditResult) -> None:
    """Everything the audit found, in one transaction."""
    rows = []
    for r in result.regressions:
        rows.append({
            "dbid": r.dbid, "queryid": r.queryid, "fingerprint": r.fingerprint,
            "query": r.query, "calls": r.current.calls,
            "baseline_mean_ms": r.baseline.moments.mean,
            "current_mean_ms": r.current.moments.mean, "ratio": r.ratio,
            "p_value": r.p_value, "cluster_id": r.cluster_id,
            "queryids": [str(q) for q in r.queryids], "toplevel": r.key[2],
            "baseline_calls": r.baseline.calls,
            "baseline_stddev_ms": math.sqrt(r.baseline.moments.variance),
            "current_stddev_ms": math.sqrt(r.current.moments.variance),
            "changed_since": r.changed_since, "tables": list(r.tables),
            "plan": None if r.plan is None else dict(r.plan),
        })
    report = result.to_json()
    with ctx.store.transaction():
        repository.insert_regressions(ctx.store, ctx.audit_id, rows)
        _step(ctx.on_step, "store.regressions")  # half-way through the one transaction
        repository.insert_clusters(ctx.store, ctx.audit_id, [
            {"cluster_id": c.cluster_id, "queryids": list(c.queryids),
             "tables": list(c.tables), "summary": c.summary, "features": dict(c.features)}
            for c in result.clusters])
        repository.insert_plans(ctx.store, ctx.target, ctx.audit_id,
                                {(gk[0], gk[1]): p for gk, p in ctx.plans.items()})
        repository.finish_audit(ctx.store, ctx.audit_id, {
            "finished_at": result.finished_at, "duration": result.duration_seconds,
            "server_version": result.server_version, "snapshot_id": result.snapshot_id,
            "statements_analyzed": result.statements_analyzed,
            "regressions": len(result.regressions), "clusters": len(result.clusters),
            "recommendations": len(result.recommendations), "report": report,
        })
