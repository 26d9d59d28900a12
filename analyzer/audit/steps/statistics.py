"""Steps: window statistics and the regressions' onsets (detection itself is pure:
analyzer.analysis.regression.detect)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from analyzer.analysis.delta import WindowStat, merge_windows, pair_delta, segments, was_reset
from analyzer.analysis.regression import GroupKey, Regression, group, merge_groups
from analyzer.analysis.windows import (
    WindowRequest,
    Windows,
    candidate_points,
    change_points,
    choose_windows,
)
from analyzer.audit.values import WindowStatistics
from analyzer.snapshots.model import SnapshotMeta, StatementCounters, StatementKey, TextKey
from analyzer.store import snapshots
from analyzer.store.connection import Conn
from analyzer.store.states import SnapshotStates
from pgarchitect.config import RegressionSettings


def window_stats(
    store: Conn, metas: Sequence[SnapshotMeta],
    cache: dict[int, dict[StatementKey, StatementCounters]] | None = None,
) -> dict[StatementKey, WindowStat]:
    """Per-statement activity over a window of snapshots (exact across resets and evictions)."""
    loaded = {} if cache is None else cache
    parts = []
    for a, b in segments(metas):
        for m in (a, b):
            if m.id not in loaded:
                loaded[m.id] = snapshots.load_counters(store, m.id)
        parts.append(pair_delta(loaded[a.id], loaded[b.id], was_reset(a, b)))
    return merge_windows(parts)


def window_statistics(
    store: Conn, target: str, settings: RegressionSettings, stored: Sequence[SnapshotMeta],
    request: WindowRequest | None, states: SnapshotStates | None = None,
) -> WindowStatistics:
    """Choose the windows among the `stored` snapshots and sum each statement group's calls
    (the snapshots' states read through `states`, the process's kept ones, when given)."""
    windows = choose_windows(stored, settings, request)
    cache: dict[int, dict[StatementKey, StatementCounters]] = (
        {} if states is None else states.load(store, target, _ends(windows)))
    if windows.mode == "change_point":
        return _change_point_statistics(store, target, windows, settings, cache)
    base_window = window_stats(store, windows.baseline, cache) if windows.baseline else {}
    cur_window = window_stats(store, windows.current, cache)
    keys = {TextKey(k.dbid, k.queryid) for k in (*base_window, *cur_window)}
    texts = snapshots.load_texts(store, target, keys)
    fingerprints = {k: t.fingerprint for k, t in texts.items()}
    return WindowStatistics(
        windows=windows,
        baseline=group(base_window, fingerprints),
        current=group(cur_window, fingerprints),
        texts={k: t.query for k, t in texts.items()},
        fingerprints=fingerprints,
    )


def _parts(windows: Windows) -> list[Sequence[SnapshotMeta]]:
    """The runs of snapshots whose activity window_statistics sums (`window_stats` each)."""
    if windows.mode == "change_point":
        metas = windows.current
        return [metas[a: b + 1] for a, b in itertools.pairwise(candidate_points(len(metas)))]
    return [w for w in (windows.baseline, windows.current) if w]


def _ends(windows: Windows) -> list[SnapshotMeta]:
    """The snapshots whose states those sums read."""
    return [m for part in _parts(windows) for pair in segments(part) for m in pair]


def _change_point_statistics(
    store: Conn, target: str, windows: Windows, settings: RegressionSettings,
    cache: dict[int, dict[StatementKey, StatementCounters]],
) -> WindowStatistics:
    """Each statement group split at its own change point (short history)."""
    metas = windows.current
    points = candidate_points(len(metas))
    raw = [window_stats(store, part, cache) for part in _parts(windows)]
    keys = {TextKey(k.dbid, k.queryid) for part in raw for k in part}
    stored = snapshots.load_texts(store, target, keys)
    fingerprints = {k: t.fingerprint for k, t in stored.items()}
    parts = [group(part, fingerprints) for part in raw]
    splits = change_points(parts, settings.min_calls)
    # A group with too few calls for any split is still analysed: its whole history is current.
    whole = {gk: merge_groups([p[gk] for p in parts if gk in p])
             for gk in {gk for p in parts for gk in p} - splits.keys()}
    return WindowStatistics(
        windows=windows,
        baseline={gk: sp.baseline for gk, sp in splits.items()},
        current={**whole, **{gk: sp.current for gk, sp in splits.items()}},
        texts={k: t.query for k, t in stored.items()},
        fingerprints=fingerprints,
        splits={gk: metas[points[sp.boundary]] for gk, sp in splits.items()},
    )


def regression_onsets(
    store: Conn, stats: WindowStatistics, found: Sequence[Regression],
    settings: RegressionSettings,
) -> dict[GroupKey, datetime]:
    """When each regressed group's per-call time first crossed the thresholds."""
    if not found:
        return {}
    if stats.splits:  # change points: the current window starts where the change began
        return {r.key: stats.splits[r.key].taken_at for r in found if r.key in stats.splits}
    metas = stats.windows.current
    queryids = {q for r in found for q in r.queryids}
    rows = snapshots.load_series(store, metas, queryids)
    baseline = {r.key: r.baseline.moments.mean for r in found}
    onsets: dict[GroupKey, datetime] = {}
    for i in range(len(metas) - 1):
        part = pair_delta(rows[i], rows[i + 1], was_reset(metas[i], metas[i + 1]))
        for gk, stat in group(part, stats.fingerprints).items():
            if gk in onsets or gk not in baseline:
                continue
            mean = stat.stat.moments.mean
            if (mean >= baseline[gk] * settings.min_ratio
                    and mean - baseline[gk] >= settings.min_delta_ms):
                onsets[gk] = metas[i].taken_at
    return onsets
