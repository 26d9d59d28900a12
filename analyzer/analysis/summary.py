"""Readable one-paragraph summaries of regression clusters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from analyzer.analysis.features import describe_scans, scans
from analyzer.analysis.regression import Regression


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 100 else f"{value:,.0f} ms"


def summarize(
    members: Sequence[Regression],
    columns: Mapping[int, Sequence[str]],
    previous_plans: Mapping[tuple[int, str], Mapping[str, Any]],
    unindexed: Mapping[int, Sequence[str]] | None = None,
    cause: str | None = None,
) -> str:
    """'3 statements on `public.events` regressed together since 14:05; …'.

    `columns` maps a member's position to its predicate columns and `unindexed` to those of
    them no valid index leads; `previous_plans` holds plan shapes from earlier audits by
    (dbid, fingerprint), to say how the plans changed; `cause` is the attributed cause's
    phrase ("when index `x` was dropped").
    """
    tables = Counter(t for r in members for t in r.tables)
    on = " on " + ", ".join(f"`{t}`" for t, _ in tables.most_common(3)) if tables else ""
    starts = [r.changed_since for r in members if r.changed_since is not None]
    since = f" since {min(starts):%Y-%m-%d %H:%M}" if starts else ""
    together = " regressed together" if len(members) > 1 else " regressed"
    base = sum(r.baseline.moments.mean for r in members) / len(members)
    cur = sum(r.current.moments.mean for r in members) / len(members)
    worst = max(r.ratio for r in members)
    if cause:
        since += f", {cause}"
    text = (f"{_plural(len(members), 'statement')}{on}{together}{since}: mean "
            f"{_ms(base)} → {_ms(cur)} per call (up to x{worst:,.1f})")
    now = [p for r in members for p in scans(r.plan)]
    before = [p for r in members for p in scans(previous_plans.get((r.dbid, r.fingerprint)))]
    if now:
        now_nodes = sorted({n for n, _ in now})
        before_nodes = sorted({n for n, _ in before})
        if before and before_nodes != now_nodes:
            text += (f"; plans switched from {', '.join(before_nodes)} to "
                     f"{', '.join(now_nodes)} ({describe_scans(now)})")
            dropped = sorted(_indexes(members, previous_plans) - _indexes(members, None))
            if dropped:
                text += f", no longer using {', '.join(dropped)}"
        else:
            text += f"; plans now: {describe_scans(now)}"
    cols = Counter(c for i in range(len(members)) for c in columns.get(i, ()))
    if cols:
        shared = [c for c, n in cols.most_common() if n == len(members)] or [
            c for c, _ in cols.most_common(2)]
        text += f"; filtering on {', '.join(shared[:3])}"
    missing = Counter(c for cs in (unindexed or {}).values() for c in cs)
    if missing:
        text += f"; no index leads with {', '.join(c for c, _ in missing.most_common(3))}"
    return text


def _indexes(members: Sequence[Regression],
             previous: Mapping[tuple[int, str], Mapping[str, Any]] | None) -> set[str]:
    """Index names in the members' current plans, or in their previous ones."""
    out: set[str] = set()
    for r in members:
        plan = r.plan if previous is None else previous.get((r.dbid, r.fingerprint))
        nodes: Sequence[Mapping[str, Any]] = (plan or {}).get("nodes", ())  # type: ignore[assignment]
        out.update(str(n["index"]) for n in nodes if n.get("index"))
    return out


def format_time(value: datetime | None) -> str | None:
    """ISO-8601 text of a timestamp (None stays None)."""
    return None if value is None else value.isoformat()
