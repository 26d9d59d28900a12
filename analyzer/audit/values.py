"""The values the audit steps hand on: frozen, none written after it is made."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from analyzer.analysis.causes import Cause
from analyzer.analysis.features import StatementShape
from analyzer.analysis.regression import GroupKey, GroupStat, Regression
from analyzer.analysis.windows import Windows
from analyzer.audit.records import cluster_record, regression_record
from analyzer.recommend.model import RecommendResult
from analyzer.snapshots.catalog import Catalog
from analyzer.snapshots.model import SnapshotMeta
from pgarchitect.config import AnalyzerSettings
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.audit")

StepHook = Callable[[str], None]


class Step(StrEnum):
    """The names `on_step` is called with, in the order `run_audit` reaches them."""

    SNAPSHOT = "snapshot"  # and the recommendations its catalog shows applied / reverted
    WINDOWS = "windows"
    REGRESSIONS = "regressions"
    PLANS = "plans"
    CLUSTER = "cluster"
    CAUSES = "causes"
    RECOMMEND = "recommend"
    STORE = "store"  # the result transaction opens
    MEMORY = "memory"
    VERIFY = "verify"
    STORE_REGRESSIONS = "store.regressions"  # half-way through it (tests stop the store there)


# Derived: tests check that an audit calls `on_step` with exactly these, in this order.
STEPS = tuple(Step)


def step_reached(hook: StepHook | None, name: str) -> None:
    """Log the step and tell the caller's hook (tests stop the store at a step)."""
    log.debug(event("audit.step", step=name))
    if hook is not None:
        hook(name)


@dataclass(frozen=True)
class WindowStatistics:
    """Per statement group, its activity in the baseline and the current window."""

    windows: Windows
    baseline: Mapping[GroupKey, GroupStat]
    current: Mapping[GroupKey, GroupStat]
    texts: Mapping[tuple[int, int], str]  # keyed by TextKey (dbid, queryid)
    fingerprints: Mapping[tuple[int, int], str]
    # change_point mode: the snapshot each group's current window starts at
    splits: Mapping[GroupKey, SnapshotMeta] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanAnalysis:
    """What the target says about the statements worth a closer look."""

    shapes: Mapping[GroupKey, StatementShape]
    plans: Mapping[GroupKey, Mapping[str, Any]]
    previous_plans: Mapping[tuple[int, str], Mapping[str, Any]]
    indexed: frozenset[str]  # "schema.table.column" leading a valid index
    selective: Mapping[str, bool]  # column -> has enough distinct values to be worth an index


@dataclass(frozen=True)
class Cluster:
    """Regressions with a common cause."""

    cluster_id: int
    members: tuple[int, ...]  # positions in Clustering.regressions
    queryids: tuple[str, ...]
    tables: tuple[str, ...]
    summary: str
    features: Mapping[str, Any] = field(default_factory=dict)
    cause: Cause | None = None


@dataclass(frozen=True)
class Clustering:
    """The regressions with their cluster ids, and the clusters."""

    regressions: tuple[Regression, ...] = ()
    clusters: tuple[Cluster, ...] = ()


@dataclass(frozen=True)
class Detection:
    """What the detection prefix both workflows share found: the window statistics, the
    plans and the regressions clustered (without causes)."""

    statistics: WindowStatistics
    plans: PlanAnalysis
    clustering: Clustering


@dataclass(frozen=True)
class RecommendationInput:
    """What the recommendation step receives (all frozen)."""

    regressions: tuple[Regression, ...]
    clusters: tuple[Cluster, ...]  # with their causes (a dropped index's definition)
    statistics: WindowStatistics  # per statement group, baseline and current; texts
    plans: PlanAnalysis
    catalog: Catalog  # the target's catalog at this audit's snapshot
    settings: AnalyzerSettings = field(default_factory=AnalyzerSettings)
    server_version_num: int = 0
    observed_since: datetime | None = None  # the target's first snapshot
    # rows written per table over the current window (None: not known, the engine estimates)
    table_writes: Mapping[str, int] | None = None


# The recommendation step: reads the target through the held connection (validation), gets
# everything else as frozen values. The default is the recommend engine (`engine_recommender`);
# tests may pass another.
Recommender = Callable[[psycopg.Connection[Any], RecommendationInput], RecommendResult]


@dataclass(frozen=True)
class Remembered:
    """The recommendations after the memory: report entries proposed (new or merged into a
    pending one, with their ids) and refused or not proposed, each with its reason."""

    proposed: tuple[Mapping[str, Any], ...] = ()
    not_proposed: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class AuditResult:
    """The outcome of one audit; the analyzer service derives its self-metrics from it."""

    audit_id: int
    target: str
    status: str
    server_version: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    snapshot_id: int | None
    snapshot_duration_seconds: float
    statements_analyzed: int
    regressions: tuple[Regression, ...]
    clusters: tuple[Cluster, ...]
    recommendations: tuple[Mapping[str, Any], ...] = ()
    not_proposed: tuple[Mapping[str, Any], ...] = ()
    windows: Mapping[str, Any] = field(default_factory=dict)
    verifications: tuple[Mapping[str, Any], ...] = ()
    validation: Mapping[str, Any] = field(default_factory=dict)
    workload: Mapping[str, float] | None = None  # ms per day before / after the proposed set

    def to_json(self) -> dict[str, Any]:
        """The audit report (docs/report.md); queryids are strings."""
        return {
            "audit_id": str(self.audit_id),
            "target": self.target,
            "server_version": self.server_version,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "statements_analyzed": self.statements_analyzed,
            "windows": dict(self.windows),
            "regressions": [regression_record(r) for r in self.regressions],
            "clusters": [cluster_record(c) for c in self.clusters],
            "recommendations": [dict(r) for r in self.recommendations],
            "not_proposed": [dict(r) for r in self.not_proposed],
            "verifications": [dict(v) for v in self.verifications],
            "validation": dict(self.validation),
            "workload": None if self.workload is None else dict(self.workload),
        }


@dataclass(frozen=True)
class QuickCheck:
    """The outcome of a quick regression check (no plans, no validation, nothing stored)."""

    target: str
    checked_at: datetime
    statements_analyzed: int
    regressions: int
    clusters: int
    windows: Mapping[str, Any] = field(default_factory=dict)
