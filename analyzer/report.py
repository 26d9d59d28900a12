"""The audit report for terminals: windows, regressions and clusters with their causes."""

from __future__ import annotations

from typing import Any

from analyzer.pipeline import AuditResult
from pgarchitect.table import render_table


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _cause(cause: dict[str, Any]) -> str:
    text = f"{cause['kind']} {cause['object']} at {cause['at']}"
    if cause.get("definition"):
        text += f" ({cause['definition']})"
    if cause["kind"] == "setting_changed":
        text += f": {cause.get('from')} → {cause.get('to')}"
    return text


def render(result: AuditResult) -> str:
    """A readable report of one audit."""
    lines = [
        f"audit {result.audit_id} of {result.target} (PostgreSQL {result.server_version}): "
        f"{result.statements_analyzed} statements analysed, {len(result.regressions)} "
        f"regressions in {len(result.clusters)} clusters, {result.duration_seconds:.1f}s",
    ]
    w = result.windows
    current, baseline = w.get("current"), w.get("baseline")
    if w.get("mode") == "no_baseline" or not current or not baseline:
        lines.append(str(w.get("note") or "no baseline yet (take more snapshots with "
                                          "`pgarchitect snapshot`)"))
    elif w.get("mode") == "change_point":
        lines.append(f"windows: snapshots {baseline['from_snapshot']}..{current['to_snapshot']}; "
                     f"{w.get('note')}")
    else:
        lines.append(f"baseline: snapshots {baseline['from_snapshot']}..{baseline['to_snapshot']}"
                     f" ({baseline['from']} .. {baseline['to']})  current: snapshots "
                     f"{current['from_snapshot']}..{current['to_snapshot']} "
                     f"({current['from']} .. {current['to']})")
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
        for c in result.clusters:
            lines.append(f"  [{c.cluster_id}] {c.summary}")
            if c.cause is not None:
                lines.append(f"      cause: {_cause(c.cause.to_json())}")
    if not result.regressions:
        lines += ["", "No regressions."]
    return "\n".join(lines)
