"""The pure parts of recommendation: predicates, candidates and their merging, DDL quoting,
the counter-based rules. No database here; the real servers are in test_recommend.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from analyzer.recommend import ddl, maintenance
from analyzer.recommend.candidates import covering_index, dropped_columns, generate, normalize
from analyzer.recommend.model import IndexColumn, StatementEvidence
from analyzer.recommend.predicates import access
from analyzer.recommend.proxy import proxy_query
from analyzer.snapshots.catalog import Catalog, IndexInfo, TableInfo

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _table(name: str, rows: int = 100_000, **kw: object) -> TableInfo:
    schema, _, rel = name.partition(".")
    fields: dict[str, object] = dict(
        live_tuples=rows, dead_tuples=0, inserts=0, updates=0, deletes=0, hot_updates=0,
        mod_since_analyze=0, seq_scans=10, index_scans=0, reltuples=float(rows),
        size_bytes=rows * 100, last_analyze=NOW, last_autoanalyze=None, last_vacuum=None,
        last_autovacuum=None)
    fields.update(kw)
    return TableInfo(schema, rel, **fields)  # type: ignore[arg-type]


def _index(table: str, name: str, *columns: str, **kw: object) -> IndexInfo:
    schema, _, rel = table.partition(".")
    fields: dict[str, object] = dict(
        include=(), method="btree", predicate=None, valid=True, unique=False, primary=False,
        constraint=False, scans=0, size_bytes=8192 * 100)
    fields.update(kw)
    cols = ", ".join(columns)
    return IndexInfo(schema, rel, name, f"CREATE INDEX {name} ON {table} USING btree ({cols})",
                     tuple(columns), **fields)  # type: ignore[arg-type]


def _st(query: str, total_ms: float = 1000.0, calls: int = 100, rows: int = 300,
        **kw: object) -> StatementEvidence:
    return StatementEvidence(1, (abs(hash(query)) % 10**9,), f"fp:{query}", query, calls,
                             total_ms, total_ms / calls, rows, **kw)  # type: ignore[arg-type]


def _terms(query: str) -> set[tuple[str, str, str]]:
    return {(t.table, t.text, t.role) for t in access(query).terms}


def test_predicates_by_role() -> None:
    assert _terms("SELECT * FROM t WHERE a = $1 AND b IN ($2, $3) AND c = ANY($4) "
                  "AND d BETWEEN $5 AND $6 AND e >= $7") == {
        ("t", "a", "equality"), ("t", "b", "in"), ("t", "c", "in"), ("t", "d", "range"),
        ("t", "e", "range")}
    # ORDER BY counts only with a LIMIT
    assert ("t", "x", "sort") not in _terms("SELECT * FROM t WHERE a = $1 ORDER BY x")
    assert ("t", "x", "sort") in _terms("SELECT * FROM t WHERE a = $1 ORDER BY x LIMIT $2")
    # join keys on both sides, through aliases and table names
    assert _terms('SELECT * FROM "shop_order" INNER JOIN "shop_customer" ON '
                  '("shop_order"."customer_id" = "shop_customer"."id") '
                  'WHERE lower("shop_customer"."email") = lower($1)') == {
        ("shop_order", "customer_id", "join"), ("shop_customer", "id", "join"),
        ("shop_customer", "lower(email)", "equality")}
    # subqueries, CTEs, UPDATE and DELETE are read too
    assert ("items", "sku", "equality") in _terms(
        "WITH x AS (SELECT order_id FROM items WHERE sku = $1) SELECT * FROM x")
    assert ("o", "id", "equality") in _terms("UPDATE o SET a = $1 WHERE id = $2")
    assert ("o", "k", "range") in _terms("DELETE FROM o WHERE k < $1")
    # a comparison of two columns of one table is no index key
    assert _terms("SELECT * FROM t WHERE a = b") == set()
    assert access("not sql at all").parsed is False


def test_wrapped_columns_are_rewrite_hints() -> None:
    acc = access("SELECT * FROM ev WHERE created_at::date = $1 AND n + 1 = $2")
    assert {(w.column, w.how) for w in acc.wrapped} == {("created_at", "cast"),
                                                        ("n", "arithmetic")}


def test_quote_ident_follows_postgresql() -> None:
    assert ddl.quote_ident("orders") == "orders"
    assert ddl.quote_ident("Order Items") == '"Order Items"'
    assert ddl.quote_ident('say "hi"') == '"say ""hi"""'
    assert ddl.quote_ident("select") == '"select"'
    assert ddl.quote_ident("user") == '"user"'
    assert ddl.quote_ident("name") == "name"  # unreserved keyword
    assert ddl.quote_ident("1st") == '"1st"'
    assert ddl.qualified("My Shop.Order Items") == '"My Shop"."Order Items"'


def test_index_names_fit_and_do_not_collide() -> None:
    name = ddl.index_name("t" * 60, ["column_one", "column_two"], [])
    assert len(name.encode()) == 63 and name.endswith("_idx")
    assert ddl.index_name("orders", ["customer_id"], ["orders_customer_id_idx"]) == (
        "orders_customer_id_idx1")
    assert len(ddl.index_name("é" * 40, ["x"], []).encode()) <= 63


def test_concurrent_definition() -> None:
    d = "CREATE UNIQUE INDEX a ON public.t USING btree (x)"
    assert ddl.concurrent(d) == "CREATE UNIQUE INDEX CONCURRENTLY a ON public.t USING btree (x)"
    with pytest.raises(ValueError):
        ddl.concurrent("CREATE INDEX a ON t (x); DROP TABLE t")
    cols = dropped_columns("CREATE INDEX e ON public.ev USING btree (lower(email), t DESC)")
    assert cols is not None
    assert [(c.text, c.descending) for c in cols] == [("lower(email)", False), ("t", True)]


def test_covering_needs_the_same_leading_columns() -> None:
    existing = [_index("public.t", "t_b_a_c", "b", "a", "c")]
    eq = [IndexColumn("a", "equality", column="a"), IndexColumn("b", "equality", column="b")]
    assert covering_index(eq, existing) is not None  # equality columns in any order
    assert covering_index([*eq, IndexColumn("c", "range", column="c")], existing) is not None
    assert covering_index([IndexColumn("c", "equality", column="c")], existing) is None
    partial = [_index("public.t", "p", "a", predicate="a > 0")]
    assert covering_index([IndexColumn("a", "equality", column="a")], partial) is None
    assert normalize("lower((email)::text)") == normalize("lower(email)")


def test_candidates_merge_into_the_fewest_indexes() -> None:
    cat = Catalog(tables=(_table("public.o"),))
    statements = [
        _st("SELECT * FROM o WHERE c = $1", total_ms=500),
        _st("SELECT * FROM o WHERE c = $1 AND s = $2 ORDER BY t DESC LIMIT 5", total_ms=900),
        _st("SELECT * FROM o WHERE s = $1 AND c = $2", total_ms=100),
    ]
    accesses = {s.fingerprint: access(s.query, {"o": "public.o"}) for s in statements}
    stats = {"public.o": {"c": 10_000.0, "s": 4.0, "t": 100_000.0}}
    cands, skipped = generate(statements, accesses, cat, stats)
    assert skipped == []
    assert [c.column_texts for c in cands] == [("c", "s", "t")]
    assert len(cands[0].statements) == 3


def test_candidate_filters_and_their_reasons() -> None:
    cat = Catalog(tables=(_table("public.big"), _table("public.tiny", rows=20,
                                                        size_bytes=8192)),
                  indexes=(_index("public.big", "big_k", "k", "j"),))
    statements = [_st("SELECT * FROM big WHERE flag = $1"),
                  _st("SELECT * FROM big WHERE flag = $1 AND at BETWEEN $2 AND $3"),
                  _st("SELECT * FROM big WHERE k = $1"),
                  _st("SELECT * FROM tiny WHERE name = $1")]
    resolve = {"big": "public.big", "tiny": "public.tiny"}
    accesses = {s.fingerprint: access(s.query, resolve) for s in statements}
    cands, skipped = generate(statements, accesses, cat, {"public.big": {"flag": 2.0}})
    assert [(c.table, c.column_texts) for c in cands] == [("public.big", ("flag", "at"))]
    assert {(n.table, n.columns, n.reason) for n in skipped} == {
        ("public.big", ("flag",), "low_selectivity"),
        ("public.big", ("k",), "covered_by_existing_index"),
        ("public.tiny", ("name",), "table_too_small")}


def test_drop_index_rules() -> None:
    t = "public.t"
    cat = Catalog(
        tables=(_table(t),),
        indexes=(_index(t, "t_pkey", "id", primary=True, unique=True, constraint=True),
                 _index(t, "t_u", "u", unique=True),
                 _index(t, "t_x", "x", constraint=True),
                 _index(t, "t_a", "a", scans=5),
                 _index(t, "t_a_b", "a", "b", scans=9),
                 _index(t, "t_unused", "q"),
                 _index(t, "t_z", "z", scans=3),
                 _index(t, "t_z_again", "z", scans=0),
                 _index(t, "t_failed", "f", valid=False),
                 _index(t, "t_failed_unique", "g", valid=False, unique=True)),
        stats_reset=NOW - timedelta(days=10))
    found = maintenance.drop_indexes(cat, NOW, None, 7 * 86400)
    drops = {f.evidence["index"]: f.evidence["why"] for f in found if f.kind == "drop_index"
             and hasattr(f, "evidence")}
    assert drops == {"public.t_a": "duplicate", "public.t_z_again": "duplicate",
                     "public.t_unused": "unused", "public.t_failed": "invalid"}
    young = maintenance.drop_indexes(cat, NOW, None, 30 * 86400)
    assert {getattr(f, "reason", None) for f in young if "unused" in str(f)} <= {"too_young"}


def test_stale_statistics_and_dead_rows() -> None:
    cat = Catalog(tables=(
        _table("public.fresh", mod_since_analyze=100),
        _table("public.stale", mod_since_analyze=60_000),
        _table("public.dead", dead_tuples=80_000),
        _table("public.small", rows=10, size_bytes=8192, mod_since_analyze=10)))
    found = {(f.kind, f.table): f for f in maintenance.statistics(cat)}
    assert set(found) == {("analyze", "public.stale"), ("vacuum", "public.dead")}
    assert found[("analyze", "public.stale")].confidence > 0.9


def test_n_plus_one_work_mem_and_rewrite() -> None:
    loop = _st("SELECT * FROM items WHERE order_id = $1", total_ms=5000, calls=50_000,
               rows=50_000)
    other = _st("SELECT 1", total_ms=5000)
    accesses = {s.fingerprint: access(s.query, {"items": "public.items"})
                for s in (loop, other)}
    (n1,) = maintenance.n_plus_one([loop, other], accesses)
    assert n1.kind == "n_plus_one" and n1.confidence >= 0.8 and "ANY($1)" in n1.rationale

    spill = _st("SELECT * FROM big ORDER BY x", calls=10, temp_blks_written=10 * 3 * 128,
                datname="shop")  # 3 MB per call
    (wm,) = maintenance.work_mem([spill], "4096kB")
    assert wm.ddl == "ALTER DATABASE shop SET work_mem = '8MB'"
    assert wm.revert_ddl == "ALTER DATABASE shop RESET work_mem"
    assert "every new session on shop" in wm.rationale
    (server,) = maintenance.work_mem([replace(spill, datname=None)], "4096kB")
    assert server.ddl == "ALTER ROLE ALL SET work_mem = '8MB'"
    (named,) = maintenance.work_mem([replace(spill, datname=None)], "4096kB", "My Db")
    assert named.ddl == "ALTER DATABASE \"My Db\" SET work_mem = '8MB'"

    cat = Catalog(tables=(_table("public.ev"),),
                  indexes=(_index("public.ev", "ev_created", "created_at"),))
    slow = _st("SELECT * FROM ev WHERE created_at::date = $1")
    (rw,) = maintenance.rewrites([slow], {slow.fingerprint: access(slow.query,
                                                                   {"ev": "public.ev"})}, cat)
    assert rw.kind == "rewrite" and "ev_created" in rw.rationale


def test_proxy_takes_the_function_off() -> None:
    cols = [IndexColumn("lower(email)", "equality", column="email", expression=True)]
    assert proxy_query("SELECT id FROM c WHERE lower(email) = $1 AND lower(x) = $2", cols) == (
        "SELECT id FROM c WHERE email = $1 AND x = $2")


def test_orm_casts_inside_functions_and_join_keys_apart() -> None:
    q = ('SELECT "c"."id" FROM "c" WHERE UPPER("c"."email"::text) = UPPER($1)')
    assert _terms(q) == {("c", "upper((email)::text)", "equality")}
    cat = Catalog(tables=(_table("public.l"),), indexes=(_index("public.l", "l_o", "order_id"),))
    s = _st("SELECT o.id FROM o JOIN l ON l.order_id = o.id WHERE l.product_id = $1")
    acc = {s.fingerprint: access(s.query, {"l": "public.l", "o": "public.o"})}
    cands, skipped = generate([s], acc, cat, {})
    assert [c.column_texts for c in cands] == [("product_id",)]
    assert [(n.columns, n.reason) for n in skipped if n.reason != "shape_not_handled"] == [
        (("order_id",), "covered_by_existing_index")]


def test_evidence_of_a_group_and_report_forms() -> None:
    from analyzer.analysis.delta import Moments, WindowStat
    from analyzer.analysis.regression import GroupStat
    from analyzer.recommend.model import NotProposed, Recommendation

    g = GroupStat((5, "fp", True), WindowStat(Moments(10, 50.0, 1.0), rows=10,
                                              temp_blks_written=3), (-9223372036854775807, 2))
    e = StatementEvidence.of_group(g, "SELECT 1", regressed=True)
    assert (e.calls, e.total_ms, e.mean_ms, e.temp_blks_written) == (10, 50.0, 5.0, 3)
    assert e.queryid_texts == ["-9223372036854775807", "2"]
    r = Recommendation("create_index", "public.t", ("a",), "CREATE …", "DROP …", "Why.",
                       queryids=("1",), estimated_cost_before=100.0, estimated_cost_after=1.0,
                       estimated_improvement=0.99, confidence=0.9871, validated_by="hypopg")
    assert r.to_json()["confidence"] == 0.987 and r.to_json()["columns"] == ["a"]
    n = NotProposed("create_index", "public.t", ("s",), "low_selectivity")
    assert n.to_json() == {"kind": "create_index", "table": "public.t", "columns": ["s"],
                           "reason": "low_selectivity"}
