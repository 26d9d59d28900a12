"""Pure parts of the exporter: error classes, selection, text cache, bounding, families."""

from __future__ import annotations

import random

import asyncpg
import pytest

from exporter.collectors import NAMES as COLLECTORS
from exporter.collectors.activity import ActivityRow, bound_application_names
from exporter.collectors.statements.rows import StatementRow, Statements, to_row
from exporter.collectors.statements.sql import select_statements, version_tuple
from exporter.errors import CollectorError, Reason, classify
from exporter.families import build, to_metrics
from exporter.model import ScrapeResult
from exporter.selection import (
    COLUMNS,
    RANKED,
    Chosen,
    NameCache,
    Selection,
    TextCache,
    fold_database,
)


def raw(qid: int, calls: int = 1, exec_ms: float = 1.0, dbid: int = 1, userid: int = 10,
        read: int = 0, temp: int = 0) -> tuple[object, ...]:
    """A row of pg_stat_statements(false) as the collector reads it (COLUMNS order)."""
    values = {"dbid": dbid, "userid": userid, "queryid": qid, "calls": calls,
              "exec_ms": exec_ms, "plan_ms": 0.0, "rows": calls, "shared_blks_hit": 0,
              "shared_blks_read": read, "shared_blks_dirtied": 0, "shared_blks_written": 0,
              "temp_blks_written": temp, "blk_read_ms": 0.0, "blk_write_ms": 0.0,
              "wal_bytes": 0.0, "sumsq_ms2": calls * (exec_ms / calls) ** 2}
    assert tuple(values) == COLUMNS
    return tuple(values.values())


def names() -> NameCache:
    cache = NameCache(ttl=60.0)
    cache.put([1, 2], [10, 11], [("d", 1, "app"), ("d", 2, "other_db"), ("r", 10, "u")])
    return cache


def row(qid: int | None, calls: int = 1, exec_s: float = 1.0) -> StatementRow:
    """A StatementRow (queryid None: an `other` row)."""
    r = list(raw(0, calls=calls, exec_ms=exec_s * 1000))
    r[2] = qid
    return to_row(r, qid is not None, names())


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


def named(chosen: Chosen) -> dict[object, bool]:
    """queryid -> on top now, of the rows that got their own series."""
    return {r[2]: top for r, top in chosen.rows}


def test_selection_keeps_for_window_then_folds() -> None:
    sel = Selection(top_n=1, keep_scrapes=2, max_series=10)
    # 1 has the most time, 2 the most calls: both on top.
    assert named(sel.choose([raw(1, calls=1, exec_ms=50.0), raw(2, calls=5)])) == {
        1: True, 2: True}
    # 2 leaves the top lists: it keeps its series (not on top) for two more scrapes.
    later = [raw(1, calls=9, exec_ms=50.0), raw(2, calls=5), raw(3, calls=1, exec_ms=0.1)]
    for _ in range(2):
        chosen = sel.choose(later)
        assert named(chosen) == {1: True, 2: False}
        (other,) = chosen.others
        assert other[2] is None and other[3] == 1
    chosen = sel.choose(later)
    assert named(chosen) == {1: True}
    assert chosen.others[0][3] == 5 + 1


def test_selection_caps_per_database_into_other() -> None:
    sel = Selection(top_n=100, keep_scrapes=5, max_series=3)
    rows = [raw(q, calls=q, exec_ms=float(q)) for q in range(1, 7)]
    chosen = sel.choose(rows)
    assert sorted(named(chosen)) == [4, 5, 6]
    (other,) = chosen.others
    assert other[3] == 1 + 2 + 3
    assert sum(r[3] for r, _ in chosen.rows) + other[3] == sum(r[3] for r in rows)


def test_selection_every_top_list_and_database() -> None:
    sel = Selection(top_n=1, keep_scrapes=1, max_series=10)
    rows = [raw(1, exec_ms=90.0), raw(2, calls=50), raw(3, read=7), raw(4, temp=3),
            raw(5), raw(6), raw(7, dbid=2, userid=11), raw(8, dbid=2), raw(9, dbid=2)]
    chosen = sel.choose(rows)
    by_db: dict[object, set[object]] = {}
    for r, _ in chosen.rows:
        by_db.setdefault(r[0], set()).add(r[2])
    # An I/O-heavy statement is not hidden by a CPU-heavy one; top lists are per database.
    assert by_db[1] == {1, 2, 3, 4}
    assert len(by_db[2]) >= 1
    others = {(o[0], o[1]): o[3] for o in chosen.others}
    assert others[(1, 10)] == 2  # 5 and 6
    total = sum(r[3] for r, _ in chosen.rows) + sum(others.values())
    assert total == sum(r[3] for r in rows)


def test_selection_adds_up_top_level_and_nested_rows() -> None:
    sel = Selection(top_n=5, keep_scrapes=1, max_series=10)
    chosen = sel.choose([raw(1, calls=2), raw(1, calls=3, exec_ms=500.0), raw(2)])
    merged = {r[2]: r for r, _ in chosen.rows}
    assert merged[1][3] == 5 and merged[1][4] == 501.0
    assert len(chosen.rows) == 2 and chosen.others == []


def test_fold_pools_stddev() -> None:
    a, b = raw(1, calls=2, exec_ms=2000.0), raw(2, calls=2, exec_ms=6000.0)  # means 1 s, 3 s
    (other,) = fold_database([a, b])
    row = to_row(other, False, names())
    assert row.queryid is None and row.user == "u" and row.datname == "app"
    assert row.calls == 4 and row.mean_seconds == 2.0
    assert row.stddev_seconds == pytest.approx(1.0)


def test_name_cache_asks_for_unknown_and_refreshes() -> None:
    cache = NameCache(ttl=60.0)
    assert cache.missing([1], [10], now=0.0) == ([1], [10])
    cache.put([1], [10], [("d", 1, "app")])  # role 10 is gone: its number stands in
    assert cache.missing([1], [10], now=1.0) == ([], [])
    assert (cache.databases[1], cache.roles[10]) == ("app", "10")
    assert cache.missing([1], [10], now=61.0) == ([1], [10])


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
    result = ScrapeResult(target="t", up=True, data={"statements": Statements(
        rows=(row(7, calls=3), row(None, calls=4)), texts={7: "SELECT $1"}, info=None)})
    families = {f.name: f for f in to_metrics(build([result]))}
    calls = families["pg_stat_statements_calls"].samples
    assert {(s.labels["queryid"], s.value) for s in calls} == {("7", 3.0), ("other", 4.0)}
    assert all(s.labels["target"] == "t" for s in calls)
    info = families["pg_stat_statements_query_info"].samples
    assert [s.labels["query"] for s in info] == ["SELECT $1"]


@pytest.mark.parametrize(("version", "read"), [
    ("1.8", "blk_read_time AS blk_read_ms"), ("1.10", "blk_read_time AS blk_read_ms"),
    ("1.11", "shared_blk_read_time + local_blk_read_time AS blk_read_ms"),
    ("1.12", "shared_blk_read_time + local_blk_read_time AS blk_read_ms"),
])
def test_statement_sql_variants(version: str, read: str) -> None:
    text = select_statements(version, "public")
    assert text.startswith("/* pgarchitect */ SELECT /* pgarchitect */ ")
    assert read in text and '"public".pg_stat_statements(false)' in text
    assert version_tuple(version) >= (1, 8)
    # The result columns come in COLUMNS order (the collector unpacks them by position).
    select_list = text.split(" SELECT /* pgarchitect */ ", 1)[1].split(" FROM ", 1)[0]
    names_in_order = [c.rsplit(" AS ", 1)[-1].strip() for c in select_list.split(", ")]
    assert tuple(names_in_order) == COLUMNS


def test_thresholds_are_the_last_value_of_each_full_list() -> None:
    sel = Selection(top_n=2, keep_scrapes=3, max_series=10)
    rows = [raw(q, calls=6 - q, exec_ms=float(q), read=q if q > 3 else 0) for q in range(1, 6)]
    sel.choose([*rows, raw(9, dbid=2)])
    # exec: 5, 4 -> 4.0; calls: 5, 4 -> 4; blocks read: 5, 4 -> 4; temp: none -> 0.
    # Database 2 has fewer rows than a list holds: no thresholds, all of it is read.
    assert sel.thresholds == {1: (4.0, 4, 4, 0)}


def server_filter(sel: Selection, rows: list[tuple[object, ...]]
                  ) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """What select_candidates returns for `rows`, computed in Python."""
    held = set(sel.held())
    candidates: list[tuple[object, ...]] = []
    rest: list[tuple[object, ...]] = []
    for r in rows:
        t = sel.thresholds.get(r[0])  # type: ignore[arg-type]
        above = t is None or r[2] in held or any(
            r[c] > bound for (c, _), bound in zip(RANKED, t, strict=True))  # type: ignore[operator]
        (candidates if above else rest).append(r)
    return candidates, fold_database(rest) if rest else []


def test_candidate_reads_choose_what_full_reads_choose() -> None:
    rng = random.Random(7)
    full = Selection(top_n=5, keep_scrapes=3, max_series=12)
    partial = Selection(top_n=5, keep_scrapes=3, max_series=12)
    calls = {q: q for q in range(1, 80)}
    exec_ms = {q: rng.random() for q in calls}
    reads = {q: 0 for q in calls}
    used_candidates = 0
    for _ in range(12):
        for q in rng.sample(sorted(calls), 15):  # counters only grow
            calls[q] += rng.randrange(1, 40) * 100
            exec_ms[q] += rng.random() * 50
            reads[q] += rng.choice((0, 0, rng.randrange(1, 10_000)))
        rows = [raw(q, calls=calls[q], exec_ms=exec_ms[q], read=reads[q]) for q in calls]
        expected = full.choose(rows)
        if partial.thresholds:
            used_candidates += 1
            statements, summed = server_filter(partial, rows)
            assert len(statements) < len(rows)
            got = partial.choose(statements, summed)
        else:
            got = partial.choose(rows)
        assert named(got) == named(expected)
        assert got.others[0][2:4] == expected.others[0][2:4]
    assert used_candidates >= 10


def test_thresholds_cleared_when_a_held_statement_is_reset() -> None:
    sel = Selection(top_n=2, keep_scrapes=3, max_series=10)
    rows = [raw(q, calls=10 * q, exec_ms=float(q)) for q in range(1, 6)]
    sel.choose(rows)
    assert sel.thresholds
    rows[4] = raw(5, calls=1, exec_ms=0.001)  # pg_stat_statements_reset(.., .., queryid)
    sel.choose(rows)
    assert sel.thresholds == {}


def test_collector_errors_exported_at_zero_from_the_start() -> None:
    result = ScrapeResult(target="t", up=True)
    result.errors_total = {("statements", "permission"): 2}
    families = {f.name: f for f in to_metrics(build([result]))}
    errors = {(s.labels["collector"], s.labels["reason"]): s.value
              for s in families["pg_exporter_collector_errors"].samples
              if s.name.endswith("_total")}
    assert set(errors) == {(c, r.value) for c in COLLECTORS for r in Reason}
    assert errors[("statements", "permission")] == 2
    assert sum(errors.values()) == 2


@pytest.mark.parametrize("seed", range(6))
def test_a_quiet_database_gets_the_choice_a_fresh_selection_makes(seed: int) -> None:
    """Selection repeats the last choice of a database whose rows did not change; the result
    (series, on top or not, others, thresholds, hysteresis) is what a selection without that
    memory chooses from the same rows."""
    rng = random.Random(seed)
    fast = Selection(top_n=3, keep_scrapes=2, max_series=9)
    fresh = Selection(top_n=3, keep_scrapes=2, max_series=9)
    counters = {(db, q): [q, rng.random()] for db in (1, 2, 3) for q in range(1, 13)}
    repeated, last = 0, set()
    for _ in range(20):
        moving = rng.choice([(), (1,), (1, 2), (3,), (1, 2, 3)])
        for (db, _q), c in counters.items():
            if db in moving and rng.random() < 0.4:
                c[0] += rng.randrange(1, 30)
                c[1] += rng.random() * 3
        rows = [raw(q, calls=c[0], exec_ms=c[1], dbid=db) for (db, q), c in counters.items()]
        fresh._same = {}
        got, expected = fast.choose(rows), fresh.choose(rows)
        assert sorted(got.rows) == sorted(expected.rows)
        assert got.others == expected.others
        assert fast.thresholds == fresh.thresholds
        assert fast.last_top == fresh.last_top
        repeated += sum(1 for r, _ in got.rows if id(r) in last)
        # Compared while both scrapes' rows are alive, so an id is one object's.
        last = {id(r) for r, _ in got.rows}
    assert repeated > 0
