"""Statement coverage, on the parse alone: each shape with the index it should get and, next
to it, the negative (a shape that must not get it, and says why). The catalog facts a real
target gives (views, partitions, column types and collations, extensions) are written out
as values here; tests/analyzer/test_shapes.py runs the same shapes on real servers."""

from __future__ import annotations

from collections.abc import Mapping

from analyzer.recommend.candidates import generate
from analyzer.recommend.model import StatementEvidence
from analyzer.recommend.predicates import Column, Relation, Relations, access
from analyzer.snapshots.catalog import Catalog, IndexInfo, TableInfo

INT, TS = Column("integer", "N"), Column("timestamp with time zone", "D")
TEXT = Column("text", "S", "en_US.utf8")
C_TEXT = Column("text", "S", "C")
COLUMNS = {
    "public.orders": {"id": INT, "customer_id": INT, "status": TEXT, "created_at": TS,
                      "note": TEXT, "data": Column("jsonb", "U"), "total": INT,
                      "tags": Column("text[]", "A"), "shipped_at": TS, "code": C_TEXT,
                      "period": Column("tstzrange", "R")},
    "public.customers": {"id": INT, "email": TEXT, "name": TEXT, "country": TEXT},
    "public.events": {"id": INT, "tenant_id": INT, "created_at": TS, "kind": TEXT},
}
STATS = {"public.orders": {"status": 5.0, "customer_id": 20000.0, "id": 1e6, "total": 1e4},
         "public.customers": {"country": 30.0, "email": 1e5},
         "public.events": {"tenant_id": 500.0}}


def _relations(extensions: frozenset[str] = frozenset({"pg_trgm"}),
               views: Mapping[str, str] | None = None) -> Relations:
    by_name = {n: Relation(n, "table", columns=c) for n, c in COLUMNS.items()}
    by_name["public.events"] = Relation("public.events", "partitioned", size_bytes=10**9,
                                        rows=5e6, columns=COLUMNS["public.events"])
    by_name["public.events_2026"] = Relation("public.events_2026", "table",
                                             root="public.events",
                                             columns=COLUMNS["public.events"])
    for name, definition in (views or VIEWS).items():
        by_name[name] = Relation(name, "view", definition=definition)
    resolved = {n.partition(".")[2]: n for n in by_name}
    return Relations(by_name, resolved, extensions)


VIEWS = {
    "public.open_orders": "SELECT o.id, o.customer_id AS buyer, o.created_at, "
                          "lower(o.note) AS note_l FROM orders o WHERE o.shipped_at IS NULL",
    "public.recent_open": "SELECT v.id, v.buyer FROM open_orders v",
    "public.totals": "SELECT customer_id, sum(total) AS spent FROM orders GROUP BY customer_id",
    "public.latest": "SELECT * FROM orders ORDER BY created_at DESC LIMIT 100",
}


def _table(name: str) -> TableInfo:
    schema, _, rel = name.partition(".")
    return TableInfo(schema, rel, 1_000_000, 0, 0, 0, 0, 0, 0, 10, 0, 1e6, 10**8, None, None,
                     None, None)


def _catalog(*indexes: IndexInfo) -> Catalog:
    return Catalog(indexes=indexes, tables=tuple(_table(n) for n in COLUMNS))


def _index(name: str, definition: str, columns: tuple[str, ...], method: str = "btree",
           predicate: str | None = None) -> IndexInfo:
    return IndexInfo("public", "orders", name, definition, columns, (), method, predicate,
                     True, False, False, False, 0, 8192)


def _st(query: str) -> StatementEvidence:
    return StatementEvidence(1, (abs(hash(query)) % 10**9,), f"fp:{query}", query, 100,
                             1000.0, 10.0, 10)


def advise(query: str, catalog: Catalog | None = None, relations: Relations | None = None,
           samples: tuple[tuple[str | None, ...], ...] = ()
           ) -> tuple[set[str], list[tuple[str | None, str, str | None]]]:
    """(candidate indexes as `table USING method (cols) WHERE ...`, (table, reason, detail));
    `samples`: the statement's representative parameter values, $1 first."""
    rels = relations or _relations()
    s = _st(query)
    acc = access(query, rels.resolved, None, rels, samples)
    cands, skipped = generate([s], {s.fingerprint: acc}, catalog or _catalog(), STATS, (), rels)
    out = set()
    for c in cands:
        cols = ", ".join(col.text + (f" {col.opclass}" if col.opclass else "")
                         + (" DESC" if col.descending else "") for col in c.columns)
        using = "" if c.method == "btree" else f" USING {c.method}"
        out.add(f"{c.table}{using} ({cols})" + (f" WHERE {c.where}" if c.where else ""))
    return out, [(n.table, n.reason, n.detail) for n in skipped]


def _reasons(skipped: list[tuple[str | None, str, str | None]]) -> str:
    return " | ".join(f"{r}: {d}" for _, r, d in skipped)


# -- views ------------------------------------------------------------------------------
def test_a_view_column_reaches_its_base_table_and_nested_views_too() -> None:
    # (the view's own constant predicate is no partial index: it is not the statement's)
    assert advise("SELECT * FROM open_orders WHERE buyer = $1")[0] == {
        "public.orders (customer_id)"}
    assert advise("SELECT id FROM recent_open r WHERE r.buyer = $1")[0] == {
        "public.orders (customer_id)"}
    # an expression column of a view is an expression index
    assert advise("SELECT * FROM open_orders WHERE note_l = $1")[0] == {
        "public.orders (lower(note))"}


def test_a_view_whose_rows_are_computed_keeps_its_conditions_and_says_so() -> None:
    found, skipped = advise("SELECT * FROM totals WHERE spent > $1")
    assert found == set()
    assert "computed by grouping" in _reasons(skipped)
    # its grouping column passes: the planner pushes the condition below the aggregate
    assert advise("SELECT * FROM totals WHERE customer_id = $1")[0] == {
        "public.orders (customer_id)"}
    # a view with a LIMIT: the outer condition stays above it; the view's own ordered scan
    # is what an index can serve
    found, skipped = advise("SELECT * FROM latest WHERE customer_id = $1")
    assert found == {"public.orders (created_at)"} and "LIMIT" in _reasons(skipped)


# -- CTEs -------------------------------------------------------------------------------
def test_an_inlined_cte_is_read_through_a_materialized_one_is_not() -> None:
    for how in ("", "NOT MATERIALIZED "):
        q = (f"WITH c AS {how}(SELECT * FROM orders WHERE created_at > $1) "
             "SELECT * FROM c WHERE customer_id = $2")
        assert advise(q)[0] == {"public.orders (customer_id, created_at)"}, how
    q = ("WITH c AS MATERIALIZED (SELECT * FROM orders WHERE created_at > $1) "
         "SELECT * FROM c WHERE customer_id = $2")
    found, skipped = advise(q)
    assert found == {"public.orders (created_at)"}
    assert "materialized" in _reasons(skipped)
    # referenced twice: PostgreSQL materializes a plain CTE too
    q = ("WITH c AS (SELECT * FROM orders WHERE created_at > $1) "
         "SELECT * FROM c a JOIN c b ON a.id = b.id WHERE a.customer_id = $2")
    assert advise(q)[0] == {"public.orders (created_at)"}


def test_a_recursive_cte_is_read_once_its_seed_and_step_get_their_indexes() -> None:
    # The step names the CTE itself: it is the CTE's result, never inlined into itself.
    q = ("WITH RECURSIVE chain AS (SELECT id, customer_id FROM orders WHERE customer_id = $1 "
         "UNION ALL SELECT o.id, o.customer_id FROM orders o JOIN chain c ON o.total = c.id) "
         "SELECT * FROM chain")
    found, _ = advise(q)
    assert found == {"public.orders (customer_id)", "public.orders (total)"}  # seed, step
    # As a subquery's CTE too, and with a depth no one writes by hand: one clear reason.
    advise(f"SELECT * FROM customers WHERE id IN ({q})")
    deep = "SELECT * FROM orders WHERE " + "(" * 3000 + "customer_id = $1" + ")" * 3000
    try:
        found, skipped = advise(deep)
    except RecursionError:
        raise AssertionError("a deeply nested statement must be reported, not raised") from None
    assert found or skipped


def test_each_scan_of_a_table_gets_its_own_key() -> None:
    # A UNION's branches, a subquery and a self-join read the table apart: never one
    # composite key of both sides' columns (which neither scan could use).
    union = ("SELECT id FROM orders WHERE customer_id = $1 UNION ALL "
             "SELECT id FROM orders WHERE total = $2")
    assert advise(union)[0] == {"public.orders (customer_id)", "public.orders (total)"}
    sub = ("SELECT id FROM orders WHERE customer_id = $1 AND id IN "
           "(SELECT id FROM orders WHERE total = $2)")
    assert "public.orders (customer_id, total)" not in advise(sub)[0]
    assert {"public.orders (customer_id)", "public.orders (total)"} <= advise(sub)[0]
    self_join = ("SELECT o.id FROM orders o JOIN orders p ON p.total = o.id "
                 "WHERE o.customer_id = $1")
    assert {"public.orders (customer_id)", "public.orders (total)"} <= advise(self_join)[0]
    # One scan keeps its columns together.
    assert advise("SELECT id FROM orders WHERE customer_id = $1 AND total = $2")[0] == {
        "public.orders (customer_id, total)"}


def test_row_comparisons_keyset_pagination_and_row_in_lists() -> None:
    assert advise("SELECT * FROM orders WHERE (customer_id, status) = ($1, $2)")[0] == {
        "public.orders (customer_id, status)"}
    assert advise("SELECT * FROM orders WHERE (customer_id, status) IN (($1, $2), ($3, $4))"
                  )[0] == {"public.orders (customer_id, status)"}
    # keyset pagination: the row comparison is an index condition of (created_at, id)
    assert advise("SELECT * FROM orders WHERE (created_at, id) > ($1, $2) "
                  "ORDER BY created_at, id LIMIT 20")[0] == {"public.orders (created_at, id)"}
    assert advise("SELECT * FROM orders WHERE customer_id = $1 AND (created_at, id) < ($2, $3) "
                  "ORDER BY created_at DESC, id DESC LIMIT 20")[0] == {
        "public.orders (customer_id, created_at, id)"}
    # a form not read is said so, never skipped in silence
    _, skipped = advise("SELECT * FROM orders WHERE (created_at, id) > "
                        "(SELECT created_at, id FROM orders WHERE id = $1)")
    assert "row comparison" in _reasons(skipped)


def test_a_negated_condition_is_reported_not_exists_is_read() -> None:
    _, skipped = advise("SELECT * FROM orders WHERE NOT (status = $1)")
    assert "negated condition" in _reasons(skipped)
    found, skipped = advise("SELECT * FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o "
                            "WHERE o.customer_id = c.id) AND c.email = $1")
    assert {"public.customers (email)", "public.orders (customer_id)"} <= found
    assert "negated" not in _reasons(skipped)


def test_coalesce_greatest_and_case_hide_their_columns_and_say_so() -> None:
    for expr in ("COALESCE(shipped_at, created_at)", "GREATEST(shipped_at, created_at)",
                 "CASE WHEN shipped_at IS NULL THEN created_at ELSE shipped_at END"):
        found, skipped = advise(f"SELECT * FROM orders WHERE {expr} > $1")
        assert found == set() and "created_at is inside a function" in _reasons(skipped), expr


def test_a_drivers_catalog_queries_are_not_advised_on() -> None:
    # asyncpg's type introspection (a recursive CTE over pg_type), and a plain catalog read.
    q = ("WITH RECURSIVE typeinfo_tree(oid, depth) AS (SELECT t.oid, 0 FROM pg_catalog.pg_type t "
         "WHERE t.oid = ANY($1::oid[]) UNION ALL SELECT t.typelem, tt.depth + 1 "
         "FROM pg_catalog.pg_type t JOIN typeinfo_tree tt ON tt.oid = t.typbasetype) "
         "SELECT * FROM typeinfo_tree")
    assert advise(q) == (set(), [])
    assert advise("SELECT relname FROM pg_catalog.pg_class WHERE relkind = $1 "
                  "AND relnamespace = $2") == (set(), [])


# -- partitions -------------------------------------------------------------------------
def test_a_partitioned_table_gets_its_index_on_the_parent() -> None:
    assert advise("SELECT * FROM events WHERE tenant_id = $1 AND created_at > $2")[0] == {
        "public.events (tenant_id, created_at)"}
    # a partition named directly: still the parent, which indexes every partition
    assert advise("SELECT * FROM events_2026 WHERE tenant_id = $1 AND created_at > $2")[0] \
        == {"public.events (tenant_id, created_at)"}


def test_a_partitioned_parent_is_sized_by_its_partitions_not_as_empty() -> None:
    found, skipped = advise("SELECT * FROM events WHERE tenant_id = $1 AND kind = $2")
    assert found and all(r != "table_too_small" for _, r, _ in skipped)


# -- writes -----------------------------------------------------------------------------
def test_update_delete_and_insert_select_predicates() -> None:
    assert advise("UPDATE orders SET status = $1 WHERE customer_id = $2")[0] == {
        "public.orders (customer_id)"}
    assert advise("DELETE FROM orders WHERE created_at < $1")[0] == {
        "public.orders (created_at)"}
    assert advise("INSERT INTO customers (id) SELECT customer_id FROM orders "
                  "WHERE created_at > $1")[0] == {"public.orders (created_at)"}
    # a plain INSERT ... VALUES asks nothing of an index
    assert advise("INSERT INTO orders (id, status) VALUES ($1, $2)") == (set(), [])
    # MERGE joins its target and source on ON, like a join
    assert "public.orders (customer_id)" in advise(
        "MERGE INTO orders o USING customers c ON o.customer_id = c.id "
        "WHEN MATCHED THEN UPDATE SET total = $1")[0]


# -- ORDER BY ---------------------------------------------------------------------------
def test_order_by_ordinal_and_alias_mean_the_select_list_expression() -> None:
    want = {"public.orders (customer_id, created_at)"}
    assert advise("SELECT id, created_at FROM orders WHERE customer_id = $1 "
                  "ORDER BY 2 DESC LIMIT 10")[0] == want
    assert advise("SELECT id, created_at AS placed FROM orders WHERE customer_id = $1 "
                  "ORDER BY placed DESC LIMIT 10")[0] == want
    # without a LIMIT the sort is not an index's business
    assert advise("SELECT id, created_at FROM orders WHERE customer_id = $1 ORDER BY 2")[0] \
        == {"public.orders (customer_id)"}
    found, skipped = advise("SELECT * FROM orders WHERE customer_id = $1 ORDER BY 2 LIMIT 5")
    assert found == {"public.orders (customer_id)"} and "ORDER BY 2" in _reasons(skipped)


def test_column_order_is_equality_then_range_then_sort() -> None:
    assert advise("SELECT * FROM orders WHERE created_at > $1 AND customer_id = $2")[0] == {
        "public.orders (customer_id, created_at)"}
    assert advise("SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC, id "
                  "LIMIT 20")[0] == {"public.orders (customer_id, created_at, id DESC)"}


# -- joins and subqueries ---------------------------------------------------------------
def test_join_using_gives_join_keys_and_carries_the_constant_across() -> None:
    found, _ = advise("SELECT * FROM orders JOIN customers USING (id) WHERE id = $1")
    assert found == {"public.orders (id)", "public.customers (id)"}
    found, _ = advise("SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id "
                      "WHERE c.email = $1")
    assert found == {"public.customers (email)", "public.orders (customer_id)",
                     "public.customers (id)"}


def test_in_select_exists_and_any() -> None:
    found, _ = advise("SELECT * FROM orders o WHERE o.customer_id IN "
                      "(SELECT id FROM customers WHERE email = $1)")
    assert "public.orders (customer_id)" in found and "public.customers (email)" in found
    found, _ = advise("SELECT * FROM customers c WHERE EXISTS (SELECT 1 FROM orders o "
                      "WHERE o.customer_id = c.id AND o.created_at > $1)")
    assert "public.orders (customer_id)" in found
    assert advise("SELECT * FROM orders WHERE customer_id = ANY($1)")[0] == {
        "public.orders (customer_id)"}
    # NOT IN gives no index key, and says so
    found, skipped = advise("SELECT * FROM orders WHERE customer_id NOT IN ($1, $2)")
    assert found == set() and "NOT IN" in _reasons(skipped)


# -- index types ------------------------------------------------------------------------
def test_jsonb_and_arrays_get_gin() -> None:
    assert advise("SELECT * FROM orders WHERE data @> '{\"vip\": true}'")[0] == {
        "public.orders USING gin (data)"}
    assert advise("SELECT * FROM orders WHERE data ? 'gift'")[0] == {
        "public.orders USING gin (data)"}
    assert advise("SELECT * FROM orders WHERE tags && $1")[0] == {
        "public.orders USING gin (tags)"}
    found, skipped = advise("SELECT * FROM orders WHERE period && $1")
    assert found == set() and "GiST" in _reasons(skipped)
    gin = _index("orders_data_idx", "CREATE INDEX orders_data_idx ON public.orders USING gin "
                 "(data)", ("data",), "gin")
    found, skipped = advise("SELECT * FROM orders WHERE data @> $1", _catalog(gin))
    assert found == set() and [r for _, r, _ in skipped] == ["covered_by_existing_index"]


def test_like_prefix_needs_pattern_ops_under_a_non_c_collation() -> None:
    assert advise("SELECT * FROM orders WHERE note LIKE 'ref-%'")[0] == {
        "public.orders (note text_pattern_ops)"}
    assert advise("SELECT * FROM orders WHERE code LIKE 'ref-%'")[0] == {
        "public.orders (code)"}
    # a plain btree on the column does not serve LIKE under en_US
    plain = _index("orders_note_idx", "CREATE INDEX orders_note_idx ON public.orders USING "
                   "btree (note)", ("note",))
    assert advise("SELECT * FROM orders WHERE note LIKE 'ref-%'", _catalog(plain))[0] == {
        "public.orders (note text_pattern_ops)"}
    found, skipped = advise("SELECT * FROM orders WHERE note LIKE $1")
    assert found == set() and "like_parameter" in _reasons(skipped)


def test_like_parameter_with_prefix_samples_is_a_prefix_and_says_why_when_not() -> None:
    search = "SELECT id, note FROM orders WHERE note LIKE $1 ORDER BY note LIMIT $2"
    prefixes = (("ref-3fa%", "20"), ("ref-0%", "20"), ("ref\\_x", "20"))
    assert advise(search, samples=prefixes)[0] == {"public.orders (note text_pattern_ops)"}
    assert advise("SELECT * FROM orders WHERE code LIKE $1", samples=(("ref-%",),))[0] == {
        "public.orders (code)"}  # a C collation: the plain btree serves a prefix
    # the samples fill the parameter wherever it is: `$1 || '%'`, an ESCAPE of its own
    assert advise("SELECT * FROM orders WHERE note LIKE $1 || '%'",
                  samples=(("ref-3",),))[0] == {"public.orders (note text_pattern_ops)"}
    assert advise("SELECT * FROM orders WHERE note LIKE $1 ESCAPE '!'",
                  samples=(("!%ref%",),))[0] == {"public.orders (note text_pattern_ops)"}
    # one sample that is not left-anchored: a btree serves only a prefix, so without pg_trgm
    # it is said why; with pg_trgm the samples' literal runs make a trigram index
    mixed = (("ref-3fa%", "20"), ("%3fa%", "20"), ("%ref-0%", "20"))
    no_trgm = _relations(extensions=frozenset())
    found, skipped = advise(search, relations=no_trgm, samples=mixed)
    assert found == {"public.orders (note)"}  # for its ORDER BY … LIMIT only
    assert "like_parameter" in _reasons(skipped)
    assert "2 of its 3 sampled values are not left-anchored prefixes (such as '%3fa%')" \
        in _reasons(skipped)
    assert "public.orders USING gin (note gin_trgm_ops)" in advise(search, samples=mixed)[0]
    found, skipped = advise("SELECT * FROM orders WHERE note LIKE $1", relations=no_trgm,
                            samples=(("_ef%",),))
    assert found == set() and "not left-anchored" in _reasons(skipped)
    found, skipped = advise("SELECT * FROM orders WHERE note LIKE $1", samples=(("_ef%",),))
    assert found == set() and "short_pattern" in _reasons(skipped)  # 'ef': two characters
    # none known: said so
    found, skipped = advise("SELECT * FROM orders WHERE note LIKE $1")
    assert found == set() and "no representative values are known" in _reasons(skipped)
    # ILIKE with samples takes the trigram path (no btree serves it), where pg_trgm is there
    assert advise("SELECT * FROM customers WHERE name ILIKE $1", samples=(("smi%",),))[0] == {
        "public.customers USING gin (name gin_trgm_ops)"}
    found, skipped = advise("SELECT * FROM customers WHERE name ILIKE $1", relations=no_trgm,
                            samples=(("smi%",),))
    assert found == set() and "no_trigram" in _reasons(skipped)


def test_substring_search_gets_a_trigram_index_where_pg_trgm_is_installed() -> None:
    assert advise("SELECT * FROM customers WHERE name ILIKE '%smith%'")[0] == {
        "public.customers USING gin (name gin_trgm_ops)"}
    found, skipped = advise("SELECT * FROM customers WHERE name ILIKE '%smith%'",
                            relations=_relations(frozenset()))
    assert found == set() and "pg_trgm extension is not installed" in _reasons(skipped)
    found, skipped = advise("SELECT * FROM customers WHERE name ILIKE '%sm%'")
    assert found == set() and "fewer than 3" in _reasons(skipped)


def test_constant_predicates_make_partial_indexes() -> None:
    assert advise("SELECT * FROM orders WHERE customer_id = $1 AND shipped_at IS NULL")[0] \
        == {"public.orders (customer_id) WHERE shipped_at IS NULL"}
    assert advise("SELECT * FROM orders WHERE customer_id = $1 AND shipped_at IS NOT NULL "
                  "AND NOT data ? 'x'")[0] >= {
        "public.orders (customer_id) WHERE shipped_at IS NOT NULL"}
    # a literal is the value a parameter had: a key column, never the index's WHERE
    assert advise("SELECT * FROM orders WHERE status = 'open' AND created_at > $1")[0] == {
        "public.orders (status, created_at)"}
    assert advise("SELECT * FROM orders WHERE customer_id = 42 AND created_at > $1")[0] == {
        "public.orders (customer_id, created_at)"}
    found, skipped = advise("SELECT * FROM orders WHERE shipped_at IS NULL")
    assert found == set() and "only a constant predicate" in _reasons(skipped)


def test_few_distinct_values_are_left_to_the_planner_a_handful_are_not() -> None:
    # 30 countries: a thirtieth of the table per value, for validation to judge
    assert advise("SELECT * FROM customers WHERE country = $1")[0] == {
        "public.customers (country)"}
    found, skipped = advise("SELECT * FROM orders WHERE status = $1")  # 5 values
    assert found == set() and [r for _, r, _ in skipped] == ["low_selectivity"]


def test_an_or_of_different_columns_is_reported_one_column_is_in() -> None:
    found, skipped = advise("SELECT * FROM orders WHERE customer_id = $1 OR total = $2")
    assert found == set() and "an OR of conditions" in _reasons(skipped)
    assert advise("SELECT * FROM orders WHERE customer_id = $1 OR customer_id = $2")[0] == {
        "public.orders (customer_id)"}


def test_a_wrapped_column_is_reported_an_indexable_function_is_an_expression_index() -> None:
    found, skipped = advise("SELECT * FROM orders WHERE created_at::date = $1")
    assert found == set() and "created_at is inside a cast" in _reasons(skipped)
    assert advise("SELECT * FROM customers WHERE lower(email) = $1")[0] == {
        "public.customers (lower(email))"}
