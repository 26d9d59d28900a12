"""Choosing the baseline and current windows among a target's snapshots.

Four modes (docs/analyzer.md, "Windows"):

* ``configured`` -- with at least ``baseline_window + current_window`` of history, the
  current window ends at the newest snapshot and reaches back ``current_window``; the
  baseline ends where the current one starts and reaches back ``baseline_window``.
* ``change_point`` -- with less history, each statement group is split at its own change
  point: the snapshot boundary with the strongest Welch statistic between the per-call
  latency before and after it (`change_points`).
* ``no_baseline`` -- fewer than three snapshots: nothing to compare yet, and the report says so.
* ``pinned`` -- either end of either window pinned to a snapshot id or a time (tests, the
  demo, and an operator comparing two known periods do that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from analyzer.analysis.regression import GroupKey, GroupStat, merge_groups
from analyzer.snapshots.model import SnapshotMeta
from pgarchitect.config import RegressionSettings
from pgarchitect.errors import UserError

SnapshotRef = int | datetime


@dataclass(frozen=True)
class WindowRequest:
    """Optional pins for the window ends: snapshot ids or times (None: use the default)."""

    baseline_from: SnapshotRef | None = None
    baseline_to: SnapshotRef | None = None
    current_from: SnapshotRef | None = None
    current_to: SnapshotRef | None = None


@dataclass(frozen=True)
class Windows:
    """The snapshots of each window, oldest first (a window needs two to hold anything)."""

    baseline: tuple[SnapshotMeta, ...]
    current: tuple[SnapshotMeta, ...]
    mode: str = "configured"  # configured | change_point | no_baseline | pinned
    note: str = ""  # one line for the report: what was compared, or why nothing was

    @property
    def current_span(self) -> tuple[datetime, datetime] | None:
        if len(self.current) < 2:
            return None
        return self.current[0].taken_at, self.current[-1].taken_at


def parse_ref(text: str) -> SnapshotRef:
    """A snapshot id (ASCII digits) or an ISO-8601 time; a time without an offset is UTC."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"expected a snapshot id or an ISO-8601 time, got {text!r}") from None
    # Snapshot times are stored with their offset; a bare time is read as UTC so that the
    # two compare (and mean the same on every machine, whatever its time zone).
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _at_or_before(metas: Sequence[SnapshotMeta], when: datetime) -> SnapshotMeta:
    before = [m for m in metas if m.taken_at <= when]
    return before[-1] if before else metas[0]


def _resolve(metas: Sequence[SnapshotMeta], ref: SnapshotRef) -> SnapshotMeta:
    if isinstance(ref, datetime):
        return _at_or_before(metas, ref)
    for m in metas:
        if m.id == ref:
            return m
    raise UserError(f"snapshot {ref} does not exist for this target")


def _between(metas: Sequence[SnapshotMeta], a: SnapshotMeta, b: SnapshotMeta) -> tuple[
        SnapshotMeta, ...]:
    lo, hi = (a.taken_at, a.id), (b.taken_at, b.id)
    if lo > hi:
        raise UserError(f"window from snapshot {a.id} to {b.id} runs backwards")
    return tuple(m for m in metas if lo <= (m.taken_at, m.id) <= hi)


MIN_SNAPSHOTS = 3  # a baseline pair and a current pair need at least three snapshots
# Change-point candidates: every one of the latest boundaries (a regression minutes ago is
# placed exactly), and evenly spread ones before them (an older change is placed roughly).
RECENT_BOUNDARIES = 24
EARLIER_BOUNDARIES = 24


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else (
                f"{value:.1f}{unit}")
    return f"{seconds:.0f}s"


def choose_windows(
    metas: Sequence[SnapshotMeta], settings: RegressionSettings,
    request: WindowRequest | None = None,
) -> Windows:
    """Pick the baseline and current windows from a target's snapshots."""
    ordered = tuple(sorted(metas, key=lambda m: (m.taken_at, m.id)))
    if request is not None and request != WindowRequest():
        return _pinned(ordered, settings, request)
    configured = settings.baseline_window + settings.current_window
    if len(ordered) < MIN_SNAPSHOTS:
        return Windows((), ordered, "no_baseline",
                       f"no baseline yet: {len(ordered)} snapshot"
                       f"{'' if len(ordered) == 1 else 's'}, an audit needs at least "
                       f"{MIN_SNAPSHOTS} (take more with `pgarchitect snapshot`)")
    span = (ordered[-1].taken_at - ordered[0].taken_at).total_seconds()
    if span < configured:
        return Windows(ordered, ordered, "change_point",
                       f"{len(ordered)} snapshots over {_duration(span)}, less than the "
                       f"configured {_duration(settings.baseline_window)} baseline + "
                       f"{_duration(settings.current_window)} current: each statement "
                       "group compared before and after its own change point "
                       "(its changed_since)")
    windows = _pinned(ordered, settings, WindowRequest())
    return Windows(windows.baseline, windows.current, "configured",
                   f"the configured windows: {_duration(settings.baseline_window)} baseline, "
                   f"{_duration(settings.current_window)} current")


def _pinned(ordered: Sequence[SnapshotMeta], settings: RegressionSettings,
            req: WindowRequest) -> Windows:
    if not ordered:
        return Windows((), (), "no_baseline", "no baseline yet: no snapshots")
    cur_to = _resolve(ordered, req.current_to) if req.current_to is not None else ordered[-1]
    if req.current_from is not None:
        cur_from = _resolve(ordered, req.current_from)
    else:
        cur_from = _at_or_before(ordered, cur_to.taken_at - timedelta(
            seconds=settings.current_window))
    base_to = _resolve(ordered, req.baseline_to) if req.baseline_to is not None else cur_from
    if req.baseline_from is not None:
        base_from = _resolve(ordered, req.baseline_from)
    else:
        base_from = _at_or_before(ordered, base_to.taken_at - timedelta(
            seconds=settings.baseline_window))
    baseline = _between(ordered, base_from, base_to)
    current = _between(ordered, cur_from, cur_to)
    note = (f"pinned: baseline snapshots {base_from.id}..{base_to.id}, current "
            f"{cur_from.id}..{cur_to.id}")
    return Windows(baseline, current, "pinned", note)


def candidate_points(count: int) -> list[int]:
    """Snapshot positions that bound the parts of a change-point search over `count` snapshots:
    the first and the last, and the candidate boundaries between them."""
    inner = list(range(1, count - 1))
    recent = inner[-RECENT_BOUNDARIES:]
    earlier = inner[: max(len(inner) - RECENT_BOUNDARIES, 0)]
    if len(earlier) > EARLIER_BOUNDARIES:
        picks = np.linspace(0, len(earlier) - 1, EARLIER_BOUNDARIES).round().astype(int)
        earlier = [earlier[int(i)] for i in sorted(set(picks.tolist()))]
    return [0, *earlier, *recent, count - 1] if count >= 2 else list(range(count))


@dataclass(frozen=True)
class Split:
    """One statement group cut at its change point."""

    baseline: GroupStat
    current: GroupStat
    boundary: int  # index into the parts: the current window starts with parts[boundary]


def change_points(parts: Sequence[Mapping[GroupKey, GroupStat]], min_calls: int
                  ) -> dict[GroupKey, Split]:
    """Per statement group, the boundary between consecutive `parts` (disjoint windows, oldest
    first) with the strongest Welch statistic |t| between the calls before and after it.

    Only boundaries with at least `min_calls` calls on either side count; on a tie the later
    boundary wins. The search uses raw sums (fast, vectorised); the chosen split's statistics
    are then combined exactly.
    """
    keys = sorted({gk for part in parts for gk in part})
    if len(parts) < 2 or not keys:
        return {}
    index = {gk: i for i, gk in enumerate(keys)}
    n = np.zeros((len(keys), len(parts)))
    s = np.zeros_like(n)
    q = np.zeros_like(n)  # sum of squares: M2 + n * mean^2
    for j, part in enumerate(parts):
        for gk, g in part.items():
            m = g.stat.moments
            i = index[gk]
            n[i, j], s[i, j], q[i, j] = m.n, m.total, m.m2 + m.n * m.mean ** 2
    cn, cs, cq = (np.cumsum(a, axis=1) for a in (n, s, q))
    # Boundary b (1..len-1): baseline = parts[:b], current = parts[b:].
    bn, bs, bq = cn[:, :-1], cs[:, :-1], cq[:, :-1]
    an, as_, aq = cn[:, -1:] - bn, cs[:, -1:] - bs, cq[:, -1:] - bq
    with np.errstate(divide="ignore", invalid="ignore"):
        bmean, amean = bs / bn, as_ / an
        bvar = np.maximum(bq - bs * bmean, 0) / np.maximum(bn - 1, 1)
        avar = np.maximum(aq - as_ * amean, 0) / np.maximum(an - 1, 1)
        se = np.sqrt(bvar / bn + avar / an)
        diff = amean - bmean
        t = np.where(se > 0, np.abs(diff) / se, np.where(diff != 0, np.inf, 0.0))
    enough = (bn >= max(min_calls, 2)) & (an >= max(min_calls, 2))
    t = np.where(enough, np.nan_to_num(t, nan=0.0, posinf=np.finfo(float).max), -1.0)
    out: dict[GroupKey, Split] = {}
    for gk, i in index.items():
        row = t[i]
        if row.max() < 0:
            continue
        b = int(len(row) - 1 - np.argmax(row[::-1])) + 1  # the latest of the strongest
        out[gk] = Split(merge_groups([p[gk] for p in parts[:b] if gk in p]),
                        merge_groups([p[gk] for p in parts[b:] if gk in p]), b)
    return out
