"""After a recommendation is applied: seeing it applied, and measuring whether it helped.

`observe_catalog` compares the target's valid indexes (from a catalog snapshot) with the
recommended ones by normalised definition, so an index created under another name still
counts: a recommended index found valid makes its recommendation ``applied`` at that moment;
one that disappears again makes it ``reverted``.

`verify` compares an applied recommendation's statements -- all the queryids of their
fingerprints, so an ORM that changes its parameter types is still followed -- before and
after the moment it was applied, with the regression thresholds and Welch's test of
analysis/regression.py turned the other way (docs/analyzer.md, Verification).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from analyzer import lifecycle
from analyzer.analysis.delta import (
    Moments,
    WindowStat,
    merge_windows,
    pair_delta,
    segments,
    was_reset,
)
from analyzer.analysis.regression import TIMER_RESOLUTION_MS, welch_p_values
from analyzer.memory import Embedder, MemoryOutcome, normalise_index_definition, propose_revert
from analyzer.names import split_qualified
from analyzer.recommend.model import Recommendation
from analyzer.snapshots.model import SnapshotMeta
from analyzer.store import recommendations, snapshots
from analyzer.store.connection import Conn
from analyzer.vocabulary import VerificationStatus
from pgarchitect.config import AnalyzerSettings
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.verify")

INDEX_KINDS = ("create_index", "drop_index")
# How sure a revert of an index measured ineffective is: the measurement is real, but "no
# significant gain" is not "no gain at all", so it is not certain either.
REVERT_CONFIDENCE = 0.9


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def observe_catalog(conn: Conn, target: str, valid_indexes: Mapping[str, str],
                    at: datetime | None = None) -> list[lifecycle.Change]:
    """Mark recommendations applied / reverted from the target's valid indexes at `at`.

    `valid_indexes` maps each valid index's schema-qualified name to its pg_get_indexdef.
    A ``create_index`` is applied when its index is present and reverted when it is gone
    again; a ``drop_index`` the other way round.
    """
    present: dict[str, str] = {}
    for name, definition in valid_indexes.items():
        norm = normalise_index_definition(definition)
        if norm is not None:
            present.setdefault(norm, name)
    rows = conn.execute(
        "/* pgarchitect */ SELECT id, kind, status, index_definition"
        " FROM pgarchitect.optimization_log WHERE target = %s AND index_definition IS NOT NULL"
        " AND kind = ANY(%s) AND status = ANY(%s) ORDER BY id",
        (target, list(INDEX_KINDS), ["proposed", "accepted", "applied", "verified",
                                     "ineffective"]),
    ).fetchall()
    changes = []
    for rec_id, kind, status, definition in rows:
        found = present.get(definition)
        wants_present = kind == "create_index"
        if status in lifecycle.PENDING and (found is not None) == wants_present:
            note = (f"index {found} found valid on the target" if wants_present
                    else "the index is no longer on the target")
            change = recommendations.set_status(conn, int(rec_id), "applied", "analyzer", note, at)
            if found is not None:
                conn.execute("/* pgarchitect */ UPDATE pgarchitect.optimization_log"
                             " SET evidence = evidence || %s WHERE id = %s",
                             (Jsonb({"applied_index": found}), rec_id))
            changes.append(change)
        elif status not in lifecycle.PENDING and (found is not None) != wants_present:
            note = ("the index is no longer on the target" if wants_present
                    else f"index {found} is on the target again")
            changes.append(recommendations.set_status(conn, int(rec_id), "reverted", "analyzer",
                                                      note, at))
    for c in changes:
        log.info(event("recommendation.observed", target=target, id=c.recommendation_id,
                       status=c.to_status))
    return changes


@dataclass(frozen=True)
class Verification:
    """The measured effect of one applied recommendation (a report `verifications` entry).

    `ratio` is after / before per-call latency (0.02: fifty times faster); `p_value` is
    Welch's one-sided test of "faster after".
    """

    id: int
    status: VerificationStatus
    applied_at: datetime
    queryids: tuple[str, ...]
    calls_before: int
    calls_after: int
    before_mean_ms: float | None
    after_mean_ms: float | None
    ratio: float | None
    p_value: float | None
    note: str

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, digits: int = 4) -> float | None:
            return None if v is None else round(v, digits)

        return {"id": str(self.id), "status": self.status,
                "applied_at": self.applied_at.isoformat(), "queryids": list(self.queryids),
                "calls_before": self.calls_before, "calls_after": self.calls_after,
                "before_mean_ms": r(self.before_mean_ms), "after_mean_ms": r(self.after_mean_ms),
                "ratio": r(self.ratio), "p_value": None if self.p_value is None
                else float(f"{self.p_value:.3g}"), "note": self.note}


@dataclass(frozen=True)
class VerifyResult:
    """What one verification pass measured, and the reverts it proposed."""

    verifications: tuple[Verification, ...]
    reverts: tuple[MemoryOutcome, ...]


def _members(conn: Conn, target: str, queryids: Sequence[str]) -> set[int]:
    """Every queryid sharing a fingerprint with one of `queryids` (and those themselves)."""
    ids = [int(q) for q in queryids]
    rows = conn.execute(
        "/* pgarchitect */ SELECT DISTINCT o.queryid FROM pgarchitect.statement_text o"
        " WHERE o.target = %(t)s AND o.fingerprint IN (SELECT fingerprint"
        "   FROM pgarchitect.statement_text WHERE target = %(t)s AND queryid = ANY(%(q)s)"
        "   AND fingerprint IS NOT NULL)", {"t": target, "q": ids},
    ).fetchall()
    return {int(r[0]) for r in rows} | set(ids)


def _window(conn: Conn, metas: Sequence[SnapshotMeta], queryids: set[int]) -> WindowStat | None:
    """The top-level activity of `queryids` over a run of snapshots, as one sample."""
    parts = []
    for a, b in segments(metas):
        start = snapshots.load_counters(conn, a.id, queryids)
        end = snapshots.load_counters(conn, b.id, queryids)
        parts.append(pair_delta(start, end, was_reset(a, b)))
    stats = [s for k, s in merge_windows(parts).items() if k[3]]
    return functools.reduce(WindowStat.merge, stats) if stats else None


def measure(conn: Conn, target: str, rec: lifecycle.StoredRecommendation,
            settings: AnalyzerSettings,
            metas: Sequence[SnapshotMeta] | None = None) -> Verification:
    """Compare an applied recommendation's statements before and after it was applied."""
    assert rec.applied_at is not None
    applied_at = rec.applied_at
    rs = settings.regression
    metas = snapshots.list_snapshots(conn, target) if metas is None else metas
    # The interval that contains the moment of applying holds calls of both kinds: it
    # belongs to neither side.
    earlier = [m for m in metas if m.taken_at < applied_at]
    after = [m for m in metas if m.taken_at >= applied_at]
    before: list[SnapshotMeta] = []
    if earlier:
        since = earlier[-1].taken_at - timedelta(seconds=rs.baseline_window)
        before = [m for m in earlier if m.taken_at >= since]
    queryids = _members(conn, target, rec.recommendation.queryids)
    b = _window(conn, before, queryids)
    a = _window(conn, after, queryids)
    calls_before = b.calls if b else 0
    calls_after = a.calls if a else 0
    ids = tuple(str(q) for q in sorted(queryids))

    def result(status: VerificationStatus, bm: float | None, am: float | None,
               ratio: float | None, p: float | None, note: str) -> Verification:
        return Verification(rec.id, status, applied_at, ids, calls_before, calls_after, bm, am,
                            ratio, p, note)

    if b is None or calls_before < max(rs.min_calls, 2):
        return result(VerificationStatus.PENDING, None, None, None, None,
                      "waiting for calls before it was applied: "
                      f"{calls_before} of {max(rs.min_calls, 2)}")
    d = decide(b.moments, a.moments if a is not None else None, settings)
    return result(d.status, b.moments.mean, a.moments.mean if a is not None else None,
                  d.ratio, d.p_value, d.note)


@dataclass(frozen=True)
class Decision:
    """What Welch's test says of one before/after pair of samples."""

    status: VerificationStatus
    ratio: float | None  # after / before per call
    p_value: float | None  # one-sided: "faster after"
    p_not_faster: float | None  # one-sided: "not the gain the thresholds ask for"
    note: str


def _p(base: Moments, cur_mean: float, cur_var: float, cur_n: float) -> float:
    """Welch's one-sided p-value for "current mean > base mean"."""
    return float(welch_p_values(
        np.array([base.mean]), np.array([base.variance]), np.array([float(base.n)]),
        np.array([cur_mean]), np.array([cur_var]), np.array([cur_n]))[0])


def decide(before: Moments, after: Moments | None, settings: AnalyzerSettings) -> Decision:
    """Verified, ineffective or pending, as soon as Welch's test is conclusive.

    With at least `verification.min_calls` calls after the change, two one-sided tests at
    `regression.max_p_value`: *verified* when "before is slower than after" holds and the
    gain reaches `regression.min_ratio` and `min_delta_ms` per call; *ineffective* when
    "after is slower than the least gain that counts" holds (the after mean is significantly
    above min(before / min_ratio, before - min_delta_ms)); *pending* while neither is, with
    what it waits for.
    """
    rs = settings.regression
    need = settings.verification.min_calls
    n_after = after.n if after is not None else 0
    if after is None or n_after < max(need, 2):
        return Decision(VerificationStatus.PENDING, None, None, None,
                        f"waiting for calls: {n_after} of {need} calls measured since it was "
                        "applied")
    bm, am = before.mean, after.mean
    ratio = am / max(bm, TIMER_RESOLUTION_MS)
    gain = bm / max(am, TIMER_RESOLUTION_MS)
    # "before slower than after": the regression test with the windows swapped.
    p_faster = _p(after, bm, before.variance, float(before.n))
    # The largest after-mean that still counts as a gain, and its spread (a scaled or shifted
    # before-mean): "after slower than that" is the test for no gain worth the name.
    by_ratio, by_delta = bm / rs.min_ratio, bm - rs.min_delta_ms
    if by_ratio <= by_delta:
        level = Moments(before.n, by_ratio * before.n, before.m2 / rs.min_ratio ** 2)
    else:
        level = Moments(before.n, by_delta * before.n, before.m2)
    p_not = _p(level, am, after.variance, float(after.n))
    figures = (f"{bm:.3f} ms -> {am:.3f} ms per call ({gain:.1f}x) over {after.n} calls "
               f"after, {before.n} before")
    bar = f"x{rs.min_ratio:g} and {rs.min_delta_ms:g} ms per call at p <= {rs.max_p_value:g}"
    if p_faster <= rs.max_p_value and gain >= rs.min_ratio and bm - am >= rs.min_delta_ms:
        return Decision(VerificationStatus.VERIFIED, ratio, p_faster, p_not,
                        f"{figures}, p = {p_faster:.2g}")
    if p_not <= rs.max_p_value:
        return Decision(VerificationStatus.INEFFECTIVE, ratio, p_faster, p_not,
                        f"{figures}: no gain of {bar} (p = {p_not:.2g} that there is none)")
    return Decision(VerificationStatus.PENDING, ratio, p_faster, p_not,
                    f"{figures}: waiting for Welch's test to decide for or against a gain "
                    f"of {bar} (p = {p_faster:.2g} faster, {p_not:.2g} not)")


def _revert_of(rec: lifecycle.StoredRecommendation, v: Verification) -> Recommendation:
    r = rec.recommendation
    ddl = r.revert_ddl
    found = r.evidence.get("applied_index")
    if isinstance(found, str) and found:
        # The index found on the target may have another name than the one proposed.
        schema, name = split_qualified(found)
        qualified = f"{_quote(schema)}.{_quote(name)}" if schema else _quote(name)
        ddl = f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}"
    return Recommendation(
        kind="drop_index", table=r.table, columns=r.columns, ddl=ddl, revert_ddl=r.ddl,
        rationale=(f"Recommendation {rec.id} was applied at {v.applied_at.isoformat()} and "
                   f"measured ineffective: {v.note}. The index costs writes and space for no "
                   "measured gain."),
        confidence=REVERT_CONFIDENCE, queryids=v.queryids, statements=r.statements,
        evidence={"reverts": str(rec.id), "measured": v.to_json()}, validated_by="none",
    )


def verify(conn: Conn, target: str, settings: AnalyzerSettings, *, embedder: Embedder,
           audit_id: int | None = None) -> VerifyResult:
    """Measure every applied index recommendation of `target`; record verified / ineffective
    (with the figures), keep the figures of pending ones, propose reverts of ineffective ones.
    """
    metas = snapshots.list_snapshots(conn, target)
    verifications = []
    reverts = []
    for rec in recommendations.list_recommendations(conn, target, "applied"):
        if rec.recommendation.kind != "create_index" or rec.applied_at is None:
            continue
        v = measure(conn, target, rec, settings, metas)
        verifications.append(v)
        if v.status == VerificationStatus.PENDING:
            conn.execute("/* pgarchitect */ UPDATE pgarchitect.optimization_log"
                         " SET measured_change = %s WHERE id = %s", (Jsonb(v.to_json()), rec.id))
            continue
        recommendations.set_status(conn, rec.id, v.status, "analyzer", v.note, measured=v.to_json())
        if v.status == VerificationStatus.INEFFECTIVE:
            reverts.append(propose_revert(conn, target, rec, _revert_of(rec, v),
                                          embedder=embedder, settings=settings,
                                          audit_id=audit_id))
        log.info(event("recommendation.verified", target=target, id=rec.id, status=v.status,
                       ratio=None if v.ratio is None else round(v.ratio, 4),
                       calls_after=v.calls_after))
    return VerifyResult(tuple(verifications), tuple(reverts))
