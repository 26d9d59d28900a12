"""`pgarchitect analyzer` as a service, black box: real processes, a real store and targets,
a real Alertmanager with a webhook receiver."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
import schemathesis
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from analyzer import jobs, notify
from analyzer.audit import AuditResult
from pgarchitect.cli import main
from pgarchitect.config import load_settings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer.service import TOKEN, Analyzer, analyzer, firing, rows, sample, store_gone
from tests.conftest import drop_database, new_database
from tests.monitoring.stack import (
    Prometheus,
    WebhookSink,
    alertmanager,
    alertmanager_config_for_test,
    free_port,
    prometheus,
    rules_without_for,
    wait_for,
    webhook_sink,
)
from tests.waiting import eventually


@dataclass
class Stack:
    store: str
    target: str
    service: Analyzer
    sink: WebhookSink
    tmp: Path
    prom: Prometheus
    alertmanager_url: str


@pytest.fixture(scope="module")
def stack(pg18: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One service over a migrated store: a live target `app` and a `down` one that never
    answers, notifying a real Alertmanager."""
    tmp = tmp_path_factory.mktemp("service")
    store = new_database(pg18, "store")
    target = new_database(pg18, "app", extensions=("pg_stat_statements",))
    migrate(Dsn(store))
    down = f"postgresql://nobody:s3cr3t-pw@127.0.0.1:{free_port()}/nothing"
    try:
        with webhook_sink() as sink, \
                alertmanager(tmp, alertmanager_config_for_test(sink.url)) as am, \
                analyzer(tmp, "service", store, {"app": target, "down": down},
                         alertmanager_url=am.url, connection_idle_timeout="10m") as service:
            rule_dir = tmp / "rules"
            rule_dir.mkdir()
            with prometheus(tmp, {"pgarchitect-analyzer": [service.url.split("//")[1]]},
                            rule_files=rules_without_for(rule_dir)) as prom:
                yield Stack(store, target, service, sink, tmp, prom, am.url)
    finally:
        drop_database(pg18, store)
        drop_database(pg18, target)


def test_admin_api_refused_off_loopback_without_token(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"  # a regular file (os.devnull is refused as a config)
    empty.write_text("")
    code = main(["analyzer", "--listen", "0.0.0.0:9999", "--config", str(empty)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "analyzer.admin_token" in err[0] and "0.0.0.0:9999" in err[0]


def test_token_required_and_compared(stack: Stack) -> None:
    s = stack.service
    for token in (None, "wrong", TOKEN + "x"):
        status, body = s.request("GET", "/admin/database/audits", token=token)
        assert status == 401 and "token" in body["error"]
    assert s.request("GET", "/admin/database/audits")[0] == 200
    status, doc = s.request("GET", "/admin/openapi.json", token=None)  # documentation is public
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/admin/database/run-audit" in doc["paths"]


def test_metrics_exported_from_the_start(stack: Stack) -> None:
    m = stack.service.metrics()
    for status in ("success", "failed"):
        assert sample(m, "pgarchitect_audit_runs_total", status=status) is not None
    assert sample(m, "pgarchitect_regressions", target="app") is not None
    assert sample(m, "pgarchitect_regression_clusters", target="down") is not None
    assert sample(m, "pgarchitect_store_up") == 1.0
    assert "pgarchitect_audit_duration_seconds_count" in m
    assert "pgarchitect_snapshot_duration_seconds_count" in m


def test_snapshots_every_interval_and_a_down_target_is_recorded(stack: Stack) -> None:
    def snapshots() -> int:
        return int(rows(stack.store, "SELECT count(*) FROM pgarchitect.snapshot"
                        " WHERE target = 'app'")[0][0])

    first = snapshots()
    eventually(lambda: snapshots() >= first + 3, "three more snapshots of app")

    def failed_snapshots() -> float:
        return sample(stack.service.metrics(), "pgarchitect_snapshot_runs_total",
                      target="down", status="failed") or 0.0

    # The down target's snapshot jobs fail, and the chain keeps trying on every interval.
    eventually(lambda: failed_snapshots() >= 2, "two failed snapshots of the down target")
    assert rows(stack.store, "SELECT count(*) FROM pgarchitect.snapshot"
                " WHERE target = 'down'")[0][0] == 0


def test_snapshot_jobs_keep_their_target_session(stack: Stack) -> None:
    """The service's snapshot jobs reuse one session on the target (analyzer/connections.py)."""
    def snapshots() -> int:
        return int(rows(stack.store, "SELECT count(*) FROM pgarchitect.snapshot"
                        " WHERE target = 'app'")[0][0])

    def analyzer_sessions() -> list[int]:  # an audit's session may come and go meanwhile
        return [int(r[0]) for r in rows(stack.target, "SELECT pid FROM pg_stat_activity"
                                        " WHERE datname = current_database()"
                                        " AND application_name = 'pgarchitect-analyzer'")]

    (pid,) = eventually(lambda: analyzer_sessions() if len(analyzer_sessions()) == 1 else None,
                        "one analyzer session on the target")
    first = snapshots()
    eventually(lambda: snapshots() >= first + 2, "two more snapshots of app")
    assert pid in analyzer_sessions()


def test_requested_audit_runs_and_its_report_is_served(stack: Stack) -> None:
    s = stack.service
    before = sample(s.metrics(), "pgarchitect_audit_runs_total", status="success") or 0.0
    status, body = s.request("POST", "/admin/database/run-audit", {"target": "app"})
    assert status == 202 and body["status"] == "queued"
    audit_id = body["audit_id"]

    def done() -> bool:
        code, audit = s.request("GET", f"/admin/database/audits/{audit_id}")
        return code == 200 and audit.get("audit_id") == audit_id and "windows" in audit

    eventually(done, f"audit {audit_id} to succeed")
    _, report = s.request("GET", f"/admin/database/audits/{audit_id}")
    assert report["target"] == "app" and isinstance(report["regressions"], list)
    _, listed = s.request("GET", "/admin/database/audits?target=app&status=succeeded")
    assert audit_id in [a["audit_id"] for a in listed]
    m = s.metrics()
    assert sample(m, "pgarchitect_audit_runs_total", status="success") == before + 1
    last = sample(m, "pgarchitect_audit_last_success_timestamp_seconds")
    assert last is not None and last > 0


def test_failed_audit_is_recorded_and_notified_through_alertmanager(stack: Stack) -> None:
    s = stack.service
    # Prometheus has seen the failed counter at 0 (exported from the start), so the alert can
    # see the increase.
    wait_for("Prometheus to scrape the failed counter at 0", lambda: stack.prom.query(
        'pgarchitect_audit_runs_total{status="failed"} == 0'), timeout=60)
    status, body = s.request("POST", "/admin/database/run-audit", {"target": "down"})
    assert status == 202

    def failed() -> bool:
        code, audit = s.request("GET", f"/admin/database/audits/{body['audit_id']}")
        return code == 200 and audit["status"] == "failed"

    eventually(failed, "the audit of the down target to fail")
    _, audit = s.request("GET", f"/admin/database/audits/{body['audit_id']}")
    assert "down" in audit["error"] and "s3cr3t-pw" not in audit["error"]

    def notified() -> list[dict[str, object]]:
        return [a for n in stack.sink.notifications() for a in n.body.get("alerts", [])
                if a["labels"].get("alertname") == "PgarchitectAuditRunFailed"]

    eventually(lambda: bool(notified()), "the failure notification at the webhook")
    alert = notified()[0]
    assert alert["labels"]["target"] == "down"  # type: ignore[index]
    assert alert["labels"]["severity"] == "warning"  # type: ignore[index]
    assert alert["labels"]["kind"] == "audit_failed"  # type: ignore[index]
    assert f"/admin/database/audits/{body['audit_id']}" in str(alert["annotations"])
    m = s.metrics()
    assert (sample(m, "pgarchitect_audit_runs_total", status="failed") or 0) >= 1
    assert (sample(m, "pgarchitect_notifications_total", kind="audit_failed",
                   result="sent") or 0) >= 1
    # The repository's alert rule fires on the real service's counter.
    wait_for("PgarchitectAuditFailed firing in Prometheus",
             lambda: firing(stack.prom, "PgarchitectAuditFailed"), timeout=60,
             on_timeout=lambda: str(stack.prom.alerts()))


def test_bad_requests_are_json_4xx(stack: Stack) -> None:
    s = stack.service
    cases = [
        ("POST", "/admin/database/run-audit", {"target": "nope"}, None, 404),
        ("POST", "/admin/database/run-audit", {}, None, 422),  # two targets: name one
        ("POST", "/admin/database/run-audit", {"target": 3}, None, 422),
        ("POST", "/admin/database/run-audit", {"target": "app", "x": 1}, None, 422),
        ("POST", "/admin/database/run-audit", None, b"{not json", 400),
        ("GET", "/admin/database/audits?limit=0", None, None, 422),
        ("GET", "/admin/database/recommendations?limit=%C2%B9", None, None, 422),  # "¹"
        ("GET", "/admin/database/audits/%C2%B2", None, None, 404),  # "²": isdigit, not int
        ("GET", "/admin/database/audits?status=bogus", None, None, 422),
        ("GET", "/admin/database/audits/99999999", None, None, 404),
        ("GET", "/admin/database/audits/abc", None, None, 404),
        ("GET", "/admin/database/recommendations/12", None, None, 404),
        ("POST", "/admin/database/recommendations/12/status", {"status": "maybe"}, None, 422),
        ("DELETE", "/admin/database/audits", None, None, 405),
        ("GET", "/admin/nothing", None, None, 404),
    ]
    for method, path, body, raw, expected in cases:
        status, answer = s.request(method, path, body, raw=raw)
        assert status == expected, (method, path, status, answer)
        assert isinstance(answer, dict) and answer["error"], (method, path, answer)


def test_recommendation_status_follows_the_lifecycle(stack: Stack) -> None:
    (rec_id,) = rows(stack.store, (
        "INSERT INTO pgarchitect.optimization_log (kind, target, table_name, columns, ddl,"
        " rationale, confidence) VALUES ('create_index', 'app', 'public.t', '{a}',"
        " 'CREATE INDEX CONCURRENTLY ON public.t (a)', 'test', 0.9) RETURNING id"))[0]
    s = stack.service
    status, rec = s.request("GET", f"/admin/database/recommendations/{rec_id}")
    assert status == 200 and rec["status"] == "proposed" and rec["id"] == str(rec_id)
    assert "embedding" not in rec and rec["history"] == []
    status, rec = s.request("POST", f"/admin/database/recommendations/{rec_id}/status",
                            {"status": "accepted", "note": "looks right"})
    assert status == 200 and rec["status"] == "accepted"
    status, err = s.request("POST", f"/admin/database/recommendations/{rec_id}/status",
                            {"status": "rejected"})
    assert status == 409 and "accepted to rejected" in err["error"]
    _, listed = s.request("GET", "/admin/database/recommendations?status=accepted&target=app")
    assert [r["id"] for r in listed] == [str(rec_id)]
    m = s.metrics()
    assert sample(m, "pgarchitect_recommendations", target="app", kind="create_index",
                  status="accepted") == 1


def test_sigterm_stops_cleanly(pg18: PgServer, tmp_path: Path) -> None:
    store = new_database(pg18, "store")
    try:
        migrate(Dsn(store))
        with analyzer(tmp_path, "term", store, {"gone": "postgresql://x@127.0.0.1:1/x"}) as s:
            popen = s.process.popen
            assert popen is not None
            popen.send_signal(signal.SIGTERM)
            assert popen.wait(timeout=60) == 143
        assert "service.stopped" in s.log() and "Traceback" not in s.log()
        # The worker unregistered itself: nothing of it is left running in the queue.
        assert rows(store, "SELECT count(*) FROM procrastinate_workers")[0][0] == 0
        assert rows(store, "SELECT count(*) FROM procrastinate_jobs"
                    " WHERE status = 'doing'")[0][0] == 0
    finally:
        drop_database(pg18, store)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_fuzzed_against_its_openapi_document(stack: Stack, mode: GenerationMode) -> None:
    """No generated request (valid or not) gets a 5xx, an undocumented status or an answer
    off its schema; the document is the one the running service serves."""
    schema = schemathesis.openapi.from_url(stack.service.url + "/admin/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9  # 6 + the ask routes (ask, questions, promote)
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=25, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks)

        call()


def test_store_outage_keeps_the_process_and_recovers(pg18: PgServer, tmp_path: Path) -> None:
    """The store stops under a running service and comes back on the same port."""
    target = new_database(pg18, "app", extensions=("pg_stat_statements",))
    try:
        with store_gone(tmp_path, "outage", {"app": target}) as gone:
            s, store = gone.service, gone.store
            status, body = s.request("GET", "/admin/database/audits")
            assert status == 503 and body["error"] == "the store is unavailable"
            assert s.request("POST", "/admin/database/run-audit", {})[0] == 503
            assert s.request("GET", "/healthz")[0] == 200
            assert sample(s.metrics(), "pgarchitect_store_up") == 0.0
            assert s.process.alive()
            with gone.restart_store():
                eventually(lambda: s.request("GET", "/readyz")[0] == 200, "recovery by itself")
                before = rows(store, "SELECT count(*) FROM pgarchitect.snapshot")[0][0]
                eventually(lambda: rows(store, "SELECT count(*) FROM pgarchitect.snapshot")[0][0]
                           > before, "snapshots to resume")
                status, body = s.request("POST", "/admin/database/run-audit", {})
                assert status == 202

                def done() -> bool:
                    code, audit = s.request("GET", f"/admin/database/audits/{body['audit_id']}")
                    return code == 200 and "windows" in audit

                eventually(done, "an audit after the outage")
                assert sample(s.metrics(), "pgarchitect_store_up") == 1.0
            assert "Traceback" not in s.log()
    finally:
        drop_database(pg18, target)


def test_new_proposals_notified_with_a_link(stack: Stack) -> None:
    """A proposal at or above min_confidence reaches the webhook through Alertmanager; one
    below it does not."""
    settings = load_settings(flags={"analyzer": {"alertmanager_url": stack.alertmanager_url,
                                                 "min_confidence": 0.8}})
    service = jobs.Service(settings, jobs.JobMetrics(CollectorRegistry()),
                           public_url="http://analyzer.example:9189")
    now = datetime.now(UTC)
    recs = ({"id": "77", "kind": "create_index", "status": "proposed", "confidence": 0.93,
             "table": "public.orders", "rationale": "orders_by_customer scans orders"},
            {"id": "78", "kind": "create_index", "status": "proposed", "confidence": 0.5,
             "table": "public.events", "rationale": "weak"})
    result = AuditResult(audit_id=1, target="app", status="succeeded", server_version="18",
                         started_at=now, finished_at=now, duration_seconds=0.1, snapshot_id=1,
                         snapshot_duration_seconds=0.0, statements_analyzed=1, regressions=(),
                         clusters=(), recommendations=recs)
    notify.new_proposals(service, result)

    def proposed() -> list[dict[str, object]]:
        return [a for n in stack.sink.notifications() for a in n.body.get("alerts", [])
                if a["labels"].get("alertname") == "PgarchitectRecommendationProposed"]

    eventually(lambda: bool(proposed()), "the proposal notification at the webhook")
    (alert,) = proposed()
    assert alert["labels"] == {"alertname": "PgarchitectRecommendationProposed",  # type: ignore
                               "target": "app", "severity": "info", "kind": "create_index"}
    assert alert["annotations"]["link"] == (  # type: ignore[index]
        "http://analyzer.example:9189/admin/database/recommendations/77")
    assert service.metrics.notifications.labels("recommendation", "sent")._value.get() == 1


def test_service_audit_proposes_and_pushes_the_new_proposals(stack: Stack) -> None:
    """The service's audits use the real recommender: a redundant index is proposed for
    dropping, stored, and its proposal pushed through Alertmanager with its link."""
    with psycopg.connect(stack.target, autocommit=True) as conn:
        conn.execute("CREATE TABLE skus (sku text NOT NULL, warehouse int NOT NULL)")
        conn.execute("CREATE INDEX skus_sku_warehouse_idx ON skus (sku, warehouse)")
        conn.execute("CREATE INDEX skus_sku_idx ON skus (sku)")
    s = stack.service
    status, body = s.request("POST", "/admin/database/run-audit", {"target": "app"})
    assert status == 202
    audit_id = body["audit_id"]

    def done() -> bool:
        code, audit = s.request("GET", f"/admin/database/audits/{audit_id}")
        return code == 200 and audit.get("status", "succeeded") == "succeeded" \
            and "recommendations" in audit

    eventually(done, f"audit {audit_id} to succeed")
    _, report = s.request("GET", f"/admin/database/audits/{audit_id}")
    (rec,) = [r for r in report["recommendations"] if r["kind"] == "drop_index"]
    assert rec["evidence"]["index"] == "public.skus_sku_idx" and rec["status"] == "proposed"
    assert rows(stack.store, "SELECT status FROM pgarchitect.optimization_log WHERE id = %s",
                int(rec["id"])) == [("proposed",)]

    def pushed() -> list[dict[str, Any]]:
        return [a for n in stack.sink.notifications() for a in n.body.get("alerts", [])
                if a["labels"].get("alertname") == "PgarchitectRecommendationProposed"
                and a["labels"].get("kind") == "drop_index"]

    eventually(lambda: bool(pushed()), "the new proposal at the webhook")
    assert pushed()[0]["annotations"]["link"].endswith(
        f"/admin/database/recommendations/{rec['id']}")


def test_audit_page_served_only_with_the_token(stack: Stack,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import urllib.error
    import urllib.request

    s = stack.service
    status, body = s.request("POST", "/admin/database/run-audit", {"target": "app"})
    assert status in (202, 409), body

    def succeeded() -> list[Any]:
        return s.request("GET", "/admin/database/audits?target=app&status=succeeded")[1]

    eventually(lambda: bool(succeeded()), "an audit of app to succeed")
    audit_id = succeeded()[0]["audit_id"]

    def get(path: str, token: str | None) -> tuple[int, str, str, str]:
        req = urllib.request.Request(s.url + path, headers={
            "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return (resp.status, resp.headers.get("Content-Type", ""),
                        resp.headers.get("Content-Security-Policy", ""), resp.read().decode())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), "", exc.read().decode()

    for token in (None, "wrong"):
        status, ctype, _, text = get(f"/admin/database/audits/{audit_id}", token)
        assert status == 401 and ctype.startswith("application/json") and "<" not in text
    status, ctype, csp, text = get(f"/admin/database/audits/{audit_id}", TOKEN)
    assert status == 200 and ctype.startswith("text/html"), text
    assert "default-src 'none'" in csp
    assert text.startswith("<!DOCTYPE html>")
    assert f"<title>pgarchitect audit {audit_id} of app</title>" in text
    status, ctype, _, text = get("/admin/database/audits/99999999", TOKEN)
    assert status == 404 and ctype.startswith("application/json") and "no audit" in text
    # Without Accept: text/html the same route answers the JSON report.
    status, report = s.request("GET", f"/admin/database/audits/{audit_id}")
    assert status == 200 and report["audit_id"] == audit_id
    # A browser opens the page with the signed link `report --link` prints, and with nothing
    # else: the link opens that page only, until it expires.
    import time

    from analyzer.page.link import signed_url

    code = main(["report", audit_id, "--link", "--expires", "5m", "--config",
                 str(stack.tmp / "service.yml")])
    assert code == 0
    (url,) = capsys.readouterr().out.split()
    path = url.removeprefix(s.url)
    assert path.startswith(f"/admin/database/audits/{audit_id}?expires=")
    status, ctype, csp, text = get(path, None)
    assert status == 200 and ctype.startswith("text/html") and "default-src 'none'" in csp
    forged = path[:-4] + ("0000" if not path.endswith("0000") else "1111")
    other = path.replace(f"/audits/{audit_id}?", "/audits/99999999?")
    listing = "/admin/database/audits?" + path.partition("?")[2]
    expired = signed_url(s.url, TOKEN, int(audit_id), 10, now=time.time() - 60).removeprefix(
        s.url)
    for bad in (forged, other, listing, expired):
        assert get(bad, None)[0] == 401, bad
