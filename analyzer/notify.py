"""Alerts pushed to Alertmanager's v2 API: new proposals and failed audits.

An unreachable Alertmanager is retried a few times and counted; it never fails an audit.
Labels: ``alertname``, ``target``, ``severity``, ``kind``; the annotations carry a summary
and the link to the recommendation (or audit) in the admin API.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pgarchitect.log import event

if TYPE_CHECKING:
    from analyzer.audit import AuditResult
    from analyzer.jobs import Service

log = logging.getLogger("pgarchitect.analyzer.notify")

RUNBOOKS = "https://github.com/pgarchitect/pgarchitect/blob/main/docs/runbooks/"
# The pushed alerts share the runbooks of the rules that watch the same thing.
RUNBOOK = {"PgarchitectRecommendationProposed": "PgarchitectRecommendationWaiting.md",
           "PgarchitectAuditRunFailed": "PgarchitectAuditFailed.md"}
ATTEMPTS = 3
BACKOFF = 0.5  # seconds, doubled after each failed attempt
TIMEOUT = 5.0


def alert(alertname: str, target: str, severity: str, kind: str, summary: str,
          link: str, description: str = "") -> dict[str, Any]:
    """One alert in Alertmanager's v2 format."""
    return {
        "labels": {"alertname": alertname, "target": target, "severity": severity,
                   "kind": kind},
        "annotations": {"summary": summary, "description": description or summary,
                        "link": link,
                        "runbook_url": RUNBOOKS + RUNBOOK.get(alertname, "README.md")},
        "generatorURL": link,
        "startsAt": datetime.now(UTC).isoformat(),
    }


def push(url: str, alerts: Sequence[Mapping[str, Any]]) -> tuple[bool, int]:
    """POST `alerts` to Alertmanager at `url`; returns (delivered, failed attempts)."""
    body = json.dumps(list(alerts)).encode()
    endpoint = url.rstrip("/") + "/api/v2/alerts"
    failed = 0
    delay = BACKOFF
    for attempt in range(ATTEMPTS):
        request = urllib.request.Request(endpoint, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                if 200 <= response.status < 300:
                    return True, failed
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failed += 1
            log.warning(event("notify.attempt_failed", attempt=attempt + 1,
                              error=str(getattr(exc, "reason", exc))))
        if attempt + 1 < ATTEMPTS:
            time.sleep(delay)
            delay *= 2
    return False, failed


def _send(service: Service, kind: str, alerts: Sequence[Mapping[str, Any]]) -> None:
    url = service.settings.analyzer.alertmanager_url
    if not url or not alerts:
        return
    delivered, failed = push(url, alerts)
    metrics = service.metrics
    if failed:
        metrics.notification_attempts_failed.inc(failed)
    metrics.notifications.labels(kind, "sent" if delivered else "failed").inc(len(alerts))
    if not delivered:
        log.error(event("notify.gave_up", kind=kind, alerts=len(alerts), attempts=ATTEMPTS))


def new_proposals(service: Service, result: AuditResult) -> None:
    """Alert on the audit's new proposals at or above the confidence threshold (a repeat
    merged into a pending one was alerted on when it was new)."""
    threshold = service.settings.analyzer.min_confidence
    alerts = []
    for rec in result.recommendations:
        if rec.get("status", "proposed") != "proposed" or rec.get("merged"):
            continue
        if float(rec.get("confidence") or 0.0) < threshold:
            continue
        link = f"{service.public_url}/admin/database/recommendations/{rec.get('id')}"
        table = rec.get("table") or ""
        alerts.append(alert(
            "PgarchitectRecommendationProposed", result.target, "info",
            str(rec.get("kind") or "unknown"),
            f"{rec.get('kind')} proposed for {table} on {result.target}".strip(), link,
            str(rec.get("rationale") or "")))
    _send(service, "recommendation", alerts)


def audit_failed(service: Service, target: str, audit_id: int | None, reason: str) -> None:
    """Alert that an audit of `target` failed."""
    link = f"{service.public_url}/admin/database/audits"
    if audit_id is not None:
        link += f"/{audit_id}"
    _send(service, "audit_failed", [alert(
        "PgarchitectAuditRunFailed", target, "warning", "audit_failed",
        f"audit of {target} failed", link, reason)])
