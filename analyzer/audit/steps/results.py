"""Steps that write the audit's results inside the result transaction: the memory (new
proposals, merged repeats) and the store rows (verification, between them, is
`analyzer.verify.verify` itself)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analyzer import memory
from analyzer.audit.values import AuditResult, PlanAnalysis, Remembered, StepHook, step_reached
from analyzer.recommend.model import RecommendResult
from analyzer.store import audits
from analyzer.store.connection import Conn
from pgarchitect.config import AnalyzerSettings


def remember_recommendations(
    store: Conn, target: str, found: RecommendResult, embedder: memory.Embedder,
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


def store_audit(
    store: Conn, result: AuditResult, plans: PlanAnalysis,
    on_step: StepHook | None = None,
) -> None:
    """Everything the audit found, in one transaction (a savepoint of the caller's)."""
    report = result.to_json()
    with store.transaction():
        audits.insert_regressions(store, result.audit_id, report["regressions"])
        step_reached(on_step, "store.regressions")  # half-way through the one transaction
        audits.insert_clusters(store, result.audit_id, [
            {**record, "features": dict(c.features)}
            for c, record in zip(result.clusters, report["clusters"], strict=True)])
        audits.insert_plans(store, result.target, result.audit_id,
                                {(gk.dbid, gk.fingerprint): p for gk, p in plans.plans.items()})
        audits.finish_audit(store, result.audit_id, audits.Finished(
            finished_at=result.finished_at, duration=result.duration_seconds,
            server_version=result.server_version, snapshot_id=result.snapshot_id,
            statements_analyzed=result.statements_analyzed,
            regressions=len(result.regressions), clusters=len(result.clusters),
            recommendations=len(result.recommendations), report=report))
