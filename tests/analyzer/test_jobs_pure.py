"""The service's pure parts: its scheduled audits in a time zone (across DST changes), the
lifecycle table, notification retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from analyzer import notify
from analyzer.api.status import allowed
from analyzer.jobs import JobMetrics, Service, next_scheduled_audit, next_snapshot
from pgarchitect.config import AnalyzerSettings, load_settings
from pgarchitect.demo.processes import free_port


def chain(schedule: str, timezone: str, after: datetime, n: int) -> list[str]:
    """The service's scheduled audits, each deferred from the one before as the audit job
    does it: `scheduled_for` is the previous run's UTC time in ISO form."""
    settings = AnalyzerSettings(schedule=schedule, timezone=timezone)
    out = []
    for _ in range(n):
        at = next_scheduled_audit(settings, after)
        assert at.tzinfo is UTC
        out.append(at.astimezone(ZoneInfo(timezone)).isoformat())
        after = datetime.fromisoformat(at.isoformat())
    return out


def test_scheduled_audits_are_in_the_configured_time_zone() -> None:
    after = datetime(2026, 3, 21, 12, 0, tzinfo=UTC)  # a Saturday; Paris is UTC+1
    assert next_scheduled_audit(AnalyzerSettings(schedule="0 2 * * 0", timezone="Europe/Paris"),
                                after) == datetime(2026, 3, 22, 1, 0, tzinfo=UTC)
    assert next_scheduled_audit(AnalyzerSettings(schedule="0 2 * * 0", timezone="UTC"),
                                datetime(2026, 4, 5, 2, 0, tzinfo=UTC)) == \
        datetime(2026, 4, 12, 2, 0, tzinfo=UTC)  # strictly after


def test_the_skipped_hour_runs_when_the_clock_jumps() -> None:
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST; a daily 02:30 runs at 03:00.
    assert chain("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 3) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]


def test_the_repeated_hour_runs_once() -> None:
    # 2026-10-25 in Paris: 03:00 CEST goes back to 02:00 CET; a daily 02:30 runs once, the
    # first time, and the chain does not run it again an hour later.
    assert chain("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 3) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]
    # An every-half-hour schedule runs in both hours: they are two different hours.
    assert chain("*/30 * * * *", "Europe/Paris", datetime(2026, 10, 24, 23, 45, tzinfo=UTC),
                 4) == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
                        "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]


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


def test_a_snapshot_chain_keeps_its_cadence_however_late_a_job_starts() -> None:
    at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    second = timedelta(seconds=1)
    # Picked up 0.3 s late: the successor is still one interval after the scheduled time.
    assert next_snapshot(at, at + 0.3 * second, 300) == at + 300 * second
    assert next_snapshot(at, at, 2.0) == at + 2 * second
    # Later than an interval (a worker was away): the next slot still ahead, none queued up.
    assert next_snapshot(at, at + 650 * second, 300) == at + 900 * second
    assert next_snapshot(at, at + 600 * second, 300) == at + 900 * second
    # A job without a scheduled time (deferred to run at once): from now.
    assert next_snapshot(None, at, 300) == at + 300 * second
    # Never in the past, never more than one interval ahead.
    for late in (0.0, 1.5, 299.9, 300.0, 301.0, 10_000.0):
        now = at + late * second
        nxt = next_snapshot(at, now, 300)
        assert now < nxt <= now + 300 * second


def test_the_kept_snapshot_states_follow_their_setting() -> None:
    """analyzer.snapshot_cache_bytes bounds the service's kept states; 0 keeps none."""
    for size in (0, 1 << 20):
        settings = load_settings(flags={"analyzer": {"snapshot_cache_bytes": size}})
        service = Service(settings, JobMetrics(CollectorRegistry()), public_url="")
        assert service.states.max_bytes == size
    assert Service(load_settings(), JobMetrics(CollectorRegistry()),
                   public_url="").states.max_bytes == (
        256 * 2**20)
