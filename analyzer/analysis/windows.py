"""Choosing the baseline and current windows among a target's snapshots.

By default the current window ends at the newest snapshot and reaches back
``current_window`` seconds; the baseline window ends where the current one starts and
reaches back ``baseline_window``. Either end of either window can be pinned to a snapshot id
or a time instead (tests, the demo, and an operator comparing two known periods do that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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

    @property
    def current_span(self) -> tuple[datetime, datetime] | None:
        if len(self.current) < 2:
            return None
        return self.current[0].taken_at, self.current[-1].taken_at


def parse_ref(text: str) -> SnapshotRef:
    """A snapshot id (digits) or an ISO-8601 time."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"expected a snapshot id or an ISO-8601 time, got {text!r}") from None


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


def choose_windows(
    metas: Sequence[SnapshotMeta], settings: RegressionSettings,
    request: WindowRequest | None = None,
) -> Windows:
    """Pick the baseline and current windows from a target's snapshots."""
    ordered = sorted(metas, key=lambda m: (m.taken_at, m.id))
    if not ordered:
        return Windows((), ())
    req = request or WindowRequest()
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
    return Windows(_between(ordered, base_from, base_to), _between(ordered, cur_from, cur_to))
