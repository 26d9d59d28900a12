"""The audit store: audit runs (queued, running, succeeded, failed) and what a succeeded one
found: regressions, clusters, plan shapes, the report."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from psycopg.types.json import Jsonb

from analyzer.store import locks
from analyzer.store.connection import Conn, by_pairs
from analyzer.vocabulary import RequestedBy
from pgarchitect.errors import UserError


def start_audit(conn: Conn, target: str, audit_id: int | None = None,
                requested_by: str = RequestedBy.CLI) -> tuple[int, datetime]:
    """Record a running audit (committed at once, so a crash leaves a trace).

    With `audit_id`, the queued audit of that id (see queue_audit) is claimed instead; a retry
    after a crashed worker claims it again.
    """
    if audit_id is not None:
        row = conn.execute(
            "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'running',"
            " started_at = clock_timestamp(), finished_at = NULL, error = NULL"
            " WHERE id = %s AND target = %s AND status <> 'succeeded' RETURNING id, started_at",
            (audit_id, target),
        ).fetchone()
        if row is None:
            raise UserError(f"audit {audit_id} of {target} is not waiting to run")
        return int(row[0]), row[1]
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.audit_run (target, started_at, requested_by)"
        " VALUES (%s, clock_timestamp(), %s) RETURNING id, started_at", (target, requested_by),
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


# An audit requested but not started yet (the service's async session runs it too).
QUEUE_AUDIT = ("/* pgarchitect */ INSERT INTO pgarchitect.audit_run (target, status, requested_by)"
               " VALUES (%s, 'queued', %s) RETURNING id")


def queue_audit(conn: Conn, target: str, requested_by: str = RequestedBy.API) -> int:
    """Record an audit that is requested but not started yet; returns its id."""
    row = conn.execute(QUEUE_AUDIT, (target, requested_by)).fetchone()
    assert row is not None
    return int(row[0])


def fail_abandoned(conn: Conn) -> int:
    """Mark failed the audits still 'running' whose process is gone; return how many.

    A running audit holds its target's lock (analyzer/store/locks.py) on its store session
    until it ends; a 'running' row whose target lock is free was left by a process that died
    (a CLI audit whose store went away before it could record the failure). Called when an
    audit starts and when the service starts. Locks this session holds count as free.
    """
    rows = conn.execute("/* pgarchitect */ SELECT DISTINCT target FROM pgarchitect.audit_run"
                        " WHERE status = 'running'").fetchall()
    failed = 0
    for (target,) in rows:
        if not locks.try_lock_target(conn, target):
            continue  # its audit (or a snapshot job) is alive
        try:
            failed += conn.execute(
                "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'failed',"
                " finished_at = coalesce(finished_at, clock_timestamp()),"
                " error = 'abandoned: the audit process stopped before it finished'"
                " WHERE target = %s AND status = 'running'", (target,),
            ).rowcount
        finally:
            locks.unlock_target(conn, target)
    return failed


def fail_audit(conn: Conn, audit_id: int, error: str, duration: float) -> None:
    """Record that an audit failed, and why."""
    conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'failed',"
        " finished_at = clock_timestamp(), duration_seconds = %s, error = %s"
        " WHERE id = %s", (duration, error[:2000], audit_id),
    )


class Finished(NamedTuple):
    """What the audit_run row of a succeeded audit records."""

    finished_at: datetime
    duration: float
    server_version: str
    snapshot_id: int | None
    statements_analyzed: int
    regressions: int
    clusters: int
    recommendations: int
    report: Mapping[str, Any]  # the JSON report (docs/report.md)


def finish_audit(conn: Conn, audit_id: int, values: Finished) -> None:
    """Mark an audit succeeded with its counts and report; call inside the result transaction."""
    conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'succeeded',"
        " finished_at = %(finished_at)s, duration_seconds = %(duration)s,"
        " server_version = %(server_version)s, snapshot_id = %(snapshot_id)s,"
        " statements_analyzed = %(statements_analyzed)s, regression_count = %(regressions)s,"
        " cluster_count = %(clusters)s, recommendation_count = %(recommendations)s,"
        " report = %(report)s WHERE id = %(id)s",
        {**values._asdict(), "id": audit_id, "report": Jsonb(dict(values.report))},
    )


def insert_regressions(conn: Conn, audit_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Batch-insert an audit's regressions (as the report shows them: queryid as text)."""
    with conn.cursor() as cur:
        cur.executemany(
            "/* pgarchitect */ INSERT INTO pgarchitect.regression (audit_id, dbid, queryid,"
            " fingerprint, query, calls, baseline_mean_ms, current_mean_ms, ratio, p_value,"
            " cluster_id, queryids, toplevel, baseline_calls, baseline_stddev_ms,"
            " current_stddev_ms, changed_since, tables, plan) VALUES (%(audit_id)s, %(dbid)s,"
            " %(queryid)s::bigint, %(fingerprint)s, %(query)s, %(calls)s, %(baseline_mean_ms)s,"
            " %(current_mean_ms)s, %(ratio)s, %(p_value)s, %(cluster_id)s, %(queryids)s,"
            " %(toplevel)s, %(baseline_calls)s, %(baseline_stddev_ms)s, %(current_stddev_ms)s,"
            " %(changed_since)s::timestamptz, %(tables)s, %(plan)s)",
            [{**r, "audit_id": audit_id,
              "plan": None if r.get("plan") is None else Jsonb(r["plan"])} for r in rows],
        )


def insert_clusters(conn: Conn, audit_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Batch-insert an audit's regression clusters."""
    with conn.cursor() as cur:
        cur.executemany(
            "/* pgarchitect */ INSERT INTO pgarchitect.regression_cluster (audit_id, cluster_id,"
            " queryids, tables, summary, features, cause) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(audit_id, r["cluster_id"], r["queryids"], r["tables"], r["summary"],
              Jsonb(r.get("features") or {}),
              None if r.get("cause") is None else Jsonb(r["cause"])) for r in rows],
        )


def insert_plans(conn: Conn, target: str, audit_id: int,
                 plans: Mapping[tuple[int, str], Mapping[str, Any]]) -> None:
    """Store the plan shapes an audit saw."""
    with conn.cursor() as cur:
        cur.executemany(
            "/* pgarchitect */ INSERT INTO pgarchitect.statement_plan"
            " (target, dbid, fingerprint, audit_id, shape) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [(target, k[0], k[1], audit_id, Jsonb(dict(v))) for k, v in plans.items()],
        )


def previous_plans(conn: Conn, target: str, fingerprints: Iterable[tuple[int, str]],
                   before_audit: int) -> dict[tuple[int, str], dict[str, Any]]:
    """The latest stored plan shape per (dbid, fingerprint) from audits before this one."""
    rows = by_pairs(
        conn,
        "/* pgarchitect */ SELECT DISTINCT ON (p.dbid, p.fingerprint) p.dbid, p.fingerprint,"
        " p.shape FROM pgarchitect.statement_plan p"
        " JOIN unnest(%s::oid[], %s::text[]) AS k(dbid, fingerprint)"
        "   ON k.dbid = p.dbid AND k.fingerprint = p.fingerprint"
        " WHERE p.target = %s AND p.audit_id < %s"
        " ORDER BY p.dbid, p.fingerprint, p.captured_at DESC",
        fingerprints, target, before_audit,
    )
    return {(int(dbid), str(fingerprint)): dict(shape) for dbid, fingerprint, shape in rows}


def audit_report(conn: Conn, audit_id: int) -> dict[str, Any] | None:
    """The stored JSON report of an audit."""
    row = conn.execute("/* pgarchitect */ SELECT report FROM pgarchitect.audit_run WHERE id = %s",
                       (audit_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    value = row[0]
    return dict(value) if isinstance(value, dict) else dict(json.loads(value))


def record_check(conn: Conn, target: str, snapshot_id: int | None, regressions: int,
                 clusters: int, note: str | None) -> None:
    """Keep the latest quick check of a target (every replica's /metrics reads it)."""
    conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.regression_check"
        " (target, snapshot_id, checked_at, regressions, clusters, note)"
        " VALUES (%s, %s, clock_timestamp(), %s, %s, %s) ON CONFLICT (target) DO UPDATE SET"
        " snapshot_id = excluded.snapshot_id, checked_at = excluded.checked_at,"
        " regressions = excluded.regressions, clusters = excluded.clusters,"
        " note = excluded.note",
        (target, snapshot_id, regressions, clusters, note),
    )
