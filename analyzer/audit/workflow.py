"""The two workflows: `run_audit` and the quick check, sharing one detection prefix
(`detect`). This is the only place that wires the steps: each line is one step, over the
frozen values earlier steps returned; what the store holds is read once and passed on (the
snapshot list, the catalog history)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from analyzer import memory, verify
from analyzer.analysis.regression import detect as detect_slower
from analyzer.analysis.windows import WindowRequest
from analyzer.audit.bookkeeping import recorded_audit, store_session
from analyzer.audit.records import validation_record, windows_record
from analyzer.audit.steps.clusters import attribute_causes, catalogs_since, cluster_regressions
from analyzer.audit.steps.plans import analyze_plans, describe_regressions
from analyzer.audit.steps.recommend import engine_recommender, recommendation_input
from analyzer.audit.steps.results import remember_recommendations, store_audit
from analyzer.audit.steps.snapshot import snapshot_and_observe
from analyzer.audit.steps.statistics import regression_onsets, window_statistics
from analyzer.audit.values import (
    AuditResult,
    Detection,
    QuickCheck,
    Recommender,
    Step,
    StepHook,
    step_reached,
)
from analyzer.snapshots.model import SnapshotMeta
from analyzer.snapshots.source import connect_target
from analyzer.store.connection import Conn
from analyzer.store.snapshots import list_snapshots
from analyzer.store.states import SnapshotStates
from analyzer.vocabulary import AuditStatus, RequestedBy
from pgarchitect.config import AnalyzerSettings, Target
from pgarchitect.dsn import Dsn
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.audit")


def detect(
    store: Conn, tconn: psycopg.Connection[Any], target: str, settings: AnalyzerSettings,
    stored: Sequence[SnapshotMeta], request: WindowRequest | None = None, *,
    audit_id: int | None = None, server_version_num: int = 0, explain: bool = True,
    on_step: StepHook | None = None, states: SnapshotStates | None = None,
) -> Detection:
    """Windows → regressions → plans (EXPLAIN only when `explain`) → onsets → clusters
    (`states`: the process's kept snapshot states, analyzer/store/states.py)."""
    rs = settings.regression
    step_reached(on_step, Step.WINDOWS)
    stats = window_statistics(store, target, rs, stored, request, states)

    step_reached(on_step, Step.REGRESSIONS)
    found = tuple(detect_slower(stats.baseline, stats.current, rs))

    step_reached(on_step, Step.PLANS)
    plans = analyze_plans(tconn, store, target, audit_id, stats, found, settings,
                          server_version_num, explain=explain)
    onsets = regression_onsets(store, stats, found, rs)
    regressions = describe_regressions(found, stats, plans, onsets)

    step_reached(on_step, Step.CLUSTER)
    clustering = cluster_regressions(regressions, plans, stats.windows,
                                     settings.cluster_distance)
    return Detection(stats, plans, clustering)


def run_audit(
    settings: AnalyzerSettings,
    target: Target,
    store_dsn: Dsn,
    request: WindowRequest | None = None,
    on_step: StepHook | None = None,
    recommender: Recommender = engine_recommender,
    audit_id: int | None = None,
    requested_by: str = RequestedBy.CLI,
    embedder: memory.Embedder | None = None,
) -> AuditResult:
    """Run one audit of `target` and record it in the store; AuditFailed when it fails.

    `audit_id` names an audit queued earlier (the analyzer service's requested audits);
    `embedder` defaults to the one `analyzer.embedder` names.
    """
    embedder = embedder or memory.load_embedder(settings.embedder)
    with store_session(store_dsn, settings) as store, \
            recorded_audit(store, store_dsn, target.name, settings, request,
                           audit_id, requested_by) as run, \
            connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        # The snapshot, and the recommended indexes it shows appeared (or gone).
        step_reached(on_step, Step.SNAPSHOT)
        snap = snapshot_and_observe(tconn, store, target.name, settings).snapshot
        stored = list_snapshots(store, target.name)

        found = detect(store, tconn, target.name, settings, stored, request,
                       audit_id=run.audit_id, server_version_num=snap.server_version_num,
                       on_step=on_step)
        stats, plans = found.statistics, found.plans
        catalogs = catalogs_since(store, target.name, stats.windows)

        step_reached(on_step, Step.CAUSES)
        caused = attribute_causes(stats, found.clustering, plans, snap.catalog, catalogs)

        # Recommendations: candidates from the regressions, the clusters' causes (a dropped
        # index proposed back) and the catalog, validated on the held target session.
        step_reached(on_step, Step.RECOMMEND)
        candidates = recommender(tconn, recommendation_input(
            caused, stats, plans, snap, settings, stored, catalogs))

        # Memory, verification and the results: one transaction, all or nothing.
        step_reached(on_step, Step.STORE)
        with store.transaction():
            step_reached(on_step, Step.MEMORY)
            remembered = remember_recommendations(store, target.name, candidates, embedder,
                                                  settings, run.audit_id)

            step_reached(on_step, Step.VERIFY)
            verified = verify.verify(store, target.name, settings, embedder=embedder,
                                     audit_id=run.audit_id)

            result = AuditResult(
                audit_id=run.audit_id, target=target.name, status=AuditStatus.SUCCEEDED,
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
    with store_session(store_dsn, settings) as store, \
            connect_target(target.dsn, f"target {target.name}", settings) as tconn:
        return quick_check(store, tconn, target.name, settings)


def quick_check(store: Conn, tconn: psycopg.Connection[Any], target: str,
                settings: AnalyzerSettings, states: SnapshotStates | None = None) -> QuickCheck:
    """`run_quick_check` on sessions the caller holds (the service holds the target lock):
    the detection prefix without EXPLAIN (tables resolved and index facts read); `states`,
    the process's kept snapshot states (the service's: a job rebuilds only new ones)."""
    found = detect(store, tconn, target, settings, list_snapshots(store, target), explain=False,
                   states=states)
    return QuickCheck(target=target, checked_at=datetime.now(UTC),
                      statements_analyzed=len(found.statistics.current),
                      regressions=len(found.clustering.regressions),
                      clusters=len(found.clustering.clusters),
                      windows=windows_record(found.statistics.windows))
