"""The audit as a page (analyzer/page/): one real audit of the planted regression (an index
dropped between two snapshots, a statement with hostile text among those it slows down),
written by `pgarchitect report --html`, loaded in headless Chromium and read from the DOM."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from analyzer.page import svg
from analyzer.snapshots.source import StatementSource, connect_target
from analyzer.snapshots.take import take_snapshot
from analyzer.store.connection import connect_store
from pgarchitect.cli import main
from pgarchitect.config import AnalyzerSettings, ValidationSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer import planted
from tests.analyzer.browser import Node, parse, rendered_dom, screenshot
from tests.conftest import drop_database, new_database

HOSTILE = "</script><img src=x onerror=alert(1)>"
HOSTILE_SQL = f"SELECT /* {HOSTILE} */ amount FROM orders WHERE customer_id = %s"
SETTINGS = AnalyzerSettings(validation=ValidationSettings(mode="transaction"))
ORDERS = tuple(planted.ORDERS_STATEMENTS)


@dataclass(frozen=True)
class Audited:
    store: str
    audit_id: int
    report: dict[str, Any]
    snapshots: tuple[tuple[int, datetime], ...]  # the audit's windows, oldest first
    written: Path  # the page `audit --html` wrote


def _snapshot(app: str, store: str) -> int:
    with connect_target(Dsn(app), "target", SETTINGS) as tconn, \
            connect_store(Dsn(store)) as sconn:
        return take_snapshot(StatementSource(tconn), sconn, "app", SETTINGS.retention).snapshot.id


def _traffic(app: str, seed: int) -> None:
    planted.run(app, planted.Phase(rounds=12, statements=ORDERS, seed=seed))
    rng = random.Random(seed)
    with psycopg.connect(app, autocommit=True) as conn:
        for _ in range(24):
            conn.execute(HOSTILE_SQL.encode(), (rng.randint(1, planted.CUSTOMERS),)).fetchall()


@pytest.fixture(scope="module")
def audited(pg18: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """Snapshots s0..s3 with traffic between them, the index dropped between s2 and s3, then
    the audit (its own snapshot s4): baseline s0..s2, current s2..s4."""
    store = new_database(pg18, "store")
    app = new_database(pg18, "app", extensions=("pg_stat_statements",))
    try:
        migrate(Dsn(store))
        planted.create(app)
        ids = [_snapshot(app, store)]
        for seed in (1, 2):
            _traffic(app, seed)
            ids.append(_snapshot(app, store))
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute("DROP INDEX orders_customer_id_idx")
        _traffic(app, 3)
        ids.append(_snapshot(app, store))
        _traffic(app, 4)
        # `audit --html` writes the page of the audit it ran.
        written = tmp_path_factory.mktemp("audit") / "audit.html"
        assert main(["audit", "--target", f"app={app}", "--store", store, "--validation",
                     "transaction", "--baseline", f"{ids[0]}:{ids[2]}", "--current",
                     f"{ids[2]}:", "--html", str(written)]) == 0
        with psycopg.connect(store) as conn:
            audit_id, report, last = conn.execute(
                "SELECT id, report, snapshot_id FROM pgarchitect.audit_run").fetchone()
            snaps = conn.execute(
                "SELECT id, taken_at FROM pgarchitect.snapshot WHERE target = 'app'"
                " AND id BETWEEN %s AND %s ORDER BY taken_at", (ids[0], last)).fetchall()
        yield Audited(store, audit_id, report, tuple(snaps), written)
    finally:
        drop_database(pg18, app)
        drop_database(pg18, store)


@pytest.fixture(scope="module")
def page(audited: Audited, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page as `pgarchitect report AUDIT_ID --html FILE` writes it."""
    out = tmp_path_factory.mktemp("page") / "audit.html"
    assert main(["report", str(audited.audit_id), "--store", audited.store,
                 "--html", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def dom(page: Path, tmp_path_factory: pytest.TempPathFactory) -> Node:
    return rendered_dom(page, tmp_path_factory.mktemp("chromium"))


def _translate(node: Node) -> tuple[float, float]:
    m = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\)", node.attrs["transform"])
    assert m, node.attrs
    return float(m.group(1)), float(m.group(2))


def test_the_audit_found_the_planted_cluster(audited: Audited, page: Path) -> None:
    (cluster,) = audited.report["clusters"]
    assert cluster["cause"]["kind"] == "index_dropped"
    assert any(HOSTILE in r["query"] for r in audited.report["regressions"])
    assert len(audited.snapshots) == 5
    # `report --html` of the stored audit is the page `audit --html` wrote.
    assert page.read_text() == audited.written.read_text()


def test_each_cluster_chart_has_one_point_per_snapshot_and_the_cause_at_its_time(
        audited: Audited, dom: Node) -> None:
    times = [t for _, t in audited.snapshots]
    for cluster in audited.report["clusters"]:
        article = dom.find("article", "cluster", data_cluster=str(cluster["cluster_id"]))
        chart = article.find("svg", "chart")
        assert chart.find("title").text() and chart.find("desc").text()
        series = chart.find_all("g", "series")
        assert {s.attrs["data-series"] for s in series} == set(cluster["queryids"]) & {
            r["queryid"] for r in audited.report["regressions"]}
        for s in series:
            points = s.find_all("g", "point")
            # one per snapshot after the first: the calls since the snapshot before
            assert [int(p.attrs["data-snapshot"]) for p in points] == [
                i for i, _ in audited.snapshots[1:]]
            assert [datetime.fromisoformat(p.attrs["data-time"]) for p in points] == times[1:]
            xs = [_translate(p)[0] for p in points]
            assert xs == sorted(xs) and len(set(xs)) == len(xs)
        (marker,) = chart.find_all("g", "cause-marker")
        at = datetime.fromisoformat(cluster["cause"]["at"])
        assert datetime.fromisoformat(marker.attrs["data-time"]) == at
        # The index was dropped between the third and the fourth snapshot: the fourth's
        # catalog saw it gone, and the marker sits on the fourth snapshot's points.
        assert at == times[3]
        line = marker.find("line")
        assert line.attrs["x1"] == line.attrs["x2"]
        on_time = [p for s in series for p in s.find_all("g", "point")
                   if datetime.fromisoformat(p.attrs["data-time"]) == at]
        assert on_time and all(abs(_translate(p)[0] - float(line.attrs["x1"])) < 0.11
                               for p in on_time)
        assert "index dropped" in marker.text()


def test_hostile_statement_text_is_shown_escaped(dom: Node) -> None:
    assert dom.find_all("img") == [] and dom.find_all("script") == []
    shown = [n for n in dom.find_all("code", "statement") if HOSTILE in n.text()]
    assert len(shown) >= 2  # the cluster's legend and the workload table
    for node in dom.iter():
        assert not any(k.startswith("on") for k in node.attrs), node


def test_page_is_self_contained_and_every_chart_described(dom: Node, page: Path,
                                                          tmp_path: Path) -> None:
    for node in dom.iter():
        for attr in ("src", "href"):
            assert node.attrs.get(attr, "#").startswith("#"), node
    charts = dom.find_all("svg", "chart")
    assert {c.attrs["id"] for c in charts} >= {"cluster-0-chart", "workload-chart"}
    assert any(c.attrs["id"].startswith("rec-") for c in charts)
    for c in charts:
        assert c.find("title").text().strip() and c.find("desc").text().strip()
    sections = {n.attrs["id"] for n in dom.find_all("section")}
    assert sections == {"summary", "clusters", "recommendations", "verifications", "workload",
                        "not-proposed"}
    summary = dom.find("section", id="summary").text()
    assert "statements analysed" in summary and "clusters" in summary
    workload = dom.find("section", id="workload")
    assert re.search(r"\(\d+\.\d%\)", workload.text())
    assert workload.find_all("g", "bar-row")
    shot = screenshot(page, tmp_path / "profile", tmp_path / "audit.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_bad_ids_in_one_line(audited: Audited, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for bad, why in (("x1", "must be a number"), ("999999", "no audit 999999")):
        code = main(["report", bad, "--store", audited.store, "--html",
                     str(tmp_path / "a.html")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and why in err[0], err
    assert not (tmp_path / "a.html").exists()


def test_chart_text_is_escaped_and_valid_xml() -> None:
    import xml.etree.ElementTree as ET

    chart = svg.bar_chart("c", f"t {HOSTILE}", f"d \x00{HOSTILE}",
                          [svg.BarRow(HOSTILE, [svg.Bar(1.0, HOSTILE, hatched=True)])])
    assert HOSTILE not in chart
    root = ET.fromstring(chart)
    assert root.find("{http://www.w3.org/2000/svg}desc").text == f"d {HOSTILE}"


def test_signed_link_is_bound_to_token_audit_and_time() -> None:
    from urllib.parse import parse_qs, urlsplit

    from analyzer.page import link

    url = link.signed_url("http://h:1/", "tok", 42, ttl=600, now=1000.0)
    parts = urlsplit(url)
    assert parts.path == "/admin/database/audits/42"
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["expires"] == "1600" and "tok" not in url
    assert link.valid("tok", 42, q["expires"], q["signature"], now=1000.0)
    assert link.valid("tok", 42, q["expires"], q["signature"], now=1600.0)
    assert not link.valid("tok", 42, q["expires"], q["signature"], now=1600.5)  # expired
    assert not link.valid("tok2", 42, q["expires"], q["signature"], now=1000.0)
    assert not link.valid("tok", 43, q["expires"], q["signature"], now=1000.0)
    assert not link.valid("tok", 42, "1601", q["signature"], now=1000.0)
    assert not link.valid("tok", 42, q["expires"], q["signature"][:-1], now=1000.0)
    assert not link.valid("tok", 42, "-1", q["signature"], now=1000.0)
    assert not link.valid("tok", 42, q["expires"], "é" * 64, now=1000.0)
    far = str(int(1000 + link.MAX_TTL + 10))  # signed, but longer than any link may last
    assert not link.valid("tok", 42, far, link.signature("tok", 42, int(far)), now=1000.0)
    with pytest.raises(ValueError):
        link.signed_url("http://h", "tok", 1, ttl=link.MAX_TTL + 1)


def test_report_needs_html_or_link(audited: Audited, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(audited.audit_id), "--store", audited.store]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--html FILE, --link" in err[0]


def test_a_browser_gets_html_and_a_client_json() -> None:
    from analyzer.api.page import wants_html

    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert wants_html(browser) and wants_html("text/html")
    for accept in ("", "*/*", "application/json", "application/json, text/html;q=0.5",
                   "text/html;q=0", "text/html;q=x"):
        assert not wants_html(accept), accept


def test_fields_present_only_in_newer_reports_are_shown() -> None:
    """benefit_ms_per_day, ms per day before -> after, evidence_kind, workload and a
    verification: rendered when the report has them (pure: no store, no browser)."""
    from analyzer.page import render_page
    from analyzer.page.data import PageData, TopStatement

    report = {
        "audit_id": "9", "target": "t", "windows": {"mode": "no_baseline", "baseline": None,
                                                    "current": None, "note": "n"},
        "regressions": [], "clusters": [], "not_proposed": [],
        "recommendations": [{"id": "3", "kind": "create_index", "table": "public.a",
                             "columns": ["b"], "status": "proposed", "benefit_ms_per_day": 1234.5,
                             "ms_per_day_before": 2000.0, "ms_per_day_after": 765.5,
                             "evidence_kind": "measured_history", "queryids": ["1"],
                             "ddl": "CREATE INDEX CONCURRENTLY a_b_idx ON public.a (b)",
                             "revert_ddl": "DROP INDEX CONCURRENTLY public.a_b_idx",
                             "validated_by": "hypopg", "confidence": 0.9,
                             "similar_past": [{"id": "1", "similarity": 0.93,
                                               "status": "rejected"}]}],
        "verifications": [{"id": "2", "status": "verified", "before_mean_ms": 14.2,
                           "after_mean_ms": 0.05, "ratio": 0.0035, "p_value": 1e-30,
                           "calls_before": 800, "calls_after": 240, "note": HOSTILE}],
        "workload": {"ms_per_day_before": 5000.0, "ms_per_day_after": 3765.5},
    }
    long = "SELECT " + ", ".join(f"c{i}" for i in range(300)) + " FROM wide"
    top = (TopStatement("1", HOSTILE_SQL, 10, 300.0, ("3",)),
           TopStatement("5", long, 10, 100.0, ()))
    text = render_page(PageData(report, (), {}, top, 400.0, 300.0))
    dom = parse(text)
    rec = dom.find("article", "recommendation").text()
    assert "1,234.5 ms per day saved" in rec and "measured_history" in rec
    assert "2,000.0 ms before → 765.5 ms after" in rec
    assert "2,000.0 ms/day before" in dom.find("svg", id="rec-3-chart").text()
    assert "rejected" in rec and "DROP INDEX CONCURRENTLY public.a_b_idx" in rec
    workload = dom.find("section", id="workload").text()
    assert "(75.0%)" in workload and "5,000.0 ms per day before → 3,765.5 ms after" in workload
    rows = dom.find("svg", id="workload-chart").find_all("g", "bar-row")
    assert [r.attrs["data-queryid"] for r in rows] == ["1", "5"]
    verified = dom.find("svg", id="verifications-chart")
    assert "14.200 ms before" in verified.text() and "0.050 ms after" in verified.text()
    assert HOSTILE in dom.find("section", id="verifications").text()
    assert dom.find_all("img") == [] and HOSTILE not in text
    (folded,) = dom.find_all("details")  # the long statement: its start, then all of it
    assert folded.find("summary").text().startswith("SELECT c0, c1")
    assert long in [c.text() for c in folded.find_all("code", "statement")]


def test_a_long_history_is_thinned_to_runs_with_exact_means() -> None:
    from datetime import UTC, timedelta

    from analyzer.analysis.delta import moments_of
    from analyzer.page.data import thin
    from analyzer.snapshots.model import SnapshotMeta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steps = [(SnapshotMeta(i + 2, t0 + timedelta(minutes=5 * (i + 1))),
              moments_of(10, 10.0 * (1 + i % 2), 0.0) if i != 7 else moments_of(0, 0, 0))
             for i in range(1000)]
    assert len(thin(steps, 2000)) == 999  # one per step but the one without calls
    points = thin(steps, 400)
    assert len(points) == 334 and points[-1].snapshot_id == 1001  # runs of 3, the last of 1
    first = points[0]  # steps 0, 1, 2: 30 calls, 10 + 20 + 10 ms
    assert (first.snapshot_id, first.steps, first.calls) == (4, 3, 30)
    assert first.mean_ms == pytest.approx(40.0 / 30)
    assert points[2].calls == 20  # the run with the step without calls
