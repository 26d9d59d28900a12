"""The audit report for terminals: regressions and clusters as plain-text tables."""

from __future__ import annotations

from analyzer.pipeline import AuditResult
from pgarchitect.table import render_table


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render(result: AuditResult) -> str:
    """A readable report of one audit."""
    lines = [
        f"audit {result.audit_id} of {result.target} (PostgreSQL {result.server_version}): "
        f"{result.statements_analyzed} statements analysed, {len(result.regressions)} "
        f"regressions in {len(result.clusters)} clusters, {result.duration_seconds:.1f}s",
    ]
    current = result.windows.get("current")
    baseline = result.windows.get("baseline")
    if current and baseline:
        lines.append(f"baseline: snapshots {baseline['from_snapshot']}..{baseline['to_snapshot']}"
                     f"  current: snapshots {current['from_snapshot']}..{current['to_snapshot']}")
    else:
        lines.append("not enough snapshots for a baseline and a current window yet "
                     "(take more with `pgarchitect snapshot`)")
    if result.regressions:
        lines += ["", "Regressions:", render_table(
            ["cluster", "queryid", "calls", "before ms", "now ms", "ratio", "p", "query"],
            [(r.cluster_id if r.cluster_id is not None else "-", str(r.queryid),
              r.current.calls, round(r.baseline.moments.mean, 3),
              round(r.current.moments.mean, 3), round(r.ratio, 1), f"{r.p_value:.1e}",
              _short(r.query)) for r in result.regressions],
        )]
    if result.clusters:
        lines += ["", "Clusters:"]
        lines += [f"  [{c.cluster_id}] {c.summary}" for c in result.clusters]
    if not result.regressions:
        lines += ["", "No regressions."]
    return "\n".join(lines)
