"""Regression detection: baseline window against current window, per statement group.

A statement group is every pg_stat_statements entry with the same database, top-level flag and
pglast fingerprint: an ORM binding its parameter as int2 one time and int8 the next makes two
queryids but one group. A group regressed when all of these hold:

* both windows have at least ``min_calls`` calls;
* the current mean is at least ``min_ratio`` times the baseline mean;
* and at least ``min_delta_ms`` milliseconds slower per call;
* Welch's one-sided t-test on the two windows' means and variances gives p <= ``max_p_value``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
from scipy import stats

from analyzer.analysis.delta import WindowStat
from analyzer.snapshots.model import StatementKey, TextKey
from pgarchitect.config import RegressionSettings

TIMER_RESOLUTION_MS = 0.001

# (dbid, fingerprint, toplevel)
class GroupKey(NamedTuple):
    """A statement group: the statements of one database with one fingerprint, top-level
    or nested."""

    dbid: int
    fingerprint: str
    toplevel: bool


@dataclass(frozen=True)
class GroupStat:
    """A statement group's activity in one window, with its members' queryids by calls."""

    key: GroupKey
    stat: WindowStat
    queryids: tuple[int, ...]
    member_calls: tuple[int, ...] = ()  # calls of each of `queryids`, same order


def merge_groups(parts: Sequence[GroupStat]) -> GroupStat:
    """One group's disjoint windows taken together (members re-ranked by their calls)."""
    stat = parts[0].stat
    calls: dict[int, int] = {}
    for p in parts:
        if p is not parts[0]:
            stat = stat.merge(p.stat)
        for q, c in zip(p.queryids, p.member_calls or (0,) * len(p.queryids), strict=True):
            calls[q] = calls.get(q, 0) + c
    members = sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))
    return GroupStat(parts[0].key, stat, tuple(q for q, _ in members),
                     tuple(c for _, c in members))


@dataclass(frozen=True)
class Regression:
    """One statement group that got significantly slower."""

    key: GroupKey
    queryids: tuple[int, ...]
    baseline: WindowStat
    current: WindowStat
    ratio: float
    p_value: float
    query: str = ""
    changed_since: datetime | None = None
    tables: tuple[str, ...] = ()
    plan: Mapping[str, object] | None = field(default=None, compare=False)
    cluster_id: int | None = None

    @property
    def dbid(self) -> int:
        return self.key.dbid

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    @property
    def queryid(self) -> int:
        """The representative queryid: the member with the most calls in the current window."""
        return self.queryids[0]

    @property
    def delta_ms(self) -> float:
        return self.current.moments.mean - self.baseline.moments.mean


def fingerprint_for(fingerprints: Mapping[tuple[int, int], str], dbid: int, queryid: int) -> str:
    """The group fingerprint of a statement; one of its own when its text is unknown."""
    return fingerprints.get(TextKey(dbid, queryid)) or f"queryid:{queryid}"


def group(
    window: Mapping[StatementKey, WindowStat],
    fingerprints: Mapping[tuple[int, int], str],
) -> dict[GroupKey, GroupStat]:
    """Merge a window's statements into fingerprint groups (exact moment combination)."""
    merged: dict[GroupKey, WindowStat] = {}
    calls: dict[GroupKey, dict[int, int]] = {}
    for (dbid, _userid, queryid, toplevel), stat in window.items():
        gk = GroupKey(dbid, fingerprint_for(fingerprints, dbid, queryid), toplevel)
        prior = merged.get(gk)
        merged[gk] = stat if prior is None else prior.merge(stat)
        per = calls.setdefault(gk, {})
        per[queryid] = per.get(queryid, 0) + stat.calls
    out = {}
    for gk, stat in merged.items():
        members = sorted(calls[gk].items(), key=lambda kv: (-kv[1], kv[0]))
        out[gk] = GroupStat(gk, stat, tuple(q for q, _ in members),
                            tuple(c for _, c in members))
    return out


def welch_p_values(
    base_mean: np.ndarray, base_var: np.ndarray, base_n: np.ndarray,
    cur_mean: np.ndarray, cur_var: np.ndarray, cur_n: np.ndarray,
) -> np.ndarray:
    """One-sided Welch t-test p-values for "current mean > baseline mean", vectorised."""
    a = cur_var / cur_n
    b = base_var / base_n
    se2 = a + b
    diff = cur_mean - base_mean
    p = np.where(diff > 0, 0.0, 1.0)  # no spread at all: the difference is certain
    spread = se2 > 0
    if spread.any():
        t = diff[spread] / np.sqrt(se2[spread])
        denom = (a[spread] ** 2 / np.maximum(cur_n[spread] - 1, 1)
                 + b[spread] ** 2 / np.maximum(base_n[spread] - 1, 1))
        df = np.where(denom > 0, se2[spread] ** 2 / np.where(denom > 0, denom, 1.0), 1.0)
        p[spread] = stats.t.sf(t, df)
    return np.asarray(p, dtype=float)


def detect(
    baseline: Mapping[GroupKey, GroupStat],
    current: Mapping[GroupKey, GroupStat],
    settings: RegressionSettings,
) -> list[Regression]:
    """The groups of `current` that regressed against `baseline`, worst ratio first."""
    pairs = [
        (cur, baseline[gk]) for gk, cur in current.items()
        if gk in baseline
        and cur.stat.calls >= max(settings.min_calls, 2)
        and baseline[gk].stat.calls >= max(settings.min_calls, 2)
    ]
    if not pairs:
        return []
    bm = np.array([b.stat.moments.mean for _, b in pairs])
    cm = np.array([c.stat.moments.mean for c, _ in pairs])
    bv = np.array([b.stat.moments.variance for _, b in pairs])
    cv = np.array([c.stat.moments.variance for c, _ in pairs])
    bn = np.array([b.stat.calls for _, b in pairs], dtype=float)
    cn = np.array([c.stat.calls for c, _ in pairs], dtype=float)
    # pg_stat_statements times have microsecond resolution: a baseline mean of 0 is below it.
    ratio = cm / np.maximum(bm, TIMER_RESOLUTION_MS)
    candidate = (ratio >= settings.min_ratio) & (cm - bm >= settings.min_delta_ms)
    found: list[Regression] = []
    if candidate.any():
        idx = np.flatnonzero(candidate)
        p = welch_p_values(bm[idx], bv[idx], bn[idx], cm[idx], cv[idx], cn[idx])
        for i, pv in zip(idx, p, strict=True):
            if pv <= settings.max_p_value:
                cur, base = pairs[int(i)]
                found.append(Regression(
                    key=cur.key, queryids=cur.queryids, baseline=base.stat, current=cur.stat,
                    ratio=float(ratio[i]),
                    p_value=float(pv),
                ))
    found.sort(key=lambda r: (-r.ratio, r.key))
    return found
