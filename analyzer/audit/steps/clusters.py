"""Steps: clustering the regressions and attributing each cluster its cause."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from analyzer.analysis.causes import ClusterFacts, attribute, catalog_changes
from analyzer.analysis.clustering import ClusterInput, cluster
from analyzer.analysis.features import feature_tokens, unindexed
from analyzer.analysis.regression import Regression
from analyzer.analysis.summary import summarize
from analyzer.analysis.windows import Windows
from analyzer.audit.values import Cluster, Clustering, PlanAnalysis, WindowStatistics
from analyzer.snapshots.catalog import Catalog
from analyzer.store import catalogs
from analyzer.store.catalogs import CatalogHistory
from analyzer.store.connection import Conn


def cluster_regressions(
    regressions: Sequence[Regression], plans: PlanAnalysis, windows: Windows, distance: float,
) -> Clustering:
    """Group the regressions by cause and write each cluster's summary (pure)."""
    if not regressions:
        return Clustering()
    span = windows.current_span
    items = []
    for r in regressions:
        onset = 1.0
        if span is not None and r.changed_since is not None:
            width = (span[1] - span[0]).total_seconds()
            onset = (r.changed_since - span[0]).total_seconds() / width if width > 0 else 0.0
        shape = plans.shapes[r.key]
        items.append(ClusterInput(
            key=f"{r.dbid}:{r.fingerprint}:{int(r.key.toplevel)}",
            tokens=feature_tokens(shape.tables, shape.columns, r.plan,
                                  unindexed(shape.columns, shape.tables, set(plans.indexed),
                                            plans.selective)),
            onset=onset,
            ratio=r.ratio if math.isfinite(r.ratio) else 1e6,
        ))
    labels = cluster(items, distance)
    labelled = tuple(replace(r, cluster_id=lab)
                     for r, lab in zip(regressions, labels, strict=True))
    clusters = []
    for cid in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == cid]
        members = [labelled[i] for i in idx]
        c = Cluster(
            cluster_id=cid, members=tuple(idx),
            queryids=tuple(str(q) for m in members for q in m.queryids),
            tables=tuple(sorted({t for m in members for t in m.tables})),
            summary="", features={"tokens": [dict(items[i].tokens) for i in idx]},
        )
        clusters.append(replace(c, summary=_summary(c, labelled, plans)))
    return Clustering(labelled, tuple(clusters))


def _summary(c: Cluster, regressions: Sequence[Regression], plans: PlanAnalysis) -> str:
    members = [regressions[i] for i in c.members]
    tokens = c.features.get("tokens", [])
    return summarize(members, {n: plans.shapes[m.key].columns for n, m in enumerate(members)},
                     plans.previous_plans,
                     {n: tokens[n].get("unindexed", ()) for n in range(len(tokens))},
                     None if c.cause is None else c.cause.phrase())


def catalogs_since(store: Conn, target: str, windows: Windows) -> CatalogHistory:
    """The stored catalogs from the earliest analysed snapshot on (with the one before it):
    read once per audit, for the causes and the recommendations' write counts."""
    metas = [*windows.baseline, *windows.current]
    return catalogs.history(store, target, min((m.taken_at for m in metas), default=None))


def attribute_causes(
    stats: WindowStatistics, clustering: Clustering, plans: PlanAnalysis, catalog: Catalog,
    history: CatalogHistory,
) -> Clustering:
    """Each cluster's cause from the catalog changes near its onset, said in its summary
    (pure: `history` is `catalogs_since`'s)."""
    if not clustering.clusters:
        return clustering
    metas = sorted({*stats.windows.baseline, *stats.windows.current},
                   key=lambda m: (m.taken_at, m.id))
    facts = []
    for c in clustering.clusters:
        members = [clustering.regressions[i] for i in c.members]
        onsets = [m.changed_since for m in members if m.changed_since is not None]
        facts.append(ClusterFacts(
            tables=c.tables,
            columns=tuple(sorted({col for m in members for col in plans.shapes[m.key].columns})),
            onset=min(onsets) if onsets else None, size=len(members)))
    causes = attribute(facts, catalog_changes(history), [m.taken_at for m in metas], catalog)
    clusters = tuple(replace(c, cause=cause) for c, cause in
                     zip(clustering.clusters, causes, strict=True))
    return replace(clustering, clusters=tuple(
        replace(c, summary=_summary(c, clustering.regressions, plans)) for c in clusters))
