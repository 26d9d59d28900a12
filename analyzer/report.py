"""The audit report for terminals: windows, regressions, clusters with their causes,
recommendations, what was not proposed and why, and the verifications of applied ones."""

from __future__ import annotations

from typing import Any

from analyzer.audit import AuditResult
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
    lines += _recommendations(result)
    return "\n".join(lines)


def _cost(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.0f}"


def _recommendations(result: AuditResult) -> list[str]:
    lines: list[str] = []
    v = result.validation
    checked = (f" (validated by {v.get('method')}: {v.get('validations', 0)} validations, "
               f"{v.get('plans', 0)} plans, {v.get('seconds', 0)}s)" if v else "")
    if result.recommendations:
        lines += ["", f"Recommendations{checked}:"]
        for r in result.recommendations:
            seen = " (seen before: merged)" if r.get("merged") else ""
            cost = ""
            if r.get("estimated_cost_before") is not None:
                cost = (f", planned cost {_cost(r.get('estimated_cost_before'))} → "
                        f"{_cost(r.get('estimated_cost_after'))}")
            lines.append(f"  #{r.get('id')} {r.get('kind')} {r.get('table') or ''} "
                         f"[{r.get('status')}{seen}] confidence "
                         f"{float(r.get('confidence') or 0):.2f}, validated by "
                         f"{r.get('validated_by')}{cost}"
                         + (f", evidence {r['evidence_kind']}" if r.get("evidence_kind") else "")
                         + (f", saves {float(r['benefit_ms_per_day']):,.0f} ms/day"
                            if r.get("benefit_ms_per_day") is not None else ""))
            if r.get("ddl"):
                lines.append(f"      {r['ddl']}")
            lines.append(f"      {_short(str(r.get('rationale') or ''), 200)}")
            similar = r.get("similar_past") or []
            if similar:
                lines.append("      similar past: " + ", ".join(
                    f"#{s['id']} {s['status']} ({s['similarity']:.2f})" for s in similar))
    else:
        lines += ["", f"No recommendations{checked}."]
    w = result.workload
    if w:
        lines.append(f"Workload: {w['ms_per_day_before']:,.0f} ms of statement time per day, "
                     f"{w['ms_per_day_after']:,.0f} with the proposed indexes.")
    if result.not_proposed:
        lines += ["", "Not proposed:", render_table(
            ["kind", "table", "columns", "reason", "detail"],
            [(n.get("kind"), n.get("table") or "-", ", ".join(n.get("columns") or ()),
              n.get("reason"), _short(str(n.get("detail") or ""), 70))
             for n in result.not_proposed])]
    if result.verifications:
        lines += ["", "Verifications of applied recommendations:", render_table(
            ["id", "status", "applied at", "calls before", "calls after", "before ms",
             "after ms", "note"],
            [(f"#{x.get('id')}", x.get("status"), x.get("applied_at"), x.get("calls_before"),
              x.get("calls_after"), x.get("before_mean_ms") if x.get("before_mean_ms")
              is not None else "-", x.get("after_mean_ms") if x.get("after_mean_ms")
              is not None else "-", _short(str(x.get("note") or ""), 60))
             for x in result.verifications])]
    return lines
