"""The store's SQL for snapshots, texts, audits, regressions, clusters and plan shapes.

Every statement starts with the ``/* pgarchitect */`` marker. Functions take an open psycopg
connection and leave transaction control to the caller unless they say otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from analyzer.snapshots.model import (
    STAT_COLUMNS,
    SnapshotMeta,
    StatementCounters,
    StatementKey,
    StatementText,
    TargetReading,
)
from pgarchitect.db import connect_sync, first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import UserError

APPLICATION_NAME = "pgarchitect-analyzer"
Conn = psycopg.Connection[Any]


# The store schema version this code needs (migrations/0003_catalog.sql).
SCHEMA_VERSION = 3


def connect_store(dsn: Dsn, connect_timeout: float = 5.0) -> Conn:
    """A session on a migrated store, in autocommit mode (callers open transactions)."""
    conn = connect_sync(dsn, "store", application_name=APPLICATION_NAME,
                        connect_timeout=connect_timeout)
    conn.autocommit = True
    try:
        row = conn.execute("/* pgarchitect */ SELECT max(version)"
                           " FROM pgarchitect.schema_migrations").fetchone()
        version = int(str(row[0])) if row and row[0] is not None else 0
    except psycopg.errors.UndefinedTable:
        version = 0
    except psycopg.Error as exc:
        conn.close()
        raise UserError(f"cannot use the store {dsn.masked}: {first_line(exc)}") from None
    if version < SCHEMA_VERSION:
        conn.close()
        raise UserError(f"the store {dsn.masked} is not migrated to version {SCHEMA_VERSION} "
                        "(run `pgarchitect migrate --store DSN`)")
    return conn


def known_texts(conn: Conn, target: str) -> dict[tuple[int, int], tuple[str, bool]]:
    """(dbid, queryid) -> (fingerprint, own) for every text the store has for `target`."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT dbid, queryid, coalesce(fingerprint, ''), own"
        " FROM pgarchitect.statement_text WHERE target = %s", (target,),
    ).fetchall()
    return {(int(r[0]), int(r[1])): (str(r[2]), bool(r[3])) for r in rows}


def insert_snapshot(
    conn: Conn,
    target: str,
    reading: TargetReading,
    texts: Sequence[StatementText],
    statements: Sequence[StatementCounters],
) -> SnapshotMeta:
    """Write one snapshot (header, new texts, counters); call inside a transaction."""
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.snapshot"
        " (target, server_version, stats_reset, dealloc, statement_count)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id, taken_at",
        (target, reading.server_version, reading.stats_reset, reading.dealloc, len(statements)),
    ).fetchone()
    assert row is not None
    snap = SnapshotMeta(int(row[0]), row[1], reading.stats_reset, reading.dealloc)
    if texts:
        with conn.cursor() as cur:
            cur.executemany(
                "/* pgarchitect */ INSERT INTO pgarchitect.statement_text"
                " (target, dbid, queryid, fingerprint, query, own) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (target, dbid, queryid) DO NOTHING",
                [(target, t.dbid, t.queryid, t.fingerprint, t.query, t.own) for t in texts],
            )
    columns = ", ".join(("snapshot_id", *STAT_COLUMNS))
    with conn.cursor() as cur, cur.copy(
        f"/* pgarchitect */ COPY pgarchitect.statement_stat ({columns}) FROM STDIN".encode()
    ) as copy:
        for s in statements:
            copy.write_row((snap.id, *s.as_row()))
    return snap


def prune(conn: Conn, target: str, retention_seconds: float, keep: int) -> int:
    """Delete the target's snapshots older than the retention (never the one just taken)."""
    cur = conn.execute(
        "/* pgarchitect */ DELETE FROM pgarchitect.snapshot WHERE target = %s AND id <> %s"
        " AND taken_at < now() - make_interval(secs => %s)",
        (target, keep, retention_seconds),
    )
    return cur.rowcount


def list_snapshots(conn: Conn, target: str) -> list[SnapshotMeta]:
    """All snapshot headers of a target, oldest first."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT id, taken_at, stats_reset, dealloc FROM pgarchitect.snapshot"
        " WHERE target = %s ORDER BY taken_at, id", (target,),
    ).fetchall()
    return [SnapshotMeta(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3]))
            for r in rows]


_LOAD = ("/* pgarchitect */ SELECT dbid, userid, queryid, toplevel, calls, total_exec_time,"
         " coalesce(stddev_exec_time, 0), min_exec_time, max_exec_time, rows, shared_blks_hit,"
         " shared_blks_read, temp_blks_written, stats_since"
         " FROM pgarchitect.statement_stat WHERE snapshot_id = %s")


def load_counters(
    conn: Conn, snapshot_id: int, queryids: Iterable[int] | None = None
) -> dict[StatementKey, StatementCounters]:
    """The counters of one snapshot (optionally only some queryids), keyed by statement."""
    if queryids is None:
        rows = conn.execute(_LOAD, (snapshot_id,)).fetchall()
    else:
        rows = conn.execute(_LOAD + " AND queryid = ANY(%s)",
                            (snapshot_id, sorted(set(queryids)))).fetchall()
    out: dict[StatementKey, StatementCounters] = {}
    for r in rows:
        c = StatementCounters(
            dbid=int(r[0]), userid=int(r[1]), queryid=int(r[2]), toplevel=bool(r[3]),
            calls=int(r[4]), total_exec_time=float(r[5]), stddev_exec_time=float(r[6]),
            min_exec_time=r[7], max_exec_time=r[8], rows=int(r[9] or 0),
            shared_blks_hit=int(r[10] or 0), shared_blks_read=int(r[11] or 0),
            temp_blks_written=int(r[12] or 0), stats_since=r[13],
        )
        out[c.key] = c
    return out


def _by_pairs(conn: Conn, sql: str, pairs: Iterable[tuple[int, Any]],
              *params: object) -> list[tuple[Any, ...]]:
    """Run `sql` with the pairs passed as two arrays (for a join with unnest), then `params`."""
    unique = sorted(set(pairs))
    if not unique:
        return []
    firsts = [p[0] for p in unique]
    seconds = [p[1] for p in unique]
    return conn.execute(sql.encode(), (firsts, seconds, *params)).fetchall()


def load_texts(conn: Conn, target: str, keys: Iterable[tuple[int, int]]) -> dict[
        tuple[int, int], StatementText]:
    """Texts and fingerprints for (dbid, queryid) pairs."""
    rows = _by_pairs(
        conn,
        "/* pgarchitect */ SELECT t.dbid, t.queryid, t.query, coalesce(t.fingerprint, ''), t.own"
        " FROM pgarchitect.statement_text t"
        " JOIN unnest(%s::oid[], %s::bigint[]) AS k(dbid, queryid)"
        "   ON k.dbid = t.dbid AND k.queryid = t.queryid"
        " WHERE t.target = %s",
        keys, target,
    )
    return {(int(r[0]), int(r[1])): StatementText(int(r[0]), int(r[1]), str(r[2]), str(r[3]),
                                                  bool(r[4])) for r in rows}


def previous_plans(conn: Conn, target: str, fingerprints: Iterable[tuple[int, str]],
                   before_audit: int) -> dict[tuple[int, str], dict[str, Any]]:
    """The latest stored plan shape per (dbid, fingerprint) from audits before this one."""
    rows = _by_pairs(
        conn,
        "/* pgarchitect */ SELECT DISTINCT ON (p.dbid, p.fingerprint) p.dbid, p.fingerprint,"
        " p.shape FROM pgarchitect.statement_plan p"
        " JOIN unnest(%s::oid[], %s::text[]) AS k(dbid, fingerprint)"
        "   ON k.dbid = p.dbid AND k.fingerprint = p.fingerprint"
        " WHERE p.target = %s AND p.audit_id < %s"
        " ORDER BY p.dbid, p.fingerprint, p.captured_at DESC",
        fingerprints, target, before_audit,
    )
    return {(int(r[0]), str(r[1])): dict(r[2]) for r in rows}


def start_audit(conn: Conn, target: str) -> tuple[int, datetime]:
    """Record a running audit (committed at once, so a crash leaves a trace)."""
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.audit_run (target, started_at)"
        " VALUES (%s, clock_timestamp()) RETURNING id, started_at", (target,),
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def abandon_running(conn: Conn, target: str) -> int:
    """Mark audits of `target` still 'running' (their process died) as failed."""
    return conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'failed',"
        " finished_at = coalesce(finished_at, clock_timestamp()),"
        " error = 'abandoned: the audit process stopped before it finished'"
        " WHERE target = %s AND status = 'running'", (target,),
    ).rowcount


def fail_audit(conn: Conn, audit_id: int, error: str, duration: float) -> None:
    """Record that an audit failed, and why."""
    conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'failed',"
        " finished_at = clock_timestamp(), duration_seconds = %s, error = %s"
        " WHERE id = %s", (duration, error[:2000], audit_id),
    )


def finish_audit(conn: Conn, audit_id: int, values: Mapping[str, Any]) -> None:
    """Mark an audit succeeded with its counts and report; call inside the result transaction."""
    conn.execute(
        "/* pgarchitect */ UPDATE pgarchitect.audit_run SET status = 'succeeded',"
        " finished_at = %(finished_at)s, duration_seconds = %(duration)s,"
        " server_version = %(server_version)s, snapshot_id = %(snapshot_id)s,"
        " statements_analyzed = %(statements_analyzed)s, regression_count = %(regressions)s,"
        " cluster_count = %(clusters)s, recommendation_count = %(recommendations)s,"
        " report = %(report)s WHERE id = %(id)s",
        {**values, "id": audit_id, "report": Jsonb(values["report"])},
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


def audit_report(conn: Conn, audit_id: int) -> dict[str, Any] | None:
    """The stored JSON report of an audit."""
    row = conn.execute("/* pgarchitect */ SELECT report FROM pgarchitect.audit_run WHERE id = %s",
                       (audit_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    value = row[0]
    return dict(value) if isinstance(value, dict) else dict(json.loads(value))
