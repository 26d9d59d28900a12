"""The audit's charts: a cluster's statements over the snapshots with its cause marked, a
recommendation's before / after, the verifications' before / after and the top statements.
Each takes report entries (docs/report.md) and returns SVG text (analyzer/page/svg.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from analyzer.page.data import Series, TopStatement
from analyzer.page.svg import Bar, BarRow, Line, LinePoint, Marker, bar_chart, time_chart

CAUSE_WORDS = {"index_dropped": "index dropped", "index_created": "index created",
               "index_invalid": "index invalid", "analyzed": "analysed",
               "stale_statistics": "stale statistics", "setting_changed": "setting changed",
               "stats_reset": "statistics reset", "load": "load"}


def series_label(i: int) -> str:
    """The short name of a cluster's i-th statement on its chart and in its legend."""
    return f"S{i + 1}"


def _flat(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cause_label(cause: Mapping[str, Any]) -> str:
    """"index dropped public.orders_customer_id_idx at 14:05:00 UTC"."""
    kind = str(cause.get("kind"))
    text = f"{CAUSE_WORDS.get(kind, kind)} {cause.get('object')}"
    if not cause.get("at"):
        return text
    return f"{text} at {datetime.fromisoformat(str(cause['at'])).astimezone(UTC):%H:%M:%S} UTC"


def cluster_chart(cluster: Mapping[str, Any], series: Sequence[Series],
                  times: Sequence[datetime]) -> str:
    """Each statement's mean time per call at every snapshot, the cause on the time axis."""
    cid = int(cluster["cluster_id"])
    cause = cluster.get("cause")
    markers = []
    if cause and cause.get("at"):
        at = datetime.fromisoformat(str(cause["at"]))
        words = CAUSE_WORDS.get(str(cause["kind"]), str(cause["kind"]))
        markers.append(Marker(at, f"{words} at {at.astimezone(UTC):%H:%M:%S}",
                              cause_label(cause)))
    lines = [Line(s.queryid, series_label(i), [
        LinePoint(p.at, p.mean_ms, f"{series_label(i)} at {p.at.astimezone(UTC):%H:%M:%S} UTC: "
                  f"{p.mean_ms:.3f} ms per call over {p.calls} calls"
                  + (f" (the {p.steps} snapshot intervals up to here)" if p.steps > 1 else "")
                  + f" — {_flat(s.query, 60)}",
                  {"snapshot": str(p.snapshot_id), "time": p.at.isoformat(),
                   "mean-ms": f"{p.mean_ms:.4f}"}) for p in s.points])
        for i, s in enumerate(series)]
    desc = (f"Mean execution time per call of the {len(series)} statements of cluster {cid} "
            f"at each of {len(times)} snapshots (the calls since the snapshot before)"
            + (f"; marked: {markers[0].title}" if markers else "") + ". " + "; ".join(
                f"{series_label(i)} queryid {s.queryid}: " + ", ".join(
                    f"{p.mean_ms:.3f}" for p in s.points) + " ms" for i, s in enumerate(series)))
    return time_chart(f"cluster-{cid}-chart", f"Cluster {cid}: mean time per call", desc,
                      lines, times, markers)


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):,.{digits}f}"


def recommendation_chart(rec: Mapping[str, Any], chart_id: str | None = None) -> str | None:
    """A recommendation's planner cost per statement before and after (and its benefit in ms
    per day when the report carries it); None without figures to draw."""
    rows: list[BarRow] = []
    before, after = rec.get("ms_per_day_before"), rec.get("ms_per_day_after")
    if before is not None and after is not None:
        rows.append(BarRow("time per day (ms)", [
            Bar(float(before), f"{_num(before)} ms/day before", hatched=True),
            Bar(float(after), f"{_num(after)} ms/day after")]))
    for s in (rec.get("evidence") or {}).get("statements") or ():
        if isinstance(s, Mapping) and s.get("cost_before") is not None:
            cb, ca = float(s["cost_before"]), s.get("cost_after")
            rows.append(BarRow(f"{s.get('queryid')}: {_flat(str(s.get('query') or ''))}", [
                Bar(cb, f"cost {_num(cb)} before", hatched=True),
                Bar(float(ca or 0.0), f"cost {_num(ca)} after" if ca is not None
                    else "not planned")], {"queryid": str(s.get("queryid"))}))
    if not rows and rec.get("estimated_cost_before") is not None:
        cb, ca = float(rec["estimated_cost_before"]), rec.get("estimated_cost_after")
        rows.append(BarRow("planner cost, all statements", [
            Bar(cb, f"{_num(cb)} before", hatched=True),
            Bar(float(ca or 0.0), f"{_num(ca)} after")]))
    if not rows:
        return None
    rid = str(rec.get("id", ""))
    what = f"{rec.get('kind')} on {rec.get('table')}" + (
        f" ({', '.join(rec.get('columns') or ())})" if rec.get("columns") else "")
    desc = f"Recommendation {rid}, {what}: " + "; ".join(
        f"{r.label}: " + ", ".join(b.text for b in r.bars) for r in rows)
    return bar_chart(chart_id or f"rec-{rid}-chart",
                     f"Recommendation {rid}: before and after ({what})", desc, rows,
                     legend=[(True, "before (hatched)"), (False, "after (solid)")])


def verification_chart(verifications: Sequence[Mapping[str, Any]]) -> str | None:
    """Before / after mean time per call of each measured applied recommendation."""
    rows = [BarRow(f"#{v.get('id')} {v.get('status')}" + (
        f" (p = {float(v['p_value']):.2g})" if v.get("p_value") is not None else ""), [
        Bar(float(v["before_mean_ms"]), f"{float(v['before_mean_ms']):.3f} ms before",
            hatched=True),
        Bar(float(v["after_mean_ms"]), f"{float(v['after_mean_ms']):.3f} ms after")],
        {"verification": str(v.get("id"))})
        for v in verifications
        if v.get("before_mean_ms") is not None and v.get("after_mean_ms") is not None]
    if not rows:
        return None
    desc = "Mean time per call of the statements of each applied recommendation before and " \
           "after it was applied: " + "; ".join(
               f"{r.label}: " + ", ".join(b.text for b in r.bars) for r in rows)
    return bar_chart("verifications-chart", "Applied recommendations: per-call latency before "
                     "and after", desc, rows,
                     legend=[(True, "before (hatched)"), (False, "after (solid)")])


def workload_chart(top: Sequence[TopStatement]) -> str | None:
    """The top statements by total time; those a proposal is for hatched and labelled."""
    if not top:
        return None
    rows = [BarRow(f"{t.queryid}: {_flat(t.query)}", [Bar(
        t.total_ms, f"{t.total_ms:,.0f} ms" + (
            f" — proposal {', '.join('#' + i for i in t.addressed_by)}" if t.addressed_by
            else ""), hatched=bool(t.addressed_by))], {"queryid": t.queryid})
        for t in top]
    desc = "Total execution time in the current window of the top statements: " + "; ".join(
        f"queryid {t.queryid} {t.total_ms:,.0f} ms"
        + (" (a proposal is for it)" if t.addressed_by else "") for t in top)
    return bar_chart("workload-chart", "Top statements by total time", desc, rows,
                     legend=[(True, "a proposal is for it (hatched)"), (False, "no proposal")])
