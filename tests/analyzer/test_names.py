"""Qualified names are pairs: `"a.b".c` and `a."b.c"` are two tables, everywhere."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.analysis.features import parse_statement, qualify
from analyzer.names import qualified, requote, split, split_column, split_qualified
from analyzer.plans import column_selectivity, leading_index_columns, resolve_tables
from analyzer.recommend import ddl
from analyzer.snapshots.catalog import read_catalog
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store.connection import connect_store
from pgarchitect.config import AnalyzerSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from tests.conftest import drop_database, new_database

SETTINGS = AnalyzerSettings()
DOTTED = """
CREATE SCHEMA "a.b"; CREATE SCHEMA a;
CREATE TABLE "a.b".c (id int PRIMARY KEY, k int);
CREATE TABLE a."b.c" (id int PRIMARY KEY, k int);
INSERT INTO "a.b".c SELECT g, g FROM generate_series(1, 3000) g;
INSERT INTO a."b.c" SELECT g, g FROM generate_series(1, 10) g;
ANALYZE "a.b".c;
"""


@pytest.fixture
def dotted(pg_server: PgServer) -> Iterator[str]:
    dsn = new_database(pg_server, "dotted", extensions=("pg_stat_statements",))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DOTTED)
    yield dsn
    drop_database(pg_server, dsn)


@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
def test_printed_names_read_back_into_their_parts(schema: str, name: str) -> None:
    printed = qualified(schema, name)
    assert split(printed) == (schema, name)
    assert split_qualified(printed) == (schema, name)
    assert requote(printed) == printed
    assert split_column(printed + ".col") == (printed, "col")


def test_the_two_dotted_tables_do_not_collide(dotted: str, store: str) -> None:
    with connect_target(Dsn(dotted), "target", SETTINGS) as conn:
        catalog = read_catalog(conn)
        catalog.structure()  # sorted (name, analyzed) pairs: a TypeError when they collided
        one, other = catalog.table('"a.b".c'), catalog.table('a."b.c"')
        assert one is not None and other is not None and one != other
        assert one.last_analyzed is not None and other.last_analyzed is None
        assert {i.qualified_table for i in catalog.indexes} == {'"a.b".c', 'a."b.c"'}
        resolved = resolve_tables(conn, ['"a.b".c', 'a."b.c"'])
        assert resolved == {'"a.b".c': '"a.b".c', 'a."b.c"': 'a."b.c"'}
        assert leading_index_columns(conn, ['"a.b".c']) == {'"a.b".c.id'}
        assert set(column_selectivity(conn, ['"a.b".c'])) == {'"a.b".c.id', '"a.b".c.k'}
        assert column_selectivity(conn, ['a."b.c"']) == {}  # not analysed
        with connect_store(Dsn(store)) as sconn:
            take_snapshot(StatementSource(conn), sconn, "dotted", SETTINGS.retention)
    shape = qualify(parse_statement('SELECT id FROM "a.b".c WHERE k = $1'), resolved)
    assert shape.tables == ('"a.b".c',) and shape.columns == ('"a.b".c.k',)
    assert ddl.qualified(one.qualified) == '"a.b".c'
    assert ddl.qualified(other.qualified) == 'a."b.c"'
