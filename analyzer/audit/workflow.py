"""The two workflows: `run_audit` and the quick check."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg

from analyzer import memory
from analyzer.analysis.windows import WindowRequest
from analyzer.audit.bookkeeping import recorded_audit, store_session
from analyzer.audit.records import validation_record, windows_record
from analyzer.audit.steps.clusters import attribute_causes, cluster_regressions
from analyzer.audit.steps.plans import analyze_plans, describe_regressions
from analyzer.audit.steps.recommend import engine_recommender, recommend, recommendation_input
from analyzer.audit.steps.results import (
    observe_applied,
    remember_recommendations,
    store_audit,
    verify_applied,
)
from analyzer.audit.steps.statistics import detect_regressions, regression_onsets, window_statistics
from analyzer.audit.values import AuditResult, QuickCheck, Recommender, StepHook, step_reached
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store.connection import Conn
from analyzer.store.writer import StatementWriter
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.dsn import Dsn
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.audit")


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
    with store_session(store_dsn, settings) as store, \
            recorded_audit(store, store_dsn, target.name, settings, request,
                            audit_id, requested_by) as run, \
            connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        step_reached(on_step, "snapshot")
        snap = take_snapshot(StatementSource(tconn, settings.all_databases), store,
                             target.name, settings.retention,
                             StatementWriter.for_settings(settings))

        # Recommended indexes that appeared (or went) since the last snapshot: applied / reverted.
        step_reached(on_step, "observe")
        observe_applied(store, target.name, snap)

        step_reached(on_step, "windows")
        stats = window_statistics(store, target.name, rs, request)

        step_reached(on_step, "regressions")
        found = detect_regressions(stats, rs)

        step_reached(on_step, "plans")
        plans = analyze_plans(tconn, store, target.name, run.audit_id, stats, found, settings,
                              snap.server_version_num)
        onsets = regression_onsets(store, stats, found, rs)
        regressions = describe_regressions(found, stats, plans, onsets)

        step_reached(on_step, "cluster")
        clustering = cluster_regressions(regressions, plans, stats.windows,
                                         settings.cluster_distance)

        step_reached(on_step, "causes")
        caused = attribute_causes(store, target.name, stats, clustering, plans, snap.catalog)

        # Recommendations: candidates from the regressions, the clusters' causes (a dropped
        # index proposed back) and the catalog, validated on the held target session.
        step_reached(on_step, "recommend")
        candidates = recommend(recommender, tconn, recommendation_input(
            store, target.name, caused, stats, plans, snap, settings))

        # Memory, verification and the results: one transaction, all or nothing.
        step_reached(on_step, "store")
        with store.transaction():
            step_reached(on_step, "memory")
            remembered = remember_recommendations(store, target.name, candidates, embedder,
                                                  settings, run.audit_id)

            step_reached(on_step, "verify")
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
                validation=validation_record(candidates),
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
    with store_session(store_dsn, settings) as store, \
            connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        return quick_check(store, tconn, target.name, settings)


def quick_check(store: Conn, tconn: psycopg.Connection[Any], target: str,
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
