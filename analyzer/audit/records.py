"""Serialisation, once: the report and the store rows are made from the same records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from analyzer.analysis.regression import Regression
from analyzer.analysis.summary import format_time
from analyzer.analysis.windows import Windows
from analyzer.recommend.model import RecommendResult
from analyzer.snapshots.model import SnapshotMeta

if TYPE_CHECKING:
    from analyzer.audit.values import Cluster


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
        "toplevel": r.key.toplevel,
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


def validation_record(found: RecommendResult) -> dict[str, Any]:
    """How the audit's index candidates were checked."""
    return {"method": found.method, "validations": found.validations, "plans": found.plans,
            "seconds": round(found.validation_seconds, 3)}
