"""Change points and cause attribution: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analyzer.analysis.causes import ClusterFacts, TimedChange, attribute
from analyzer.analysis.delta import Moments, WindowStat
from analyzer.analysis.regression import GroupStat
from analyzer.analysis.windows import candidate_points, change_points
from analyzer.snapshots.catalog import CatalogChange

T0 = datetime(2025, 1, 7, 14, 0, tzinfo=UTC)
KEY = (1, "fp", True)


def part(calls: int, mean: float, sd: float) -> dict[tuple[int, str, bool], GroupStat]:
    stat = WindowStat(Moments(calls, calls * mean, (calls - 1) * sd * sd))
    return {KEY: GroupStat(KEY, stat, (7,), (calls,))}


def test_change_point_is_the_boundary_that_separates_best() -> None:
    parts = [part(50, 1.0, 0.1), part(50, 1.02, 0.1), part(50, 0.98, 0.1), part(50, 9.0, 1.0)]
    split = change_points(parts, min_calls=20)[KEY]
    assert split.boundary == 3
    assert split.baseline.stat.calls == 150 and split.current.stat.calls == 50
    assert abs(split.current.stat.moments.mean - 9.0) < 1e-9
    assert split.current.member_calls == (50,)


def test_change_point_needs_calls_on_both_sides() -> None:
    parts = [part(50, 1.0, 0.1), part(5, 9.0, 0.1)]
    assert change_points(parts, min_calls=20) == {}


def test_candidate_points_keep_every_recent_boundary() -> None:
    assert candidate_points(3) == [0, 1, 2]
    points = candidate_points(1000)
    assert points[0] == 0 and points[-1] == 999
    assert points[-25:-1] == list(range(975, 999))
    assert len(points) <= 50 and points == sorted(set(points))


def times(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=5 * i) for i in range(n)]


def test_dropped_index_near_onset_is_the_cause_and_a_distant_one_is_not() -> None:
    ts = times(10)
    drop = CatalogChange("index_dropped", "public.t_k_idx", "CREATE INDEX t_k_idx ON public.t "
                         "USING btree (k)", "public.t")
    other = CatalogChange("index_dropped", "public.t_z_idx", "CREATE INDEX t_z_idx ON public.t "
                          "USING btree (z)", "public.t")
    facts = ClusterFacts(("public.t",), ("public.t.k",), ts[6], 3)
    (cause,) = attribute([facts], [TimedChange(ts[7], other), TimedChange(ts[7], drop)], ts)
    assert cause is not None and cause.object == "public.t_k_idx"  # the one over `k`
    assert cause.definition is not None and cause.at == ts[7]
    # Seen long before the onset, or on another table: no evidence, no cause.
    far = attribute([facts], [TimedChange(ts[2], drop)], ts)
    elsewhere = attribute([ClusterFacts(("public.u",), (), ts[6], 3)],
                          [TimedChange(ts[7], drop)], ts)
    assert far == (None,) and elsewhere == (None,)


def test_many_unrelated_clusters_at_once_without_change_are_load() -> None:
    ts = times(6)
    facts = [ClusterFacts((f"public.t{i}",), (), ts[4], 2) for i in range(3)]
    causes = attribute(facts, [], ts)
    assert [c.kind if c else None for c in causes] == ["load"] * 3
    assert attribute(facts[:2], [], ts) == (None, None)


def test_analyze_on_the_table_beats_a_setting_and_stale_statistics_need_evidence() -> None:
    from analyzer.snapshots.catalog import Catalog, TableInfo

    ts = times(6)
    analyzed = CatalogChange("analyzed", "public.t", table="public.t", after=ts[4].isoformat())
    setting = CatalogChange("setting_changed", "work_mem", before="4MB", after="64kB")
    facts = ClusterFacts(("public.t",), (), ts[3], 2)
    (cause,) = attribute([facts], [TimedChange(ts[4], setting), TimedChange(ts[4], analyzed)],
                         ts)
    assert cause is not None and cause.kind == "analyzed"
    (cause,) = attribute([facts], [TimedChange(ts[4], setting)], ts)
    assert cause is not None and cause.to_json()["from"] == "4MB"

    def table(modified: int) -> Catalog:
        return Catalog(tables=(TableInfo(
            "public", "t", live_tuples=10_000, dead_tuples=0, inserts=0, updates=modified,
            deletes=0, hot_updates=0, mod_since_analyze=modified, seq_scans=0, index_scans=0,
            reltuples=10_000, size_bytes=0, last_analyze=None, last_autoanalyze=None,
            last_vacuum=None, last_autovacuum=None),))

    (stale,) = attribute([facts], [], ts, table(5_000))
    assert stale is not None and stale.kind == "stale_statistics" and stale.object == "public.t"
    assert attribute([facts], [], ts, table(500)) == (None,)
