"""The pg_stat_statements collector against real servers (PostgreSQL 15 and 18)."""

from __future__ import annotations

from collections import Counter

import asyncpg
import psycopg

from exporter.collectors import server
from exporter.collectors.statements import check_usable, read_view
from exporter.collectors.statements.sql import HAS_INFO, version_tuple
from exporter.model import ScrapeResult
from exporter.selection import Chosen, Selection
from tests.exporter.conftest import (
    Setup,
    run_statements,
    running_exporter,
    settings_for,
    statement,
)

COUNT = "SELECT count(*) FROM generate_series(1, 10)"
ROWS = "SELECT g FROM generate_series(1, 3) AS g"


def mon_name(setup: Setup) -> str:
    """Name of the exporter's database."""
    return setup.mon.rsplit("/", 1)[1]


def ground_truth(setup: Setup) -> dict[int, tuple[int, int]]:
    """queryid -> (calls, rows) of the role's statements in the work database, both levels."""
    out: Counter[tuple[int, str]] = Counter()
    for qid, _top, calls, rows, _q, _t in setup.pgss(
            "d.datname = %s AND r.rolname = %s AND s.queryid IS NOT NULL",
            (setup.datname, setup.role)):
        out[(qid, "calls")] += calls
        out[(qid, "rows")] += rows
    return {qid: (out[(qid, "calls")], out[(qid, "rows")]) for qid, _ in out}


async def test_values_equal_ground_truth(setup: Setup) -> None:
    run_statements(setup.work_as_role(), [COUNT], times=7)
    run_statements(setup.work_as_role(), [ROWS], times=4)
    run_statements(setup.work_as_role(), [statement(i) for i in range(20)])
    settings = settings_for({"mon": setup.mon}, statements_top_n=3)
    async with running_exporter(settings) as exp:
        got = await exp.samples()
    truth = ground_truth(setup)
    mine = {"user": setup.role, "datname": setup.datname}
    calls = got.get("pg_stat_statements_calls_total", **mine)
    rows = {lab["queryid"]: v for lab, v in got.get("pg_stat_statements_rows_total", **mine)}
    ids = {lab["queryid"] for lab, _ in calls}
    assert "other" in ids and len(ids) > 2
    for lab, value in calls:
        if lab["queryid"] != "other":
            assert (value, rows[lab["queryid"]]) == truth[int(lab["queryid"])]
    # Sums over queryid, `other` included, equal the view's totals.
    assert sum(v for _, v in calls) == sum(c for c, _ in truth.values())
    assert sum(rows.values()) == sum(r for _, r in truth.values())
    texts = {lab["query"]: lab["queryid"] for lab, _ in got.get(
        "pg_stat_statements_query_info", **mine)}
    count_id = texts["SELECT count(*) FROM generate_series($1, $2)"]
    rows_id = texts["SELECT g FROM generate_series($1, $2) AS g"]
    assert got.value("pg_stat_statements_calls_total", queryid=count_id, **mine) == 7
    assert got.value("pg_stat_statements_rows_total", queryid=rows_id, **mine) == 12
    assert got.value("pg_stat_statements_calls_total", queryid=rows_id, **mine) == 4
    mean = got.value("pg_stat_statements_mean_seconds", queryid=count_id, **mine)
    total = got.value("pg_stat_statements_seconds_total", queryid=count_id, **mine)
    assert abs(mean * 7 - total) <= 1e-9 * max(total, 1.0)


async def test_cardinality_bounded_with_2000_statements(setup: Setup) -> None:
    run_statements(setup.work_as_role(), [statement(i) for i in range(2000)])
    settings = settings_for({"mon": setup.mon}, statements_top_n=50, statements_max_series=80)
    async with running_exporter(settings) as exp:
        for _ in range(3):
            got = await exp.samples()
            series = got.get("pg_stat_statements_calls_total", datname=setup.datname)
            named = [lab for lab, _ in series if lab["queryid"] != "other"]
            others = [lab for lab, _ in series if lab["queryid"] == "other"]
            assert 50 <= len(named) <= 80
            assert len(others) == len({lab["user"] for lab in others}) >= 1
            truth = ground_truth(setup)
            mine = [v for lab, v in series if lab["user"] == setup.role]
            assert sum(mine) == sum(c for c, _ in truth.values())
    # Scrapes write no temp blocks, even over a view of 2,000+ statements. (PostgreSQL 18
    # drops a leading comment from the normalized text, so the exporter's statements are found
    # by their database: only the exporter and this test's reads run in `mon`.)
    own = setup.pgss("d.datname = %s", (mon_name(setup),))
    assert any("AS sumsq_ms2" in row[4] for row in own)
    assert sum(row[5] for row in own) == 0


async def test_dropped_statement_keeps_series_for_the_window(setup: Setup) -> None:
    keep = 2
    cheap = "SELECT 'cheap'"
    heavy = [f"SELECT sum(g) FROM generate_series(1, 20000) AS g WHERE g > {i}" for i in range(3)]
    heavy = [h.replace(f"g > {i}", "g > 0" + " AND g > 0" * i) for i, h in enumerate(heavy)]
    run_statements(setup.work_as_role(), [cheap], times=30)
    settings = settings_for({"mon": setup.mon}, statements_top_n=3,
                            statements_keep_scrapes=keep)
    mine = {"user": setup.role, "datname": setup.datname}
    async with running_exporter(settings) as exp:
        first = await exp.samples()
        texts = {lab["query"]: lab["queryid"]
                 for lab, _ in first.get("pg_stat_statements_query_info", **mine)}
        cheap_id = texts["SELECT $1"]
        # Push it out of every top list: three statements with more calls and more time.
        run_statements(setup.work_as_role(), heavy, times=40)
        present = []
        for _ in range(keep + 2):
            got = await exp.samples()
            present.append(bool(got.get("pg_stat_statements_calls_total",
                                        queryid=cheap_id, **mine)))
            truth = ground_truth(setup)
            total = sum(v for _, v in got.get("pg_stat_statements_calls_total", **mine))
            assert total == sum(c for c, _ in truth.values())
    assert present == [True] * keep + [False, False]


async def test_texts_are_read_once_the_first_round_inline_the_rest_after_their_round(
        setup: Setup) -> None:
    run_statements(setup.work_as_role(), [statement(i) for i in range(30)], times=2)
    settings = settings_for({"mon": setup.mon}, statements_top_n=10)
    async with running_exporter(settings) as exp:
        scraper = exp.scraper("mon")
        results: list[ScrapeResult] = []
        for i in range(4):
            if i == 2:  # new statements enter the top lists between two rounds
                run_statements(setup.work_as_role(), [statement(i) for i in range(50, 53)],
                               times=40)
            results.append(await scraper.collect())
            await scraper.settled()
        memory = scraper._memory["statements"]
    done = [r.data["statements"] for r in results if "statements" in r.data]
    exported = [{row.queryid for row in s.rows if row.queryid is not None} for s in done]
    assert len(done) == 4
    # The first round reads the texts of what it exports, so its series come with them.
    assert done[0].texts_fetched == len(exported[0]) > 0
    assert set(done[0].texts) == exported[0]
    # Later rounds read none on their path: a statement new to the series gets its text
    # after its round, and it shows from the next round on.
    assert [s.texts_fetched for s in done[1:]] == [0, 0, 0]
    new = exported[2] - exported[0] - exported[1]
    assert new  # the three that ran 40 times are on top by calls
    assert not new & set(done[2].texts)
    assert new <= set(done[3].texts)
    # Every text was read once: the queryids ever exported.
    assert memory.texts_read == len(set().union(*exported))
    text_query = setup.pgss("d.datname = %s AND s.query LIKE %s",
                            (mon_name(setup), "%left(min(query)%"))
    assert sum(row[2] for row in text_query) >= 2  # the first round's and at least one after
    assert all(row[5] == 0 for row in text_query)


async def test_candidate_read_chooses_what_a_full_read_chooses(setup: Setup) -> None:
    work = setup.work_as_role()
    with psycopg.connect(work, autocommit=True) as conn:
        for i in range(40):  # distinct call counts: no ties at the end of a top list
            for _ in range(i + 2):
                conn.execute(statement(i).encode())
    run_statements(work, [statement(i) for i in range(100, 400)])
    conn = await asyncpg.connect(setup.mon)
    try:
        version, schema = check_usable(await server.fetch(conn))
        held = Selection(top_n=10, keep_scrapes=3, max_series=50)
        first, _, _ = await read_view(conn, version, schema, held)
        held.choose(first)
        work_db, role = await conn.fetchrow(
            "SELECT (SELECT oid FROM pg_database WHERE datname = $1), "
            "(SELECT oid FROM pg_roles WHERE rolname = $2)", setup.datname, setup.role)
        assert work_db in held.thresholds
        # Grow an old statement into the top lists, and add a new heavy one.
        run_statements(work, [statement(1)], times=100)
        run_statements(work, [statement(500)], times=90)
        statements, summed, info = await read_view(conn, version, schema, held)
        everything, _, full_info = await read_view(conn, version, schema, Selection(10, 3, 50))
    finally:
        await conn.close()
    # Counted in this test's database only: the session's server also holds the statements of
    # every test that ran before (in random order, many small databases), and a database with
    # fewer statements than the top lists hold is all candidates.
    def in_work(rows: list[asyncpg.Record]) -> int:
        return sum(1 for r in rows if r[0] == work_db)

    assert summed and in_work(statements) < in_work(everything) / 2
    # pg_stat_statements_info comes with the candidates as it comes on its own (1.9+).
    assert info == full_info
    assert (info is None) == (version_tuple(version) < HAS_INFO)
    got = held.choose(statements, summed)
    expected = Selection(top_n=10, keep_scrapes=3, max_series=50).choose(everything)

    def top(chosen: Chosen) -> set[int]:
        return {r[2] for r, on_top in chosen.rows if on_top and r[0] == work_db}

    def calls(chosen: Chosen) -> int:
        mine = [r for r, _ in chosen.rows] + chosen.others
        return sum(r[3] for r in mine if (r[0], r[1]) == (work_db, role))

    assert top(got) == top(expected)
    assert len(top(got)) >= 10
    assert calls(got) == calls(expected) == sum(c for c, _ in ground_truth(setup).values())


async def test_a_database_dropped_and_created_again_under_its_name_has_no_duplicate_series(
        setup: Setup) -> None:
    name = f"{setup.datname}_again"
    dsn = setup.server.create_database(name)
    try:
        run_statements(dsn, [COUNT, ROWS], times=3)
        settings = settings_for({"mon": setup.mon})
        async with running_exporter(settings) as exp:
            before = await exp.samples()
            assert before.get("pg_stat_statements_calls_total", datname=name)
            # Same name, new oid; the old database's entries stay in the view.
            setup.server.execute(f'DROP DATABASE "{name}"')
            dsn = setup.server.create_database(name)
            run_statements(dsn, [COUNT, ROWS], times=2)
            got = await exp.samples()
        for family in ("pg_stat_statements_calls_total", "pg_stat_statements_query_info"):
            labels = [tuple(sorted(lab.items())) for lab, _ in got.by_name[family]]
            assert len(labels) == len(set(labels)), family
        # The new database carries its name; the dropped one's entries carry its oid.
        mine = {lab["queryid"]: v for lab, v in
                got.get("pg_stat_statements_calls_total", datname=name)
                if lab["queryid"] != "other"}
        assert sorted(mine.values()) == [2.0, 2.0]
    finally:
        setup.server.execute(f'DROP DATABASE IF EXISTS "{name}"')
