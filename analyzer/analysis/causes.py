"""Attributing a cluster of regressions to what the catalog shows changed near its onset.

Pure: the stored catalog snapshots (changed-only) are diffed pairwise, each change dated by
the snapshot that first saw it; a cluster's onset is the earliest `changed_since` of its
regressions. A change is "near" the onset when it was first seen between the snapshot before
the onset and two snapshots after it (a change in the middle of a snapshot interval may show
in the means one interval late). Among the changes near the onset, the most specific one on
the cluster's own tables wins (docs/analyzer.md, "Causes"). Without evidence there is no
cause: None, never a guess.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analyzer.names import split_qualified
from analyzer.snapshots.catalog import Catalog, CatalogChange, diff

# Change kinds on a table, most specific first; then the ones that concern every table.
TABLE_KINDS = ("index_dropped", "index_invalid", "index_created", "analyzed")
GLOBAL_KINDS = ("setting_changed", "stats_reset")
# Stale statistics: this share of a table's rows changed since its last ANALYZE (autovacuum
# would have analysed it at 10 % by default), and at least this many rows.
STALE_FRACTION = 0.2
STALE_MIN_ROWS = 1000
# Load: at least this many regressions, in at least this many unrelated clusters, began in
# the same snapshot interval without any catalog change near it.
LOAD_MIN_STATEMENTS = 5
LOAD_MIN_CLUSTERS = 3


@dataclass(frozen=True)
class Cause:
    """Why a cluster regressed, as the catalog shows it."""

    kind: str  # index_dropped | index_created | index_invalid | analyzed | stale_statistics
    #            | setting_changed | stats_reset | load
    object: str  # schema.index, schema.table, the setting's name, or what slowed together
    at: datetime  # when the change was first seen (the snapshot that saw it)
    definition: str | None = None  # the index's definition (index kinds)
    table: str | None = None  # schema.table the cause concerns
    before: str | None = None  # setting_changed: old value
    after: str | None = None  # setting_changed: new value

    def to_json(self) -> dict[str, Any]:
        """The cluster's `cause` in the report (docs/report.md)."""
        out: dict[str, Any] = {"kind": self.kind, "object": self.object,
                               "at": self.at.isoformat()}
        if self.definition is not None:
            out["definition"] = self.definition
        if self.table is not None:
            out["table"] = self.table
        if self.kind == "setting_changed":
            out["from"], out["to"] = self.before, self.after
        return out

    def phrase(self) -> str:
        """'when index `events_created_idx` was dropped' (follows 'since 14:05, ')."""
        name = split_qualified(self.object)[1] if self.kind.startswith("index_") else (
            self.object)
        return {
            "index_dropped": f"when index `{name}` was dropped",
            "index_created": f"when index `{name}` was created",
            "index_invalid": f"when index `{name}` became invalid",
            "analyzed": f"when `{name}` was analyzed",
            "stale_statistics": f"with the statistics of `{name}` stale ({self.after})",
            "setting_changed": f"when `{name}` changed from {self.before} to {self.after}",
            "stats_reset": "when the statistics were reset",
            "load": f"together with {self.object} (load, no structural change)",
        }.get(self.kind, self.kind)


@dataclass(frozen=True)
class TimedChange:
    """A catalog change and the time of the snapshot that first saw it."""

    at: datetime
    change: CatalogChange


def catalog_changes(history: Sequence[tuple[datetime, Catalog]]) -> tuple[TimedChange, ...]:
    """Every structural change between consecutive stored catalogs, oldest first."""
    return tuple(TimedChange(b[0], c) for a, b in itertools.pairwise(history)
                 for c in diff(a[1], b[1]))


@dataclass(frozen=True)
class ClusterFacts:
    """What attribution needs to know about one cluster."""

    tables: tuple[str, ...]
    columns: tuple[str, ...]  # predicate columns "schema.table.column"
    onset: datetime | None
    size: int  # number of regressions


def _near(changes: Sequence[TimedChange], times: Sequence[datetime], onset: datetime
          ) -> list[TimedChange]:
    i = max(bisect.bisect_right(times, onset) - 1, 0)
    lo, hi = times[max(i - 1, 0)], times[min(i + 2, len(times) - 1)]
    return [c for c in changes if (lo < c.at <= hi) or (i == 0 and c.at == lo)]


def _mentions(definition: str | None, columns: Sequence[str]) -> bool:
    keys = (definition or "").partition("(")[2]
    return any(c.rpartition(".")[2] in keys for c in columns)


def _from_change(c: TimedChange) -> Cause:
    ch = c.change
    return Cause(ch.kind, ch.object, c.at, ch.definition, ch.table, ch.before, ch.after)


@dataclass(frozen=True)
class TableCause:
    """A table and what is wrong with it."""

    table: str
    detail: str


def _stale(tables: Sequence[str], catalog: Catalog | None) -> TableCause | None:
    if catalog is None:
        return None
    for name in tables:
        t = catalog.table(name)
        if t is None:
            continue
        rows = max(t.live_tuples, int(t.reltuples), 1)
        if t.mod_since_analyze >= max(STALE_MIN_ROWS, STALE_FRACTION * rows):
            return TableCause(name, f"{t.mod_since_analyze:,} of about {rows:,} rows changed "
                                    "since its last ANALYZE")
    return None


def attribute(
    clusters: Sequence[ClusterFacts], changes: Sequence[TimedChange],
    snapshot_times: Sequence[datetime], catalog: Catalog | None = None,
) -> tuple[Cause | None, ...]:
    """The cause of each cluster, or None where the catalog shows none near its onset."""
    times = sorted(snapshot_times)
    causes: list[Cause | None] = []
    for cl in clusters:
        cause: Cause | None = None
        if cl.onset is not None and times:
            near = _near(changes, times, cl.onset)
            on_tables = [c for c in near if c.change.table in cl.tables]
            for kind in TABLE_KINDS:
                found = [c for c in on_tables if c.change.kind == kind]
                if found:
                    # An index over the cluster's predicate columns first.
                    found.sort(key=lambda c: not _mentions(c.change.definition, cl.columns))
                    cause = _from_change(found[0])
                    break
            if cause is None:
                found = [c for c in near if c.change.kind in GLOBAL_KINDS]
                found.sort(key=lambda c: GLOBAL_KINDS.index(c.change.kind))
                if found:
                    cause = _from_change(found[0])
            if cause is None:
                stale = _stale(cl.tables, catalog)
                if stale is not None:
                    cause = Cause("stale_statistics", stale.table, cl.onset, table=stale.table,
                                  after=stale.detail)
        causes.append(cause)
    return _load(clusters, causes, times)


def _load(clusters: Sequence[ClusterFacts], causes: Sequence[Cause | None],
          times: Sequence[datetime]) -> tuple[Cause | None, ...]:
    """Clusters without a cause that began in the same interval as many others: load."""
    out = list(causes)
    by_interval: dict[int, list[int]] = {}
    for n, (cl, cause) in enumerate(zip(clusters, causes, strict=True)):
        if cause is None and cl.onset is not None and times:
            by_interval.setdefault(bisect.bisect_right(times, cl.onset), []).append(n)
    for members in by_interval.values():
        statements = sum(clusters[n].size for n in members)
        if len(members) >= LOAD_MIN_CLUSTERS and statements >= LOAD_MIN_STATEMENTS:
            tables = sorted({t for n in members for t in clusters[n].tables})
            what = f"{statements} statements on {len(tables)} tables"
            for n in members:
                onset = clusters[n].onset
                assert onset is not None
                out[n] = Cause("load", what, onset)
    return tuple(out)


def index_definitions(causes: Mapping[int, Cause | None]) -> dict[int, str]:
    """cluster id -> the definition of the index whose drop caused it (for recommending it
    back)."""
    return {cid: c.definition for cid, c in causes.items()
            if c is not None and c.kind == "index_dropped" and c.definition}
