"""The admin API's store SQL (async psycopg); every statement carries the marker comment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from analyzer.api import status as lifecycle
from analyzer.vocabulary import AuditStatus

Conn = psycopg.AsyncConnection[Any]

AUDIT_COLUMNS = (
    "id, target, status, requested_by, started_at, finished_at, duration_seconds,"
    " server_version, statements_analyzed, regression_count, cluster_count,"
    " recommendation_count, error"
)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def audit_summary(row: dict[str, Any]) -> dict[str, Any]:
    """One audit_run row as the API shows it in lists."""
    return {
        "audit_id": str(row["id"]), "target": row["target"], "status": row["status"],
        "requested_by": row["requested_by"], "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "duration_seconds": row["duration_seconds"], "server_version": row["server_version"],
        "statements_analyzed": row["statements_analyzed"],
        "regressions": row["regression_count"], "clusters": row["cluster_count"],
        "recommendations": row["recommendation_count"], "error": row["error"],
    }


async def list_audits(conn: Conn, target: str | None, status: str | None,
                      limit: int) -> list[dict[str, Any]]:
    """Audits, newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"/* pgarchitect */ SELECT {AUDIT_COLUMNS} FROM pgarchitect.audit_run"
            " WHERE (%(target)s::text IS NULL OR target = %(target)s)"
            " AND (%(status)s::text IS NULL OR status = %(status)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"target": target, "status": status, "limit": limit})
        return [audit_summary(r) for r in await cur.fetchall()]


async def get_audit(conn: Conn, audit_id: int) -> dict[str, Any] | None:
    """The stored report of a finished audit, else its summary (queued, running, failed)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"/* pgarchitect */ SELECT {AUDIT_COLUMNS}, report FROM pgarchitect.audit_run"
            " WHERE id = %s", (audit_id,))
        row = await cur.fetchone()
    if row is None:
        return None
    if row["status"] == AuditStatus.SUCCEEDED and row["report"] is not None:
        return dict(row["report"])
    return audit_summary(row)


def recommendation_json(row: dict[str, Any]) -> dict[str, Any]:
    """An optimization_log row (every column but the embedding) with ids as strings."""
    rec = dict(row["rec"])
    rec["id"] = str(rec["id"])
    if rec.get("audit_id") is not None:
        rec["audit_id"] = str(rec["audit_id"])
    if "table_name" in rec:
        rec["table"] = rec.pop("table_name")
    return rec


async def list_recommendations(conn: Conn, target: str | None, status: str | None,
                               limit: int) -> list[dict[str, Any]]:
    """Recommendations, newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "/* pgarchitect */ SELECT to_jsonb(o) - 'embedding' AS rec"
            " FROM pgarchitect.optimization_log o"
            " WHERE (%(target)s::text IS NULL OR target = %(target)s)"
            " AND (%(status)s::text IS NULL OR status = %(status)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"target": target, "status": status, "limit": limit})
        return [recommendation_json(r) for r in await cur.fetchall()]


async def _history(conn: Conn, rec_id: int) -> list[dict[str, Any]]:
    """Status changes, oldest first."""
    async with conn.cursor(row_factory=dict_row) as c:
        await c.execute(
            "/* pgarchitect */ SELECT to_jsonb(h) AS h FROM pgarchitect.optimization_history h"
            " WHERE h.recommendation_id = %s ORDER BY h.changed_at", (rec_id,))
        return [dict(r["h"]) for r in await c.fetchall()]


async def get_recommendation(conn: Conn, rec_id: int) -> dict[str, Any] | None:
    """One recommendation with its evidence and history."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "/* pgarchitect */ SELECT to_jsonb(o) - 'embedding' AS rec"
            " FROM pgarchitect.optimization_log o WHERE id = %s", (rec_id,))
        row = await cur.fetchone()
    if row is None:
        return None
    rec = recommendation_json(row)
    rec["history"] = await _history(conn, rec_id)
    return rec


class TransitionRefused(Exception):
    """The lifecycle does not allow this status change."""

    def __init__(self, current: str, new: str) -> None:
        super().__init__(f"a recommendation cannot go from {current} to {new}")
        self.current = current
        self.new = new


async def set_status(conn: Conn, rec_id: int, new: str, note: str | None) -> bool:
    """Change a recommendation's status; False when there is none; TransitionRefused."""
    async with conn.transaction():
        cur = await conn.execute(
            "/* pgarchitect */ SELECT status FROM pgarchitect.optimization_log"
            " WHERE id = %s FOR UPDATE", (rec_id,))
        row = await cur.fetchone()
        if row is None:
            return False
        current = str(row[0])
        if not lifecycle.allowed(current, new):
            raise TransitionRefused(current, new)
        await conn.execute(
            "/* pgarchitect */ INSERT INTO pgarchitect.optimization_history"
            " (recommendation_id, from_status, to_status, changed_at, changed_by, note)"
            " VALUES (%s, %s, %s, clock_timestamp(), 'api', %s)", (rec_id, current, new, note))
        await conn.execute(
            "/* pgarchitect */ UPDATE pgarchitect.optimization_log SET status = %(to)s,"
            " status_changed_at = clock_timestamp(), updated_at = clock_timestamp(),"
            " applied_at = CASE WHEN %(to)s = 'applied' THEN clock_timestamp()"
            "   ELSE applied_at END WHERE id = %(id)s", {"to": new, "id": rec_id})
    return True


async def store_view(conn: Conn) -> dict[str, Any]:
    """What /metrics exports from the store: checks, recommendations, last success."""
    checks = await (await conn.execute(
        "/* pgarchitect */ SELECT target, regressions, clusters"
        " FROM pgarchitect.regression_check")).fetchall()
    recs = await (await conn.execute(
        "/* pgarchitect */ SELECT target, kind, status, count(*)"
        " FROM pgarchitect.optimization_log GROUP BY 1, 2, 3")).fetchall()
    last = await (await conn.execute(
        "/* pgarchitect */ SELECT extract(epoch FROM max(finished_at))"
        " FROM pgarchitect.audit_run WHERE status = 'succeeded'")).fetchone()
    return {
        "checks": [(str(r[0]), int(r[1]), int(r[2])) for r in checks],
        "recommendations": [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in recs],
        "last_success": float(last[0]) if last and last[0] is not None else 0.0,
    }
