"""Generic plans on PostgreSQL 15 (PREPARE + force_generic_plan) and 18 (GENERIC_PLAN)."""

from __future__ import annotations

import psycopg

from analyzer.analysis.features import parse_statement
from analyzer.plans import explain_generic, leading_index_columns, resolve_tables
from analyzer.snapshots.source import connect_target
from pgarchitect.config import AnalyzerSettings
from pgarchitect.dsn import Dsn

SETTINGS = AnalyzerSettings()


def test_generic_plans_on_a_read_only_session_change_nothing(target_dsn: str) -> None:
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id bigint PRIMARY KEY, x int, t text)")
        conn.execute("INSERT INTO a SELECT g, g % 7, 'x' FROM generate_series(1, 1000) g")
        conn.execute("ANALYZE a")
    with connect_target(Dsn(target_dsn), "target", SETTINGS) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
        assert row is not None
        version = int(str(row[0]))
        shapes = {}
        for q in ("SELECT x FROM a WHERE id = $1", "UPDATE a SET x = $1 WHERE id = $2",
                  "DELETE FROM a WHERE x = $1", "INSERT INTO a (id, x) VALUES ($1, $2)"):
            shapes[q] = explain_generic(conn, q, parse_statement(q), version, 5.0, 1.0)
        assert explain_generic(conn, "VACUUM a", parse_statement("VACUUM a"), version,
                               5.0, 1.0) is None
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        assert resolve_tables(conn, ["a", "public.a", "missing"]) == {
            "a": "public.a", "public.a": "public.a"}
        assert leading_index_columns(conn, ["public.a"]) == {"public.a.id"}
    lookup = shapes["SELECT x FROM a WHERE id = $1"]
    assert lookup is not None
    assert {"node": "Index Scan", "relation": "public.a", "index": "a_pkey"} in lookup["nodes"]
    delete = shapes["DELETE FROM a WHERE x = $1"]
    assert delete is not None and delete["nodes"][0]["node"] == "ModifyTable"
    with psycopg.connect(target_dsn) as conn:
        assert conn.execute("SELECT count(*), sum(x) FROM a").fetchone() == (1000, 3003)
