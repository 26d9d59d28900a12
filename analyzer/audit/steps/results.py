"""Steps that write the store: applied / reverted seen in a snapshot, memory,
verification and the audit's results (the last three inside the result transaction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analyzer import lifecycle, memory, verify
from analyzer.audit.values import AuditResult, PlanAnalysis, Remembered, StepHook, step_reached
from analyzer.recommend.model import Recommendation as Proposal
from analyzer.recommend.model import RecommendResult
from analyzer.recommendation import Recommendation as StoredForm
from analyzer.snapshots.take import SnapshotResult
from analyzer.store import audits
from analyzer.store.connection import Conn
from pgarchitect.config import AnalyzerSettings


def observe_applied(store: Conn, target: str, snap: SnapshotResult
                    ) -> tuple[lifecycle.Change, ...]:
    """Recommendations applied or reverted on the target, as this snapshot's catalog shows;
    recorded at the snapshot's time (its own transaction: it is part of the snapshot)."""
    valid = {i.qualified_name: i.definition for i in snap.catalog.indexes if i.valid}
    with store.transaction():
        changes = verify.observe_catalog(store, target, valid, at=snap.snapshot.taken_at)
    return tuple(changes)


def _stored_form(rec: Proposal) -> StoredForm:
    """The engine's recommendation as the memory keeps it."""
    ev = dict(rec.evidence)
    statements = [str(s.get("query")) for s in ev.get("statements", ())
                  if isinstance(s, Mapping) and s.get("query")]
    if not statements and ev.get("query"):
        statements = [str(ev["query"])]
    return StoredForm(
        kind=rec.kind, table=rec.table or "", columns=tuple(rec.columns), ddl=rec.ddl or "",
        revert_ddl=rec.revert_ddl or "", rationale=rec.rationale,
        confidence=min(max(float(rec.confidence), 0.0), 1.0), queryids=tuple(rec.queryids),
        statements=tuple(statements), evidence=ev,
        estimated_cost_before=rec.estimated_cost_before,
        estimated_cost_after=rec.estimated_cost_after, validated_by=rec.validated_by)


def remember_recommendations(
    store: Conn, target: str, found: RecommendResult, embedder: memory.Embedder,
    settings: AnalyzerSettings, audit_id: int,
) -> Remembered:
    """Each proposal through the memory rules (inside the result transaction): new ones
    stored, repeats merged, rejected repeats lowered, ineffective or applied ones refused."""
    proposed: list[Mapping[str, Any]] = []
    refused: list[Mapping[str, Any]] = [n.to_json() for n in found.not_proposed]
    for rec in found.proposed:
        outcome = memory.remember(store, target, _stored_form(rec), embedder=embedder,
                                  settings=settings, audit_id=audit_id)
        if outcome.proposed:
            proposed.append({**rec.to_json(), **outcome.to_json()})
        else:
            refused.append({"queryids": list(rec.queryids), "validated_by": rec.validated_by,
                            **outcome.to_json()})
    return Remembered(tuple(proposed), tuple(refused))


def verify_applied(store: Conn, target: str, settings: AnalyzerSettings,
                   embedder: memory.Embedder, audit_id: int) -> verify.VerifyResult:
    """Measure the applied recommendations (inside the result transaction)."""
    return verify.verify(store, target, settings, embedder=embedder, audit_id=audit_id)


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
                                {(gk[0], gk[1]): p for gk, p in plans.plans.items()})
        audits.finish_audit(store, result.audit_id, {
            "finished_at": result.finished_at, "duration": result.duration_seconds,
            "server_version": result.server_version, "snapshot_id": result.snapshot_id,
            "statements_analyzed": result.statements_analyzed,
            "regressions": len(result.regressions), "clusters": len(result.clusters),
            "recommendations": len(result.recommendations), "report": report,
        })
