"""Pure parts of the exporter: error classes, selection, text cache, bounding, families."""

from __future__ import annotations

import asyncpg
import pytest

from exporter.collectors.activity import bound_application_names
from exporter.errors import CollectorError, Reason, classify
from exporter.families import build
from exporter.model import ActivityRow, ScrapeResult, StatementRow, Statements
from exporter.selection import Selection, TextCache, fold_into_other
from exporter.sql.statements import select_statements, version_tuple


def row(qid: int | None, calls: int = 1, top: bool = True, exec_s: float = 1.0) -> StatementRow:
    return StatementRow(
        datname="app", user="u", dbid=1, userid=10, queryid=qid, top=top, calls=calls,
        exec_seconds=exec_s, plan_seconds=0.0, rows=calls, shared_blks_hit=0,
        shared_blks_read=0, shared_blks_dirtied=0, shared_blks_written=0, temp_blks_written=0,
        blk_read_seconds=0.0, blk_write_seconds=0.0, wal_bytes=0.0,
        sum_squares=calls * (exec_s / calls) ** 2)


@pytest.mark.parametrize(("exc", "reason", "fatal"), [
    (asyncpg.exceptions.InsufficientPrivilegeError("x"), Reason.PERMISSION, False),
    (asyncpg.exceptions.UndefinedFunctionError("x"), Reason.MISSING_EXTENSION, False),
    (asyncpg.exceptions.UndefinedTableError("x"), Reason.MISSING_EXTENSION, False),
    (asyncpg.exceptions.ObjectNotInPrerequisiteStateError("x"), Reason.NOT_PRELOADED, False),
    (asyncpg.exceptions.QueryCanceledError("x"), Reason.TIMEOUT, False),
    (asyncpg.exceptions.LockNotAvailableError("x"), Reason.TIMEOUT, False),
    (asyncpg.exceptions.InvalidPasswordError("x"), Reason.CONNECT, True),
    (asyncpg.exceptions.AdminShutdownError("x"), Reason.CONNECT, True),
    (asyncpg.exceptions.ConnectionDoesNotExistError("x"), Reason.CONNECT, True),
    (ConnectionRefusedError(111, "refused"), Reason.CONNECT, True),
    (TimeoutError(), Reason.TIMEOUT, True),
    (asyncpg.exceptions.DivisionByZeroError("x"), Reason.QUERY, False),
    (CollectorError(Reason.PERMISSION, "no role"), Reason.PERMISSION, False),
])
def test_classify(exc: BaseException, reason: Reason, fatal: bool) -> None:
    got = classify(exc)
    assert (got.reason, got.fatal) == (reason, fatal)
    assert got.message


def test_selection_keeps_for_window_then_folds() -> None:
    sel = Selection(keep_scrapes=2, max_series=10)
    sel.apply([row(1), row(2)])
    assert sel.kept_keys() == ([1, 1], [10, 10], [1, 2])
    # Key 2 leaves the top lists: the server returns it as kept (top False) for two scrapes.
    for _ in range(2):
        out = sel.apply([row(1), row(2, top=False)])
        assert {r.queryid for r in out} == {1, 2}
    assert sel.kept_keys()[2] == [1]


def test_selection_caps_per_database_into_other() -> None:
    sel = Selection(keep_scrapes=5, max_series=3)
    rows = [row(q, calls=q, exec_s=float(q)) for q in range(1, 7)] + [row(None, calls=100)]
    out = sel.apply(rows)
    named = sorted(r.queryid for r in out if r.queryid is not None)
    assert named == [4, 5, 6]
    (other,) = [r for r in out if r.queryid is None]
    assert other.calls == 100 + 1 + 2 + 3
    assert sum(r.calls for r in out) == sum(r.calls for r in rows)


def test_fold_pools_stddev() -> None:
    a, b = row(1, calls=2, exec_s=2.0), row(2, calls=2, exec_s=6.0)  # means 1 and 3, sd 0
    (other,) = fold_into_other([a, b]).values()
    assert other.calls == 4 and other.mean_seconds == 2.0
    assert other.stddev_seconds == pytest.approx(1.0)


def test_text_cache_is_bounded_lru() -> None:
    cache = TextCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"
    cache.put(3, "c")
    assert cache.missing([1, 2, 3]) == [2]
    assert len(cache) == 2


def test_application_names_bounded() -> None:
    rows = [ActivityRow("db", "idle", f"app{i}", i) for i in range(1, 6)]
    rows.append(ActivityRow("db", "active", "app5", 1))
    out = bound_application_names(rows, 2)
    assert {r.application_name for r in out} == {"app5", "app4", "other"}
    assert sum(r.count for r in out) == sum(r.count for r in rows)
    assert [r.count for r in out if r.application_name == "other"] == [1 + 2 + 3]


def test_families_other_label_and_target() -> None:
    result = ScrapeResult(target="t", up=True, statements=Statements(
        rows=(row(7, calls=3), row(None, calls=4)), texts={7: "SELECT $1"}, info=None))
    families = {f.name: f for f in build([result])}
    calls = families["pg_stat_statements_calls"].samples
    assert {(s.labels["queryid"], s.value) for s in calls} == {("7", 3.0), ("other", 4.0)}
    assert all(s.labels["target"] == "t" for s in calls)
    info = families["pg_stat_statements_query_info"].samples
    assert [s.labels["query"] for s in info] == ["SELECT $1"]


@pytest.mark.parametrize(("version", "read"), [
    ("1.8", "sum((blk_read_time)::float8)"), ("1.10", "sum((blk_read_time)::float8)"),
    ("1.11", "sum((shared_blk_read_time + local_blk_read_time)::float8)"),
    ("1.12", "sum((shared_blk_read_time + local_blk_read_time)::float8)"),
])
def test_statement_sql_variants(version: str, read: str) -> None:
    text = select_statements(version, "public")
    assert text.startswith("/* pgarchitect */")
    assert read in text and '"public".pg_stat_statements(false)' in text
    assert version_tuple(version) >= (1, 8)
