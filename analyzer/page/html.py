"""The audit page: one self-contained HTML document (inline CSS and SVG, no script, no
network), its sections in the order an operator reads them (docs/report.md, "The page")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from analyzer.page import charts
from analyzer.page.data import PageData
from analyzer.page.svg import esc, style_name

# Nothing on the page may load or run anything: a browser enforces it even if text escaped
# the escaping.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font-family: sans-serif; max-width: 72em; margin: 1em auto; padding: 0 1em;
       color: #000; background: #fff; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { border-bottom: 2px solid #000; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #888; padding: .2em .5em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: monospace; white-space: pre-wrap; word-break: break-word; }
pre { border-left: 4px solid #888; padding: .3em .6em; background: #f4f4f4; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dl.summary dt { font-weight: bold; }
article { border-top: 1px solid #888; margin-top: 1.5em; }
svg.chart { max-width: 100%; height: auto; border: 1px solid #ccc; }
""".strip()


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "",
           numeric: Sequence[int] = ()) -> str:
    """A table; every cell escaped (a cell that is already markup is passed as _Markup)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = c.html if isinstance(c, _Markup) else esc("-" if c is None else c)
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>")


class _Markup:
    """Markup built here from escaped parts."""

    def __init__(self, html: str) -> None:
        self.html = html


FOLD = 400  # characters of a statement shown before the rest folds away (<details>)


def _code(text: object) -> _Markup:
    """A statement's text; a long one folded after FOLD characters (no script needed)."""
    whole = str(text)
    if len(whole) <= FOLD:
        return _Markup(f'<code class="statement">{esc(whole)}</code>')
    return _Markup(f'<details><summary><code class="statement">{esc(whole[:FOLD])}…</code> '
                   f'({len(whole):,} characters)</summary><code class="statement">'
                   f"{esc(whole)}</code></details>")


def _num(value: Any, digits: int = 3) -> str | None:
    return None if value is None else f"{float(value):,.{digits}f}"


def _plan(plan: Mapping[str, Any] | None) -> str:
    if not plan:
        return "no plan captured"
    nodes = [" ".join(str(p) for p in (n.get("node"), n.get("relation") and f"on "
                                       f"{n.get('relation')}", n.get("index") and
                                       f"using {n.get('index')}") if p)
             for n in plan.get("nodes") or () if isinstance(n, Mapping)]
    cost = plan.get("total_cost")
    return " → ".join(nodes) + (f" (cost {float(cost):,.1f})" if cost is not None else "")


def _span(w: Mapping[str, Any] | None) -> str:
    if not w:
        return "none"
    return f"snapshots {w.get('from_snapshot')}..{w.get('to_snapshot')} " \
           f"({w.get('from')} .. {w.get('to')})"


def summary(d: PageData) -> str:
    r, w = d.report, d.report.get("windows") or {}
    items = [("target", r.get("target")), ("PostgreSQL", r.get("server_version")),
             ("audit", f"{r.get('audit_id')}: {r.get('started_at')} .. {r.get('finished_at')} "
                       f"({r.get('duration_seconds')} s)"),
             ("windows", f"{w.get('mode')} — {w.get('note') or ''}"),
             ("baseline", _span(w.get("baseline"))), ("current", _span(w.get("current"))),
             ("statements analysed", r.get("statements_analyzed")),
             ("regressions", len(r.get("regressions") or ())),
             ("clusters", len(r.get("clusters") or ())),
             ("proposals", len(r.get("recommendations") or ())),
             ("not proposed", len(r.get("not_proposed") or ())),
             ("verifications", len(r.get("verifications") or ())),
             ("validation", ", ".join(f"{k} {v}" for k, v in (r.get("validation") or {}).items())
              or "-")]
    return ('<section id="summary"><h2>Summary</h2><dl class="summary">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
            + "</dl></section>")


def clusters(d: PageData) -> str:
    out = ['<section id="clusters"><h2>Regression clusters</h2>']
    regressions = {str(x.get("queryid")): x for x in d.report.get("regressions") or ()}
    found = d.report.get("clusters") or ()
    if not found:
        out.append("<p>No regressions.</p>")
    times = [m.taken_at for m in d.snapshots]
    for c in found:
        cid = int(c["cluster_id"])
        series = d.series.get(cid, ())
        out.append(f'<article class="cluster" id="cluster-{cid}" data-cluster="{cid}">'
                   f'<h3>Cluster {cid}: {esc(", ".join(c.get("tables") or ()))}</h3>'
                   f"<p>{esc(c.get('summary'))}</p>")
        cause = c.get("cause")
        if cause:
            extra = f" ({cause['definition']})" if cause.get("definition") else ""
            if cause.get("kind") == "setting_changed":
                extra = f": {cause.get('from')} → {cause.get('to')}"
            out.append(f'<p class="cause"><strong>Cause:</strong> '
                       f"{esc(charts.cause_label(cause) + extra)}</p>")
        out.append(charts.cluster_chart(c, series, times) if times else
                   "<p>No snapshots of the windows are stored any more.</p>")
        rows = []
        for i, s in enumerate(series):
            reg = regressions.get(s.queryid, {})
            rows.append((charts.series_label(i), style_name(i), s.queryid, reg.get("calls"),
                         _num(reg.get("baseline_mean_ms")), _num(reg.get("current_mean_ms")),
                         _num(reg.get("ratio"), 1), reg.get("p_value"),
                         _plan(reg.get("plan")), _code(s.query)))
        out.append(_table(["line", "drawn as", "queryid", "calls", "before ms", "now ms",
                           "ratio", "p", "plan now", "statement"], rows, "legend",
                          numeric=(3, 4, 5, 6)))
        out.append("</article>")
    return "".join(out) + "</section>"


def _recommendation(rec: Mapping[str, Any]) -> str:
    rid = str(rec.get("id"))
    cols = ", ".join(rec.get("columns") or ())
    head = f"#{rid} {rec.get('kind')} on {rec.get('table') or '-'}" + (f" ({cols})" if cols
                                                                       else "")
    merged = " (a repeat, merged)" if rec.get("merged") else ""
    facts: list[tuple[str, object]] = [("status", f"{rec.get('status')}{merged}")]
    if rec.get("benefit_ms_per_day") is not None:
        facts.append(("benefit", f"{float(rec['benefit_ms_per_day']):,.1f} ms per day saved"))
    if rec.get("ms_per_day_before") is not None and rec.get("ms_per_day_after") is not None:
        facts.append(("time per day", f"{float(rec['ms_per_day_before']):,.1f} ms before → "
                                      f"{float(rec['ms_per_day_after']):,.1f} ms after"))
    if rec.get("evidence_kind"):
        facts.append(("evidence", rec["evidence_kind"]))
    if rec.get("estimated_cost_before") is not None:
        facts.append(("planner cost", f"{_num(rec.get('estimated_cost_before'), 1)} → "
                                      f"{_num(rec.get('estimated_cost_after'), 1)}"
                                      + (f" ({float(rec['estimated_improvement']):.1%} less)"
                                         if rec.get("estimated_improvement") is not None
                                         else "")))
    facts += [("confidence", _num(rec.get("confidence"), 2)),
              ("validated by", rec.get("validated_by"))]
    ev = rec.get("evidence") or {}
    v = ev.get("validation") if isinstance(ev, Mapping) else None
    if isinstance(v, Mapping):
        facts.append(("validation", ", ".join(f"{k} {x}" for k, x in v.items())))
    out = [f'<article class="recommendation" id="rec-{esc(rid)}"><h3>{esc(head)}</h3>',
           f"<p>{esc(rec.get('rationale') or '')}</p>",
           '<dl class="summary">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(x)}</dd>"
                                            for k, x in facts) + "</dl>"]
    if rec.get("ddl"):
        out.append(f"<p>Change:</p><pre><code>{esc(rec['ddl'])}</code></pre>")
    if rec.get("revert_ddl"):
        out.append(f"<p>Revert:</p><pre><code>{esc(rec['revert_ddl'])}</code></pre>")
    chart = charts.recommendation_chart(rec)
    if chart:
        out.append(chart)
    stmts = [s for s in (ev.get("statements") or ()) if isinstance(s, Mapping)]
    if stmts:
        out.append("<p>Evidence, per statement:</p>" + _table(
            ["queryid", "calls", "total ms", "mean ms", "cost before", "cost after", "statement"],
            [(s.get("queryid"), s.get("calls"), _num(s.get("total_ms"), 1),
              _num(s.get("mean_ms")), _num(s.get("cost_before"), 1),
              _num(s.get("cost_after"), 1), _code(s.get("query") or "")) for s in stmts],
            "evidence", numeric=(1, 2, 3, 4, 5)))
    other = {k: x for k, x in ev.items() if k not in ("statements", "validation")}
    if other:
        out.append(_table(["evidence", "value"], sorted(other.items())))
    similar = [s for s in rec.get("similar_past") or () if isinstance(s, Mapping)]
    out.append("<p>Similar past recommendations:</p>" + _table(
        ["id", "similarity", "status"],
        [(s.get("id"), _num(s.get("similarity"), 2), s.get("status")) for s in similar])
        if similar else "<p>No similar past recommendation.</p>")
    return "".join(out) + "</article>"


def recommendations(d: PageData) -> str:
    recs = d.report.get("recommendations") or ()
    return ('<section id="recommendations"><h2>Recommendations</h2>'
            + ("".join(_recommendation(r) for r in recs) or "<p>No recommendations.</p>")
            + "</section>")


def verifications(d: PageData) -> str:
    found = d.report.get("verifications") or ()
    out = ['<section id="verifications"><h2>Verifications of applied recommendations</h2>']
    if not found:
        out.append("<p>No applied recommendation was measured by this audit.</p>")
    else:
        chart = charts.verification_chart(found)
        out += [chart or "", _table(
            ["id", "result", "applied at", "calls before", "calls after", "before ms",
             "after ms", "ratio", "p", "note"],
            [(f"#{v.get('id')}", v.get("status"), v.get("applied_at"), v.get("calls_before"),
              v.get("calls_after"), _num(v.get("before_mean_ms")), _num(v.get("after_mean_ms")),
              _num(v.get("ratio"), 4), v.get("p_value"), v.get("note")) for v in found],
            "verifications", numeric=(3, 4, 5, 6, 7))]
    return "".join(out) + "</section>"


def workload(d: PageData) -> str:
    out = ['<section id="workload"><h2>Workload: top statements by total time</h2>']
    share = d.addressed_ms / d.total_ms if d.total_ms else 0.0
    out.append(f"<p>In the current window the statements took {d.total_ms:,.1f} ms in all; "
               f"the proposals are for statements that took {d.addressed_ms:,.1f} ms of it "
               f"(<strong>{share:.1%}</strong>).</p>")
    w = d.report.get("workload")
    if isinstance(w, Mapping) and w.get("ms_per_day_before") is not None:
        out.append(f"<p>With every proposal applied: {float(w['ms_per_day_before']):,.1f} ms "
                   f"per day before → {float(w.get('ms_per_day_after') or 0):,.1f} ms after "
                   "(estimated).</p>")
    chart = charts.workload_chart(d.top)
    if chart:
        out.append(chart)
    out.append(_table(
        ["#", "queryid", "calls", "total ms", "share", "proposal", "statement"],
        [(i + 1, t.queryid, t.calls, f"{t.total_ms:,.1f}",
          f"{t.total_ms / d.total_ms:.1%}" if d.total_ms else "-",
          ", ".join("#" + x for x in t.addressed_by) or "-", _code(t.query))
         for i, t in enumerate(d.top)], "top", numeric=(0, 2, 3, 4)))
    return "".join(out) + "</section>"


def not_proposed(d: PageData) -> str:
    found = d.report.get("not_proposed") or ()
    return ('<section id="not-proposed"><h2>Considered and not proposed</h2>'
            + (_table(["kind", "table", "columns", "reason", "detail", "confidence"],
                      [(n.get("kind"), n.get("table"), ", ".join(n.get("columns") or ()),
                        n.get("reason"), n.get("detail"), _num(n.get("confidence"), 2))
                       for n in found], "not-proposed")
               if found else "<p>Nothing was turned down.</p>") + "</section>")


def render(d: PageData) -> str:
    """The whole page."""
    r = d.report
    title = f"pgarchitect audit {r.get('audit_id')} of {r.get('target')}"
    nav = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("summary", "summary"), ("clusters", "clusters"), ("recommendations", "recommendations"),
        ("verifications", "verifications"), ("workload", "workload"),
        ("not-proposed", "not proposed")))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1><nav>{nav}</nav>",
        summary(d), clusters(d), recommendations(d), verifications(d), workload(d),
        not_proposed(d), "</body></html>", ""])
