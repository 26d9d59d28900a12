"""Regression rules on synthetic windows, fingerprint grouping, features, clustering."""

from __future__ import annotations

import random

import pytest

from analyzer.analysis.clustering import ClusterInput, cluster
from analyzer.analysis.delta import Moments, WindowStat
from analyzer.analysis.features import feature_tokens, parse_statement, plan_shape, qualify
from analyzer.analysis.regression import detect, group
from analyzer.analysis.windows import WindowRequest, choose_windows
from analyzer.snapshots.own import is_own, register_own, statement_fingerprint
from pgarchitect.config import RegressionSettings
from pgarchitect.errors import UserError

DEFAULTS = RegressionSettings()


def window(n: int, mean: float, sd: float) -> WindowStat:
    return WindowStat(Moments(n, n * mean, (n - 1) * sd * sd))


def one(base: WindowStat, cur: WindowStat, rs: RegressionSettings = DEFAULTS) -> list[object]:
    fp = {(1, 7): "fp"}
    b = group({(1, 10, 7, True): base}, fp)
    c = group({(1, 10, 7, True): cur}, fp)
    return list(detect(b, c, rs))


def test_big_slowdown_is_a_regression() -> None:
    found = one(window(100, 0.05, 0.01), window(100, 12.0, 2.0))
    assert len(found) == 1


@pytest.mark.parametrize(("base", "cur", "why"), [
    (window(100, 0.010, 0.002), window(100, 0.017, 0.003), "fast lookup drifting: < 1 ms"),
    (window(100, 10.0, 1.0), window(100, 13.0, 1.0), "only x1.3"),
    (window(100, 10.0, 40.0), window(100, 16.0, 40.0), "within the noise (Welch)"),
    (window(100, 1.0, 0.1), window(5, 30.0, 1.0), "too few calls now"),
    (window(5, 1.0, 0.1), window(100, 30.0, 1.0), "too few calls before"),
    (window(100, 10.0, 1.0), window(100, 5.0, 1.0), "faster"),
])
def test_not_a_regression(base: WindowStat, cur: WindowStat, why: str) -> None:
    assert one(base, cur) == [], why


def test_thresholds_are_configurable() -> None:
    base, cur = window(100, 10.0, 1.0), window(100, 13.0, 1.0)
    assert one(base, cur, RegressionSettings(min_ratio=1.2)) != []
    assert one(window(100, 0.01, 0.001), window(100, 0.5, 0.01),
               RegressionSettings(min_delta_ms=0.1)) != []
    assert one(window(10, 1.0, 0.1), window(10, 30.0, 1.0), RegressionSettings(min_calls=50)) == []


def test_zero_variance_windows_do_not_crash() -> None:
    assert len(one(window(50, 1.0, 0.0), window(50, 5.0, 0.0))) == 1
    assert one(window(50, 1.0, 0.0), window(50, 1.0, 0.0)) == []


def test_parameter_type_variants_form_one_group() -> None:
    text = "SELECT * FROM orders WHERE customer_id = $1"
    fps = {(1, q): statement_fingerprint(text, q) for q in (11, 12, 13)}
    base = {(1, 10, 11, True): window(30, 0.05, 0.01)}
    cur = {(1, 10, 11, True): window(10, 12.0, 1.0), (1, 10, 12, True): window(10, 12.0, 1.0),
           (1, 10, 13, True): window(15, 12.5, 1.0)}
    found = detect(group(base, fps), group(cur, fps), DEFAULTS)
    assert len(found) == 1
    assert found[0].current.calls == 35
    assert found[0].queryid == 13 and set(found[0].queryids) == {11, 12, 13}


def test_own_statements_are_recognised_with_and_without_marker() -> None:
    sql = "/* pgarchitect */ SELECT calls FROM pg_stat_statements WHERE queryid = %s"
    register_own(sql)
    trimmed = "SELECT calls FROM pg_stat_statements WHERE queryid = $1"  # as PG 18 keeps it
    assert is_own(trimmed, statement_fingerprint(trimmed, 1))
    assert is_own("/* pgarchitect */ SELECT 1", statement_fingerprint("SELECT 1", 2))
    other = "SELECT id FROM orders WHERE customer_id = $1"
    assert not is_own(other, statement_fingerprint(other, 3))


def test_unparsable_text_gets_its_own_fingerprint() -> None:
    assert statement_fingerprint("SELEC oops", 42) == "queryid:42"
    assert parse_statement("SELEC oops").tables == ()


def test_statement_features_from_the_parse_tree() -> None:
    shape = parse_statement(
        "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id"
        " WHERE o.status = $1 AND c.region = $2 ORDER BY o.created_at DESC LIMIT $3")
    assert shape.tables == ("orders", "customers")
    assert set(shape.columns) == {"customers.id", "orders.customer_id", "orders.status",
                                  "customers.region", "orders.created_at"}
    assert shape.parameters == 3 and shape.explainable
    q = qualify(shape, {"orders": "shop.orders"})
    assert q.tables == ("shop.orders", "customers") and "shop.orders.status" in q.columns


def test_plan_shape_lists_scans() -> None:
    plan = [{"Plan": {"Node Type": "Aggregate", "Total Cost": 10.0, "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public"}]}}]
    shape = plan_shape(plan)
    assert shape["total_cost"] == 10.0
    assert feature_tokens(["public.orders"], [], shape)["plan"] == ["Seq Scan:public.orders"]


def _items() -> list[ClusterInput]:
    items = []
    for i in range(3):
        items.append(ClusterInput(
            f"a{i}", feature_tokens(["public.orders"], ["public.orders.customer_id"]
                                    + ([f"public.orders.c{i}"] if i else []),
                                    {"nodes": [{"node": "Seq Scan", "relation": "public.orders"}]}),
            onset=0.1, ratio=200.0 + i))
    for i in range(2):
        items.append(ClusterInput(
            f"b{i}", feature_tokens(["public.events"], ["public.events.session_id"],
                                    {"nodes": [{"node": "Seq Scan", "relation": "public.events"}]}),
            onset=0.12, ratio=150.0 + i))
    return items


def test_clustering_separates_causes_and_is_deterministic() -> None:
    items = _items()
    labels = cluster(items)
    assert labels == [0, 0, 0, 1, 1]
    for seed in range(5):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        again = dict(zip((it.key for it in shuffled), cluster(shuffled), strict=True))
        assert [again[it.key] for it in items] == labels


def test_clustering_of_nothing_and_of_one() -> None:
    assert cluster([]) == []
    assert cluster(_items()[:1]) == [0]


def test_window_choice_by_ids_and_by_time() -> None:
    from datetime import UTC, datetime, timedelta

    from analyzer.snapshots.model import SnapshotMeta

    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    metas = [SnapshotMeta(i, t0 + timedelta(hours=i)) for i in range(1, 11)]
    w = choose_windows(metas, RegressionSettings(baseline_window=3 * 3600,
                                                 current_window=2 * 3600))
    assert [m.id for m in w.current] == [8, 9, 10]
    assert [m.id for m in w.baseline] == [5, 6, 7, 8]
    w = choose_windows(metas, DEFAULTS, WindowRequest(1, 4, 4, None))
    assert [m.id for m in w.baseline] == [1, 2, 3, 4] and w.current[-1].id == 10
    w = choose_windows(metas, DEFAULTS, WindowRequest(current_from=t0 + timedelta(hours=9.5)))
    assert [m.id for m in w.current] == [9, 10]
    with pytest.raises(UserError, match="snapshot 99"):
        choose_windows(metas, DEFAULTS, WindowRequest(baseline_from=99))
    assert choose_windows([], DEFAULTS).current == ()


def test_clustering_by_table_components_equals_one_global_fit() -> None:
    from sklearn.cluster import DBSCAN

    from analyzer.analysis.clustering import ClusteringModel, _canonical

    rng = random.Random(3)
    items = []
    for i in range(300):
        tables = [f"public.t{rng.randrange(12)}" for _ in range(rng.choice((0, 1, 1, 1, 2)))]
        cols = [f"{t}.c{rng.randrange(4)}" for t in tables]
        items.append(ClusterInput(f"k{i:03d}", feature_tokens(tables, cols, None, cols[:1]),
                                  onset=rng.random(), ratio=rng.uniform(1.5, 100)))
    model = ClusteringModel(distance=0.9)
    global_labels = DBSCAN(eps=0.9, min_samples=1).fit(model.features(items)).labels_
    expected = _canonical(global_labels, [it.key for it in items]).tolist()
    assert cluster(items, 0.9) == expected
    assert len(set(expected)) > 12  # the case is not trivial


def test_groups_keep_partition_like_tables_apart() -> None:
    # libpg_query folds trailing digits of relation names; different tables stay apart here.
    a = statement_fingerprint("SELECT c1 FROM t12 WHERE k = $1", 1)
    b = statement_fingerprint("SELECT c1 FROM t17 WHERE k = $1", 2)
    assert a != b
    assert a == statement_fingerprint("select c1  from t12 where k = 5 /* orm */", 3)
