"""What the audit page shows beyond the stored report, read from the store's snapshots:
each regressed statement's mean time per call at every snapshot of the audit's windows, and
the current window's top statements by total time with the share the proposals address."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analyzer.analysis.delta import EMPTY, Moments, combine, pair_delta, was_reset
from analyzer.audit import window_stats
from analyzer.snapshots.model import SnapshotMeta, StatementKey
from analyzer.store import snapshots
from analyzer.store.connection import Conn
from pgarchitect.errors import UserError

TOP_STATEMENTS = 10
MAX_POINTS = 400  # per line of a chart; more snapshots are merged into runs (see `thin`)


class NoReport(UserError):
    """The audit does not exist or has no report (queued, running or failed)."""


@dataclass(frozen=True)
class Point:
    """One statement group's calls since the snapshot before `snapshot_id`."""

    snapshot_id: int
    at: datetime
    calls: int
    mean_ms: float
    steps: int = 1  # snapshot intervals merged into this point (more than MAX_POINTS)


@dataclass(frozen=True)
class Series:
    """One regressed statement group's mean time per call across the snapshots."""

    queryid: str  # the group's representative
    query: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class TopStatement:
    """A statement group of the current window, by total execution time."""

    queryid: str
    query: str
    calls: int
    total_ms: float
    addressed_by: tuple[str, ...]  # ids of the recommendations for it


@dataclass(frozen=True)
class PageData:
    """The stored report and what the page reads beside it."""

    report: Mapping[str, Any]
    snapshots: tuple[SnapshotMeta, ...]  # the audit's windows, oldest first
    series: Mapping[int, tuple[Series, ...]]  # cluster_id -> its statements
    top: tuple[TopStatement, ...]
    total_ms: float  # every statement's time in the current window
    addressed_ms: float  # the time of the statements the proposals are for


def stored_report(store: Conn, audit_id: int) -> dict[str, Any]:
    """The report of a succeeded audit; NoReport otherwise."""
    row = store.execute("/* pgarchitect */ SELECT status, report FROM pgarchitect.audit_run"
                        " WHERE id = %s", (audit_id,)).fetchone()
    if row is None:
        raise NoReport(f"no audit {audit_id}")
    if row[1] is None:
        raise NoReport(f"audit {audit_id} is {row[0]}: it has no report")
    return dict(row[1])


def _time(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def window_metas(store: Conn, report: Mapping[str, Any]
                 ) -> tuple[tuple[SnapshotMeta, ...], tuple[SnapshotMeta, ...]]:
    """(every snapshot of the audit's windows, those of its current window)."""
    windows = report.get("windows") or {}
    current = windows.get("current") or {}
    first = windows.get("baseline") or current
    start, end, cur_start = _time(first.get("from")), _time(current.get("to")), _time(
        current.get("from"))
    if start is None or end is None or cur_start is None:
        return (), ()
    metas = [m for m in snapshots.list_snapshots(store, str(report["target"]))
             if start <= m.taken_at <= end]
    return tuple(metas), tuple(m for m in metas if m.taken_at >= cur_start)


def _moments(stats: Iterable[Moments]) -> Moments:
    out = EMPTY
    for m in stats:
        out = combine(out, m)
    return out


def thin(steps: Sequence[tuple[SnapshotMeta, Moments]], max_points: int = MAX_POINTS
         ) -> tuple[Point, ...]:
    """A point per step (the calls since the snapshot before, at the snapshot); with more
    steps than `max_points`, runs of consecutive steps merged into one point at the run's last
    snapshot, so that a week of 5-minute snapshots stays a readable (and light) chart."""
    size = max(1, math.ceil(len(steps) / max_points))
    out = []
    for i in range(0, len(steps), size):
        run = steps[i: i + size]
        m = _moments(x for _, x in run)
        if m.n:
            meta = run[-1][0]
            out.append(Point(meta.id, meta.taken_at, m.n, m.mean, len(run)))
    return tuple(out)


def regression_series(store: Conn, metas: Sequence[SnapshotMeta],
                      regressions: Sequence[Mapping[str, Any]]) -> dict[int, tuple[Series, ...]]:
    """Per cluster, each regression's mean per call over the calls between consecutive
    snapshots, one point at each snapshot after the first (none where it had no calls; runs
    merged beyond MAX_POINTS, see `thin`)."""
    wanted = {int(q) for r in regressions for q in r.get("queryids") or ()}
    if len(metas) < 2 or not wanted:
        return {}
    rows = snapshots.load_series(store, metas, wanted)
    deltas = [pair_delta(rows[i], rows[i + 1], was_reset(metas[i], metas[i + 1]))
              for i in range(len(metas) - 1)]
    out: dict[int, list[Series]] = {}
    for r in regressions:
        members = {int(q) for q in r.get("queryids") or ()}

        def mine(key: StatementKey, r: Mapping[str, Any] = r, members: set[int] = members
                 ) -> bool:
            return (key[2] in members and key[0] == int(r.get("dbid") or key[0])
                    and key[3] == bool(r.get("toplevel", True)))

        steps = [(meta, _moments(s.moments for k, s in part.items() if mine(k)))
                 for meta, part in zip(metas[1:], deltas, strict=True)]
        cid = r.get("cluster_id")
        out.setdefault(-1 if cid is None else int(cid), []).append(
            Series(str(r.get("queryid")), str(r.get("query") or ""), thin(steps)))
    return {k: tuple(v) for k, v in out.items()}


def top_statements(store: Conn, report: Mapping[str, Any],
                   current: Sequence[SnapshotMeta]
                   ) -> tuple[tuple[TopStatement, ...], float, float]:
    """The current window's statement groups (same database, fingerprint and top-level flag)
    by total time: the top ones, the total, and the part the proposals are for."""
    window = {k: s.moments for k, s in window_stats(store, current).items()}
    texts = snapshots.load_texts(store, str(report["target"]), {(k[0], k[2]) for k in window})
    groups: dict[tuple[int, str, bool], dict[int, Moments]] = {}
    for key, m in window.items():
        text = texts.get((key[0], key[2]))
        fp = text.fingerprint if text is not None and text.fingerprint else f"queryid:{key[2]}"
        members = groups.setdefault((key[0], fp, key[3]), {})
        members[key[2]] = combine(members.get(key[2], EMPTY), m)
    proposals: dict[str, list[str]] = {}
    for rec in report.get("recommendations") or ():
        for q in rec.get("queryids") or ():
            proposals.setdefault(str(q), []).append(str(rec.get("id")))
    rows = []
    total = addressed = 0.0
    for (dbid, _, _), members in groups.items():
        whole = _moments(members.values())
        lead = max(members, key=lambda q: members[q].n)
        text = texts.get((dbid, lead))
        by = tuple(sorted({i for q in members for i in proposals.get(str(q), ())}))
        total += whole.total
        addressed += whole.total if by else 0.0
        rows.append(TopStatement(str(lead), text.query if text else f"queryid {lead}",
                                 whole.n, whole.total, by))
    rows.sort(key=lambda t: -t.total_ms)
    return tuple(rows[:TOP_STATEMENTS]), total, addressed


def load(store: Conn, audit_id: int) -> PageData:
    """Everything the page of one audit shows."""
    report = stored_report(store, audit_id)
    metas, current = window_metas(store, report)
    series = regression_series(store, metas, report.get("regressions") or ())
    top, total, addressed = top_statements(store, report, current) if current else ((), 0.0,
                                                                                     0.0)
    return PageData(report, metas, series, top, total, addressed)
