"""Recommendations on real servers: hypopg on PostgreSQL 15, transaction and sandbox on 18.

The planted shop (tests/analyzer/shop.py) has four missing indexes of different shapes, three
negatives, an unused and a redundant index next to a primary key, a unique index and a
constraint's index, and a table whose schema, table and column names all need quoting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from analyzer.recommend.engine import recommend
from analyzer.recommend.model import DroppedIndex, RecommendResult, StatementEvidence
from analyzer.recommend.validate import Validator
from analyzer.snapshots.catalog import Catalog, read_catalog
from pgarchitect.config import AnalyzerSettings, ValidationSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from tests.analyzer import shop
from tests.conftest import drop_database, new_database
from tests.waiting import eventually

PLANTED = {
    ("public.orders", ("customer_id",)),  # a foreign key used in a join
    ("public.events", ("session_id", "created_at")),  # a filter + ORDER BY … LIMIT
    ("public.customers", ("lower(email)",)),  # an expression
    ("public.orders", ("status", "created_at")),  # a status + date range
    ('"My Shop"."Order Items"', ('"Customer Id"', '"select"')),
    ('"My Shop"."Order Items"', ('lower("E-Mail")',)),
}
NEGATIVES = {
    ("public.orders", ("status",), "low_selectivity"),
    ("public.products", ("sku",), "covered_by_existing_index"),
    ("public.countries", ("name",), "table_too_small"),
}
NEVER_DROPPED = {"customers_pkey", "orders_pkey", "orders_note_key", "products_name_key",
                 "products_sku_warehouse_idx"}


def _shop(server: PgServer, extensions: tuple[str, ...] = ()) -> str:
    dsn = new_database(server, "shop", extensions)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(shop.SCHEMA.encode())
        # The load's counters must reach shared memory before ANALYZE resets them, or they
        # arrive after it and every table looks changed since its last ANALYZE.
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
        conn.execute("VACUUM ANALYZE")
        conn.execute(shop.CHURN)
    return dsn


@pytest.fixture(scope="module")
def shop15(pg15: PgServer) -> Iterator[str]:
    dsn = _shop(pg15, ("hypopg",))
    yield dsn
    drop_database(pg15, dsn)


@pytest.fixture(scope="module")
def shop18(pg18: PgServer) -> Iterator[tuple[str, str]]:
    """The shop and a sandbox copy of it (a database made from it as a template)."""
    dsn = _shop(pg18)
    sandbox = dsn + "_sandbox"
    with psycopg.connect(pg18.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(sandbox.rsplit("/", 1)[1]), sql.Identifier(dsn.rsplit("/", 1)[1])))
    yield dsn, sandbox
    drop_database(pg18, sandbox)
    drop_database(pg18, dsn)


def _target(dsn: str) -> psycopg.Connection[Any]:
    """A session like the analyzer's: autocommit, read-only by default."""
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SET default_transaction_read_only = on")
    conn.execute("SET lock_timeout = '1s'")
    return conn


def _catalog(conn: psycopg.Connection[Any]) -> Catalog:
    # Statistics counted for eight days: old enough for unused_index_min_age (7 days).
    return dataclasses.replace(read_catalog(conn),
                               stats_reset=datetime.now(UTC) - timedelta(days=8))


def _run(conn: psycopg.Connection[Any], mode: str, statements: list[StatementEvidence],
         catalog: Catalog | None = None, dropped: tuple[DroppedIndex, ...] = (),
         table_writes: dict[str, int] | None = None, **validation: Any) -> RecommendResult:
    settings = AnalyzerSettings(validation=ValidationSettings(mode=mode, **validation))
    return recommend(conn, statements, catalog or _catalog(conn), dropped, settings,
                     conn.info.server_version, table_writes={} if table_writes is None
                     else table_writes)


def _leftovers(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(indexes in pg_class, prepared statements of this session)."""
    indexes = conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'i'").fetchone()
    prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
    assert indexes is not None and prepared is not None
    return int(indexes[0]), int(prepared[0])


def _check_planted(result: RecommendResult, method: str) -> None:
    created = {(r.table, r.columns): r for r in result.proposed if r.kind == "create_index"}
    assert set(created) >= PLANTED, sorted(created)
    for key in PLANTED:
        r = created[key]
        assert r.validated_by == method and r.confidence >= 0.8
        assert r.ddl is not None and r.ddl.startswith("CREATE INDEX CONCURRENTLY ")
        assert r.revert_ddl is not None and r.revert_ddl.startswith("DROP INDEX CONCURRENTLY ")
        assert r.estimated_cost_before and r.estimated_cost_after is not None
        assert r.estimated_cost_after < r.estimated_cost_before / 2
        assert r.rationale.endswith(".") and r.queryids
    skipped = {(n.table, n.columns, n.reason) for n in result.not_proposed
               if n.kind == "create_index"}
    assert skipped >= NEGATIVES
    proposed_tables = {(r.table, r.columns) for r in result.proposed if r.kind == "create_index"}
    assert not {(t, c) for t, c, _ in NEGATIVES} & proposed_tables
    drops = {r.evidence["index"]: r for r in result.proposed if r.kind == "drop_index"}
    assert drops["public.orders_total_idx"].evidence["why"] == "unused"
    assert drops["public.products_sku_idx"].evidence["why"] == "duplicate"
    assert not {f"public.{n}" for n in NEVER_DROPPED} & set(drops)
    assert drops["public.products_sku_idx"].revert_ddl == (
        "CREATE INDEX CONCURRENTLY products_sku_idx ON public.products USING btree (sku)")


def _statements() -> list[StatementEvidence]:
    return [shop.evidence(name) for name in shop.STATEMENTS]


def _apply_and_revert(dsn: str, result: RecommendResult) -> None:
    """The hostile-identifier DDL is valid: it builds the index, and the revert drops it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for r in result.proposed:
            if r.table != '"My Shop"."Order Items"' or r.kind != "create_index":
                continue
            assert r.ddl is not None and r.revert_ddl is not None
            conn.execute(r.ddl.encode())
            name = r.evidence["index_name"]
            row = conn.execute(
                "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'My Shop' AND c.relname = %s",
                (name,)).fetchone()
            assert row is not None and row[0], r.ddl
            conn.execute(r.revert_ddl.encode())
            assert conn.execute("SELECT to_regclass(%s)", (f'"My Shop"."{name}"',)
                                ).fetchone() == (None,)


def test_hypopg_on_15(shop15: str) -> None:
    with _target(shop15) as conn:
        before = _leftovers(conn)
        result = _run(conn, "hypopg", _statements())
        _check_planted(result, "hypopg")
        assert result.method == "hypopg" and result.validations >= len(PLANTED)
        assert _leftovers(conn) == before
        assert conn.execute("SELECT count(*) FROM hypopg()").fetchone() == (0,)
    _apply_and_revert(shop15, result)


def test_auto_picks_hypopg_where_installed(shop15: str) -> None:
    with _target(shop15) as conn:
        result = _run(conn, "auto", [shop.evidence("fk_join")])
    assert result.method == "hypopg"
    assert [r.validated_by for r in result.proposed if r.kind == "create_index"] == ["hypopg"]


def test_transaction_on_18(shop18: tuple[str, str]) -> None:
    dsn, _ = shop18
    with _target(dsn) as conn:
        before = _leftovers(conn)
        analysed = {t.qualified: (t.last_analyzed, t.mod_since_analyze)
                    for t in read_catalog(conn).tables}
        result = _run(conn, "transaction", _statements())
        _check_planted(result, "transaction")
        assert _leftovers(conn) == before
        # no trace in the statistics either: nothing looks analysed or changed
        assert {t.qualified: (t.last_analyzed, t.mod_since_analyze)
                for t in read_catalog(conn).tables} == analysed
    _apply_and_revert(dsn, result)


def test_sandbox_on_18(shop18: tuple[str, str]) -> None:
    dsn, sandbox = shop18
    with _target(dsn) as conn, psycopg.connect(sandbox, autocommit=True) as box:
        before, box_before = _leftovers(conn), _leftovers(box)
        result = _run(conn, "auto", _statements(), sandbox_dsn=Dsn(sandbox))
        _check_planted(result, "sandbox")
        assert _leftovers(conn) == before and _leftovers(box) == box_before


def test_a_held_lock_is_given_up_and_recorded(shop18: tuple[str, str]) -> None:
    dsn, _ = shop18
    with psycopg.connect(dsn) as holder, _target(dsn) as conn:
        holder.execute("LOCK TABLE orders IN ROW EXCLUSIVE MODE")  # an open write transaction
        result = _run(conn, "transaction", _statements(), lock_timeout=0.2)
        holder.rollback()
    locked = {(n.table, n.columns) for n in result.not_proposed
              if n.reason == "lock_not_available"}
    assert ("public.orders", ("customer_id",)) in locked
    assert ("public.orders", ("status", "created_at")) in locked
    assert ("public.events", ("session_id", "created_at")) in {
        (r.table, r.columns) for r in result.proposed}


def test_hypopg_gives_up_on_a_table_locked_exclusively(shop15: str) -> None:
    with psycopg.connect(shop15) as holder, _target(shop15) as conn:
        catalog = _catalog(conn)  # read before: the audit reads it with the snapshot
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # an ALTER TABLE running
        result = _run(conn, "hypopg", [shop.evidence("filter_sort"), shop.evidence("fk_join")],
                      catalog=catalog, lock_timeout=0.2)
        holder.rollback()
        assert conn.execute("SELECT count(*) FROM hypopg()").fetchone() == (0,)
    assert [(n.table, n.reason) for n in result.not_proposed if n.table == "public.events"] == [
        ("public.events", "lock_not_available")]
    assert ("public.orders", ("customer_id",)) in {(r.table, r.columns) for r in result.proposed}


def test_transaction_refuses_tables_above_the_limit(shop18: tuple[str, str]) -> None:
    dsn, _ = shop18
    with _target(dsn) as conn:
        result = _run(conn, "transaction", [shop.evidence("fk_join")], max_table_bytes=1024)
    assert [n.reason for n in result.not_proposed if n.table == "public.orders"] == [
        "table_too_large"]


def test_a_dropped_index_comes_back_from_its_definition(shop15: str) -> None:
    with psycopg.connect(shop15, autocommit=True) as admin:
        admin.execute("CREATE INDEX events_created_idx ON events (created_at)")
        with _target(shop15) as conn:
            old = read_catalog(conn).index("public.events_created_idx")
        admin.execute("DROP INDEX events_created_idx")
    assert old is not None
    slow = shop.evidence("SELECT count(*) FROM events WHERE created_at BETWEEN $1 AND $2",
                         regressed=True)
    dropped = DroppedIndex(old.qualified_name, old.qualified_table, old.definition,
                           slow.queryids)
    with _target(shop15) as conn:
        result = _run(conn, "hypopg", [slow], dropped=(dropped,))
    (rec,) = [r for r in result.proposed if r.kind == "create_index"]
    assert rec.ddl == "CREATE INDEX CONCURRENTLY events_created_idx ON public.events " \
                      "USING btree (created_at)"
    assert rec.revert_ddl == "DROP INDEX CONCURRENTLY IF EXISTS public.events_created_idx"
    assert rec.evidence["source"] == "dropped_index" and list(rec.queryids) == slow.queryid_texts
    assert "events_created_idx was dropped" in rec.rationale


def test_a_write_heavy_table_where_the_index_loses(shop15: str) -> None:
    with _target(shop15) as conn:
        quiet = _run(conn, "hypopg", [shop.evidence("fk_join")],
                     table_writes={"public.orders": 1_000})
        result = _run(conn, "hypopg", [shop.evidence("fk_join"), shop.evidence("filter_sort")],
                      table_writes={"public.orders": 50_000_000})
    (kept,) = [r for r in quiet.proposed if r.kind == "create_index"]
    assert kept.evidence["write_ms_per_day"] > 0
    assert kept.benefit_ms_per_day is not None and kept.benefit_ms_per_day < \
        kept.evidence["saved_ms_per_day"]
    (lost,) = [n for n in result.not_proposed if n.table == "public.orders"
               and n.kind == "create_index" and n.columns == ("customer_id",)]
    assert lost.reason == "write_cost_exceeds_benefit" and "rows written" in (lost.detail or "")
    assert [r.table for r in result.proposed if r.kind == "create_index"] == ["public.events"]


def test_off_and_unusable_modes_list_everything_as_not_validated(shop18: tuple[str, str]
                                                                 ) -> None:
    dsn, _ = shop18
    with _target(dsn) as conn:
        for mode in ("off", "hypopg", "auto"):  # 18 has no hypopg; auto without a sandbox
            result = _run(conn, mode, [shop.evidence("fk_join")])
            assert not [r for r in result.proposed if r.kind == "create_index"]
            (skip,) = [n for n in result.not_proposed if n.table == "public.orders"]
            assert skip.reason == "not_validated" and skip.columns == ("customer_id",)


def test_young_statistics_keep_unused_indexes(shop15: str) -> None:
    with _target(shop15) as conn:
        cat = dataclasses.replace(read_catalog(conn), stats_reset=datetime.now(UTC)
                                  - timedelta(days=1))
        result = _run(conn, "off", [], catalog=cat)
    young = {n.table: n for n in result.not_proposed if n.kind == "drop_index"}
    assert young["public.orders"].reason == "too_young"
    assert [r.evidence["why"] for r in result.proposed if r.kind == "drop_index"] == [
        "duplicate"]


@pytest.mark.parametrize("version", [15, 18])
def test_dead_rows_and_stale_statistics(version: int, shop15: str,
                                        shop18: tuple[str, str]) -> None:
    dsn = shop15 if version == 15 else shop18[0]
    with _target(dsn) as conn:
        def churned() -> bool:
            t = read_catalog(conn).table("public.carts")
            return t is not None and t.dead_tuples >= 30000 and t.mod_since_analyze >= 30000

        eventually(churned, "the cart update in pg_stat_user_tables")
        result = _run(conn, "off", [])
    found = {(r.kind, r.table): r for r in result.proposed}
    assert found[("vacuum", "public.carts")].ddl == "VACUUM (ANALYZE) public.carts"
    assert found[("analyze", "public.carts")].ddl == "ANALYZE public.carts"
    assert "30,000 dead rows" in found[("vacuum", "public.carts")].rationale
    assert not {t for k, t in found if k in ("vacuum", "analyze") and t != "public.carts"}


def test_validator_resets_hypopg_on_close(shop15: str) -> None:
    with _target(shop15) as conn:
        with Validator(conn, ValidationSettings(mode="hypopg"), conn.info.server_version) as v:
            conn.execute("SELECT hypopg_create_index('CREATE INDEX ON orders (total)')")
            assert v.available
        assert conn.execute("SELECT count(*) FROM hypopg()").fetchone() == (0,)
