"""The fast exposition writer against prometheus-client's encoders on the same families."""

from __future__ import annotations

import dataclasses
import gzip
import math

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.app import TEXT_FORMAT, Rendered, accepts_gzip, negotiate
from exporter.collectors.database import DatabaseRow
from exporter.collectors.locks import DatabaseLocks
from exporter.collectors.statements.rows import (
    SampleMemo,
    StatementRow,
    Statements,
    StatementsInfo,
)
from exporter.collectors.tables import TableRow
from exporter.exposition import (
    OPENMETRICS,
    TEXT,
    LabelStrings,
    encode,
    fast_format,
    go_float,
    numbers,
    render,
)
from exporter.families import Family, build, to_metrics
from exporter.model import ScrapeResult, ServerInfo

NASTY = ['say "hi"', "back\\slash", "two\nlines", "ünïcødé ✓ 日本", 'all \\ "of\n them"', ""]


def statement(i: int, user: str, datname: str, queryid: int | None) -> StatementRow:
    return StatementRow(
        datname=datname, user=user, dbid=1, userid=10, queryid=queryid, top=True,
        calls=i * 1_000_003, exec_seconds=i / 7, plan_seconds=0.0, rows=i * 12_345_678,
        shared_blks_hit=i, shared_blks_read=0, shared_blks_dirtied=1, shared_blks_written=2,
        temp_blks_written=3, blk_read_seconds=1e-9 * i, blk_write_seconds=1.5e10,
        wal_bytes=float(2**53), sum_squares=(i / 7) ** 2)


def result(target: str) -> ScrapeResult:
    rows = [statement(i + 1, user, NASTY[-i - 1], -(2**63) + i)
            for i, user in enumerate(NASTY)]
    rows.append(statement(9, "u", "d", None))
    texts: dict[int, str] = {row.queryid: f"SELECT '{row.user}'"
                             for row in rows if row.queryid is not None}
    info = ServerInfo(180006, "18.0 (Debian \"x\")", False, 100, "app", "1.12", "public", True)
    return ScrapeResult(
        target=target, up=True, finished_at=1_700_000_000.123, server=info,
        data={"statements": Statements(rows=tuple(rows), texts=texts,
                                       info=StatementsInfo(dealloc=0, stats_reset=None)),
              "tables": [TableRow("app", "public", name, 0, 1, 2, -1) for name in NASTY]},
        durations={"server": 0.000123, "statements": 1e-7},
        errors_total={("statements", "timeout"): 2}, rounds_total=3)


def families() -> list[Family]:
    return build([result("one"), result('t"wo\\')])


def reference(fams: list[Family], accept: str) -> bytes:
    encoder, _ = choose_encoder(accept)
    registry = CollectorRegistry(auto_describe=False)
    for metric in to_metrics(fams):
        registry.register(_One(metric))
    return encoder(registry)


class _One:
    def __init__(self, metric: object) -> None:
        self.metric = metric

    def collect(self) -> list[object]:
        return [self.metric]


ACCEPTS = [
    "",
    "text/plain; version=0.0.4",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; escaping=underscores",
    "application/openmetrics-text; version=0.0.1",
]


@pytest.mark.parametrize("accept", ACCEPTS)
def test_fast_writer_writes_the_encoders_bytes(accept: str) -> None:
    fams = families()
    body, content_type, _ = encode(fams, accept)
    assert fast_format(content_type) is not None
    assert body == reference(fams, accept)


def test_label_strings_kept_across_expositions_give_the_same_bytes() -> None:
    kept = LabelStrings()
    first = build([result("one"), result('t"wo\\')])
    second = build([result('t"wo\\'), result("three")])  # one target gone, one new
    for fams in (first, second, first):
        for accept in ACCEPTS:
            assert encode(fams, accept, kept)[0] == reference(fams, accept), accept
    # Only the last exposition's label sets are kept: the vanished target's are dropped.
    encode(second, "", kept)
    values = [v for sets in kept.last.values() for v in sets]
    assert values and all(v[0] != "one" for v in values)


@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS])
def test_fast_writer_parses_to_the_same_samples(fmt: str) -> None:
    fams = families()
    accept = "application/openmetrics-text; version=1.0.0" if fmt == OPENMETRICS else ""
    parse = parse_openmetrics if fmt == OPENMETRICS else parse_text
    mine = [(f.name, f.type, f.documentation, s.name, s.labels, s.value)
            for f in parse(render(fams, fmt)) for s in f.samples]
    theirs = [(f.name, f.type, f.documentation, s.name, s.labels, s.value)
              for f in parse(reference(fams, accept).decode()) for s in f.samples]
    assert mine == theirs
    labels = {v for *_, lab, _ in mine for v in lab.values()}
    assert set(NASTY) - {""} <= labels  # escaped on the way out, intact after parsing
    assert len(mine) > 100


def test_other_escaping_schemes_use_the_encoders() -> None:
    accept = "application/openmetrics-text; version=1.0.0; escaping=dots"
    fams = families()
    body, content_type, _ = encode(fams, accept)
    assert fast_format(content_type) is None
    assert body == reference(fams, accept)
    assert b"pg__up" in body  # what the dots scheme does to an underscore


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 5e-324, 1e-7, 123456.0, 1234567.0, 2.0**53,
                                   1e22, -3.5, math.inf, -math.inf, math.nan])
def test_numbers_as_go_prints_them(value: float) -> None:
    fam = [Family("pg_up", build([ScrapeResult("t", up=True)])[0].spec, [(("t",), value),
                                                                         (("u",), value)])]
    assert render(fam, TEXT).encode() == reference(fam, "")
    assert go_float(value) in render(fam, TEXT)


@pytest.mark.parametrize(("header", "ok"), [
    (None, False), ("", False), ("gzip", True), ("deflate, gzip;q=0.5", True),
    ("gzip;q=0", False), ("identity", False), ("*", True), ("br, GZIP", True),
])
def test_accepts_gzip(header: str | None, ok: bool) -> None:
    assert accepts_gzip(header) is ok


def test_gzip_is_made_once_and_decompresses_to_the_body() -> None:
    rendered = Rendered((), b"", render(families(), TEXT).encode(), "text/plain")
    first = rendered.gzipped()
    assert rendered.gzipped() is first
    assert gzip.decompress(first) == rendered.body


PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,"
                     "application/openmetrics-text;version=0.0.1;q=0.4,"
                     "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")


def compat_families() -> list[Family]:
    row = DatabaseRow(datid=5, datname="app", numbackends=2, blks_hit=10, blks_read=1,
                      xact_commit=7, xact_rollback=0, deadlocks=0, temp_bytes=0, conflicts=0,
                      tup_returned=3, tup_fetched=2, tup_inserted=1, tup_updated=0,
                      tup_deleted=0)
    locks = [DatabaseLocks("app", 0, {"accesssharelock": 2})]
    return build([ScrapeResult("t", up=True, data={"database": [row], "locks": locks})])


def test_openmetrics_leaves_out_untyped_names_that_clash_with_counter_families() -> None:
    text = render(compat_families(), OPENMETRICS)
    parsed = {f.name: f.type for f in parse_openmetrics(text)}
    assert parsed["pg_stat_database_xact_commit"] == "counter"  # ours, samples `_total`
    assert parsed["pg_stat_database_tup_fetched"] == "unknown"
    assert parsed["pg_locks_count"] == "unknown"
    plain = {f.name: f.type for f in parse_text(render(compat_families(), TEXT))}
    assert plain["pg_stat_database_xact_commit"] == "unknown"  # untyped, postgres_exporter's
    assert "pg_stat_database_xact_commit_total" in render(compat_families(), TEXT)


def test_compat_prefers_the_text_format_when_the_client_takes_it() -> None:
    assert negotiate(PROMETHEUS_ACCEPT, True) == TEXT_FORMAT
    assert negotiate(PROMETHEUS_ACCEPT, False) == PROMETHEUS_ACCEPT
    only = "application/openmetrics-text; version=1.0.0"
    assert negotiate(only, True) == only
    assert negotiate(None, True) == ""


def test_families_unchanged_since_the_last_exposition_are_not_rendered_again() -> None:
    kept = LabelStrings()
    first = families()
    assert encode(first, "", kept)[0] == reference(first, "")
    bodies = dict(kept.bodies[TEXT])
    second = families()  # equal samples, new objects: every family's lines are reused
    assert encode(second, "", kept)[0] == reference(second, "")
    assert all(kept.bodies[TEXT][name].text is body.text for name, body in bodies.items())
    # One statement's calls moved, one zero turned into -0.0 (equal, printed otherwise):
    # those two families are rendered again, the others are reused.
    third = families()
    calls = next(f for f in third if f.name == "pg_stat_statements_calls_total")
    calls.samples[0] = (calls.samples[0][0], calls.samples[0][1] + 1)
    plan = next(f for f in third if f.name == "pg_stat_statements_plan_seconds_total")
    assert plan.samples[0][1] == 0.0
    plan.samples[0] = (plan.samples[0][0], -0.0)
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        assert encode(third, accept, kept)[0] == reference(third, accept), accept
    again = {n for n, body in kept.bodies[TEXT].items() if body.text is not bodies[n].text}
    assert again == {"pg_stat_statements_calls_total", "pg_stat_statements_plan_seconds_total"}
    assert b'\npg_stat_statements_plan_seconds_total{' in encode(third, "", kept)[0]
    assert "} -0.0\n" in kept.bodies[TEXT]["pg_stat_statements_plan_seconds_total"].text


@pytest.mark.parametrize("values", [[1e6, -math.inf, math.nan, 0.0, -0.0, 5, 2**63, 999999.9],
                                    [], [math.inf] * 3])
def test_numbers_of_a_family_as_go_prints_each(values: list[float]) -> None:
    assert numbers([float(v) for v in values]) == [go_float(v) for v in values]


def test_a_statement_that_ran_writes_only_its_own_lines_again() -> None:
    memo = SampleMemo()
    rows = list(result("one").data["statements"].rows)

    def scrape() -> list[Family]:
        r = result("one")
        r.data["statements"] = dataclasses.replace(r.data["statements"], rows=tuple(rows),
                                                   memo=memo)
        return build([r])

    kept = LabelStrings()
    first = scrape()
    assert encode(first, "", kept)[0] == reference(first, "")
    before = dict(kept.bodies[TEXT])
    second = scrape()  # the same row objects: the same sample tuples, every family kept
    assert encode(second, "", kept)[0] == reference(second, "")
    calls = "pg_stat_statements_calls_total"
    assert kept.bodies[TEXT][calls].text is before[calls].text
    rows[2] = rows[2]._replace(calls=rows[2].calls + 1, exec_seconds=rows[2].exec_seconds * 2)
    third = scrape()
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        assert encode(third, accept, kept)[0] == reference(third, accept), accept
    for name in (calls, "pg_stat_statements_seconds_total", "pg_stat_statements_mean_seconds"):
        now, then = kept.bodies[TEXT][name], before[name]
        assert now is not then
        assert [i for i, (a, b) in enumerate(zip(now.lines, then.lines, strict=True))
                if a is not b] == [2]
    # A statement that did not move keeps its family's lines as they were.
    assert kept.bodies[TEXT]["pg_stat_statements_wal_bytes_total"].text is before[
        "pg_stat_statements_wal_bytes_total"].text
    # More than half of a family changed: it is written anew, still byte for byte.
    for i in range(len(rows)):
        rows[i] = rows[i]._replace(calls=rows[i].calls + 5)
    fourth = scrape()
    assert encode(fourth, "", kept)[0] == reference(fourth, "")
