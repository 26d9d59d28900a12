"""The service's pure parts: cron in a time zone, the lifecycle table, notification retries."""

from __future__ import annotations

from datetime import UTC, datetime

from analyzer import notify
from analyzer.api.status import allowed
from analyzer.jobs import next_run
from pgarchitect.demo.processes import free_port


def test_next_run_is_in_the_configured_time_zone() -> None:
    after = datetime(2026, 3, 21, 12, 0, tzinfo=UTC)  # a Saturday; Paris is UTC+1
    assert next_run("0 2 * * 0", "Europe/Paris", after) == datetime(2026, 3, 22, 1, 0,
                                                                     tzinfo=UTC)
    # 2026-03-29 02:00 does not exist in Paris (clocks jump to 03:00): it runs at 03:00.
    assert next_run("0 2 * * 0", "Europe/Paris", datetime(2026, 3, 28, tzinfo=UTC)) == \
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # The week after, Paris is on summer time (UTC+2).
    assert next_run("0 2 * * 0", "Europe/Paris", datetime(2026, 3, 30, tzinfo=UTC)) == \
        datetime(2026, 4, 5, 0, 0, tzinfo=UTC)
    assert next_run("0 2 * * 0", "UTC", datetime(2026, 4, 5, 2, 0, tzinfo=UTC)) == \
        datetime(2026, 4, 12, 2, 0, tzinfo=UTC)  # strictly after


def test_lifecycle_transitions() -> None:
    assert allowed("proposed", "accepted") and allowed("accepted", "applied")
    assert allowed("applied", "reverted") and allowed("ineffective", "reverted")
    assert not allowed("accepted", "rejected") and not allowed("rejected", "accepted")
    assert not allowed("reverted", "applied") and not allowed("nonsense", "applied")


def test_unreachable_alertmanager_is_retried_and_reported() -> None:
    port = free_port()  # free, so it refuses connections
    alert = notify.alert("PgarchitectAuditRunFailed", "app", "warning", "audit_failed",
                         "audit of app failed", "http://x/admin/database/audits/1")
    delivered, failed = notify.push(f"http://127.0.0.1:{port}", [alert])
    assert not delivered and failed == notify.ATTEMPTS
