"""The store's SQL for snapshots, texts, audits, regressions, clusters and plan shapes.

Every statement starts with the ``/* pgarchitect */`` marker. Functions take an open psycopg
connection and leave transaction control to the caller unless they say otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from analyzer.snapshots import partitions
from analyzer.snapshots.catalog_probe import Seen
from analyzer.snapshots.changes import Previous, after, plan, roll_forward
from analyzer.snapshots.model import (
    STAT_COLUMNS,
    Row,
    SnapshotMeta,
    StatementCounters,
    StatementKey,
    StatementText,
    TargetReading,
)
from pgarchitect.config import AnalyzerSettings
from pgarchitect.db import connect_sync, first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import UserError

APPLICATION_NAME = "pgarchitect-analyzer"
Conn = psycopg.Connection[Any]


# The store schema version this code needs (migrations/0006_memory.sql).
SCHEMA_VERSION = 6
# Advisory lock class of per-target snapshot writes (the second key is the target's hash).
_TARGET_LOCK = 0x7067_0004


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


# Binary COPY types of statement_stat's columns: (snapshot_id, taken_at, *STAT_COLUMNS).
_COPY_TYPES = (
    "int8", "timestamptz", "oid", "text", "oid", "text", "int8", "bool", "int8",
    "float8", "float8", "float8", "float8", "float8", "float8", "int8", "int8", "int8", "int8",
    "int8", "int8", "int8", "float8", "float8", "float8", "timestamptz",
)
_COPY = ("/* pgarchitect */ COPY pgarchitect.statement_stat ("
         + ", ".join(("snapshot_id", "taken_at", *STAT_COLUMNS)) + ") FROM STDIN (FORMAT BINARY)")


def store_clock(conn: Conn) -> datetime:
    """The store's current time (snapshots are stamped on the store's clock)."""
    row = conn.execute("/* pgarchitect */ SELECT clock_timestamp()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def insert_texts(conn: Conn, target: str, texts: Sequence[StatementText]) -> None:
    """Record new statement texts (a racing writer's copy of the same text is kept)."""
    if not texts:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "/* pgarchitect */ INSERT INTO pgarchitect.statement_text"
            " (target, dbid, queryid, fingerprint, query, own) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (target, dbid, queryid) DO NOTHING",
            [(target, t.dbid, t.queryid, t.fingerprint, t.query, t.own) for t in texts],
        )


def copy_counters(conn: Conn, snapshot_id: int, taken_at: datetime,
                  rows: Iterable[Row]) -> None:
    """COPY rows (STAT_COLUMNS order) into statement_stat (binary: no float formatting)."""
    with conn.cursor() as cur, cur.copy(_COPY.encode()) as copy:
        copy.set_types(list(_COPY_TYPES))
        for row in rows:
            copy.write_row((snapshot_id, taken_at, *row))


def insert_snapshot(
    conn: Conn,
    target: str,
    reading: TargetReading,
    texts: Sequence[StatementText],
    statements: Sequence[Row],
    taken_at: datetime | None = None,
    is_checkpoint: bool = True,
    statement_count: int | None = None,
    partition_interval: float | None = 86400.0,
) -> SnapshotMeta:
    """Write one snapshot (header, new texts, the given counters); call inside a transaction.

    A checkpoint holds every statement; otherwise `statements` are the changed ones and
    `statement_count` how many the view held. The time partition is created if missing
    (pass None when the caller made sure of it). StatementWriter.write is the usual way in.
    """
    when = taken_at if taken_at is not None else store_clock(conn)
    if partition_interval is not None:
        partitions.ensure(conn, when, partition_interval, ahead=0)
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.snapshot (target, taken_at, server_version,"
        " stats_reset, dealloc, statement_count, stored_count, is_checkpoint)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id, taken_at",
        (target, when, reading.server_version, reading.stats_reset, reading.dealloc,
         len(statements) if statement_count is None else statement_count, len(statements),
         is_checkpoint),
    ).fetchone()
    assert row is not None
    snap = SnapshotMeta(int(row[0]), row[1], reading.stats_reset, reading.dealloc)
    insert_texts(conn, target, texts)
    copy_counters(conn, snap.id, snap.taken_at, statements)
    return snap


def list_snapshots(conn: Conn, target: str) -> list[SnapshotMeta]:
    """The target's snapshot headers, oldest first, from its oldest checkpoint on (a snapshot
    before it could not be rebuilt)."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT id, taken_at, stats_reset, dealloc FROM pgarchitect.snapshot"
        " WHERE target = %(t)s AND taken_at >= coalesce((SELECT min(taken_at)"
        "   FROM pgarchitect.snapshot WHERE target = %(t)s AND is_checkpoint), 'infinity')"
        " ORDER BY taken_at, id", {"t": target},
    ).fetchall()
    return [SnapshotMeta(int(r[0]), r[1], r[2], None if r[3] is None else int(r[3]))
            for r in rows]


_COLUMNS = ", ".join(STAT_COLUMNS)


_counters = StatementCounters.from_row


@dataclass(frozen=True, slots=True)
class _Stored:
    id: int
    taken_at: datetime
    is_checkpoint: bool


def _chain(conn: Conn, snapshot_id: int, last_id: int | None = None) -> list[_Stored]:
    """The target's snapshots from the checkpoint at or before `snapshot_id` up to `last_id`
    (default: `snapshot_id` itself), oldest first."""
    rows = conn.execute(
        "/* pgarchitect */ WITH s AS (SELECT target, taken_at, id FROM pgarchitect.snapshot"
        "   WHERE id = %(first)s),"
        " e AS (SELECT taken_at, id FROM pgarchitect.snapshot WHERE id = %(last)s),"
        " cp AS (SELECT c.taken_at, c.id FROM pgarchitect.snapshot c, s"
        "   WHERE c.target = s.target AND c.is_checkpoint"
        "     AND (c.taken_at, c.id) <= (s.taken_at, s.id)"
        "   ORDER BY c.taken_at DESC, c.id DESC LIMIT 1)"
        " SELECT x.id, x.taken_at, x.is_checkpoint FROM pgarchitect.snapshot x, s, e, cp"
        " WHERE x.target = s.target AND x.taken_at BETWEEN cp.taken_at AND e.taken_at"
        "   AND (x.taken_at, x.id) BETWEEN (cp.taken_at, cp.id) AND (e.taken_at, e.id)"
        " ORDER BY x.taken_at, x.id",
        {"first": snapshot_id, "last": snapshot_id if last_id is None else last_id},
    ).fetchall()
    return [_Stored(int(r[0]), r[1], bool(r[2])) for r in rows]


def load_counters(
    conn: Conn, snapshot_id: int, queryids: Iterable[int] | None = None
) -> dict[StatementKey, StatementCounters]:
    """The full counters at one snapshot (optionally only some queryids), keyed by statement.

    A changed-only snapshot is completed from its checkpoint: each statement's counters are
    those of its latest row from the checkpoint up to this snapshot.
    """
    chain = _chain(conn, snapshot_id)
    if not chain:
        return {}
    sql = (f"/* pgarchitect */ SELECT DISTINCT ON (dbid, userid, queryid, toplevel) {_COLUMNS}"
           " FROM pgarchitect.statement_stat"
           " WHERE snapshot_id = ANY(%s) AND taken_at BETWEEN %s AND %s")
    params: list[Any] = [[c.id for c in chain], chain[0].taken_at, chain[-1].taken_at]
    if queryids is not None:
        sql += " AND queryid = ANY(%s)"
        params.append(sorted(set(queryids)))
    sql += " ORDER BY dbid, userid, queryid, toplevel, taken_at DESC, snapshot_id DESC"
    rows = conn.execute(sql.encode(), params).fetchall()
    out: dict[StatementKey, StatementCounters] = {}
    for r in rows:
        c = _counters(r)
        out[c.key] = c
    return out


def load_series(
    conn: Conn, metas: Sequence[SnapshotMeta], queryids: Iterable[int] | None = None
) -> list[dict[StatementKey, StatementCounters]]:
    """The full counters at each of `metas` (one target's, oldest first), in one read."""
    if not metas:
        return []
    chain = _chain(conn, metas[0].id, metas[-1].id)
    if not chain:
        return [{} for _ in metas]
    sql = (f"/* pgarchitect */ SELECT snapshot_id, {_COLUMNS} FROM pgarchitect.statement_stat"
           " WHERE snapshot_id = ANY(%s) AND taken_at BETWEEN %s AND %s")
    params: list[Any] = [[c.id for c in chain], chain[0].taken_at, chain[-1].taken_at]
    if queryids is not None:
        sql += " AND queryid = ANY(%s)"
        params.append(sorted(set(queryids)))
    rows: dict[int, list[StatementCounters]] = {c.id: [] for c in chain}
    for r in conn.execute(sql.encode(), params):
        rows[int(r[0])].append(_counters(r[1:]))
    states = roll_forward((c.is_checkpoint, rows[c.id]) for c in chain)
    by_id = {c.id: state for c, state in zip(chain, states, strict=True)}
    return [by_id.get(m.id, {}) for m in metas]


@dataclass(frozen=True, slots=True)
class Written:
    """What one write of a snapshot did."""

    snapshot: SnapshotMeta
    stored: int            # statement rows written
    checkpoint: str | None  # why every statement was stored, or None (changed rows only)
    skipped: bool = False  # a snapshot read later than this one was already stored
    compare_seconds: float = 0.0  # of the comparison with the previous state


@dataclass
class StatementWriter:
    """Writes snapshots of targets as changed rows plus checkpoints (analyzer/snapshots/changes.py).

    It keeps each target's latest state in memory, so a periodic snapshot compares with it
    instead of rebuilding it from the store; a state that is not the store's latest (another
    replica wrote since) is rebuilt. One writer serves many targets; it is not thread-safe.
    """

    partition_interval: float = 86400.0
    checkpoint_interval: float = 86400.0
    partitions_ahead: int = 2
    _previous: dict[str, Previous] = field(default_factory=dict)
    _covered_until: datetime | None = None
    _texts: dict[str, dict[tuple[int, int], tuple[str, bool]]] = field(default_factory=dict)
    # Each target's last full catalog read (analyzer/snapshots/catalog_probe.py).
    catalogs: dict[str, Seen] = field(default_factory=dict)

    @classmethod
    def for_settings(cls, settings: AnalyzerSettings) -> StatementWriter:
        """A writer with the configured partition and checkpoint intervals."""
        return cls(settings.partition_interval, settings.checkpoint_interval)

    def known_texts(self, conn: Conn, target: str) -> dict[tuple[int, int], tuple[str, bool]]:
        """Like known_texts(), from memory after the first call (a copy: callers may add).

        A text another replica stored meanwhile is missing here; it is then fetched and
        inserted once more, which the store ignores.
        """
        if target not in self._texts:
            self._texts[target] = known_texts(conn, target)
        return dict(self._texts[target])

    def write(
        self, conn: Conn, target: str, reading: TargetReading, read_at: datetime,
        texts: Sequence[StatementText], statements: Sequence[Row],
        within: Callable[[SnapshotMeta], object] | None = None,
    ) -> Written:
        """Store one reading of `target` taken at `read_at` (`statements`: its rows in
        STAT_COLUMNS order); call outside a transaction. `within` runs in the same
        transaction once the snapshot row exists (the catalog row goes in with it)."""
        ahead = read_at + timedelta(seconds=self.partition_interval)
        if self._covered_until is None or ahead >= self._covered_until:
            self._covered_until = partitions.ensure(conn, read_at, self.partition_interval,
                                                    self.partitions_ahead)
        with conn.transaction():
            # Writers of one target take turns; what the previous snapshot is, is read
            # under the lock.
            conn.execute("/* pgarchitect */ SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))",
                         (_TARGET_LOCK, target))
            latest = conn.execute(
                "/* pgarchitect */ SELECT id, taken_at, stats_reset, dealloc"
                " FROM pgarchitect.snapshot WHERE target = %s"
                " ORDER BY taken_at DESC, id DESC LIMIT 1", (target,),
            ).fetchone()
            if latest is not None and latest[1] >= read_at:
                meta = SnapshotMeta(int(latest[0]), latest[1], latest[2],
                                    None if latest[3] is None else int(latest[3]))
                return Written(meta, 0, None, skipped=True)
            previous = self._previous_of(conn, target, latest)
            # The partition actually holding the snapshot (its bounds follow the interval
            # in force when it was created).
            partition_start = (partitions.lower_bound_at(conn, read_at)
                               or partitions.slot(read_at, self.partition_interval)[0])
            started = time.perf_counter()
            stored = plan(previous, statements, reading.stats_reset, reading.dealloc,
                          read_at, self.checkpoint_interval, partition_start)
            compared = time.perf_counter() - started
            snap = insert_snapshot(conn, target, reading, texts, stored.rows, taken_at=read_at,
                                   is_checkpoint=stored.checkpoint is not None,
                                   statement_count=len(statements), partition_interval=None)
            if within is not None:
                within(snap)
        self._previous[target] = after(previous, snap.id, snap.taken_at, reading.stats_reset,
                                       reading.dealloc, stored)
        cache = self._texts.get(target)
        if cache is not None:
            cache.update({(t.dbid, t.queryid): (t.fingerprint, t.own) for t in texts})
        return Written(snap, len(stored.rows), stored.checkpoint, compare_seconds=compared)

    def _previous_of(self, conn: Conn, target: str,
                     latest: Sequence[Any] | None) -> Previous | None:
        if latest is None:
            self._previous.pop(target, None)
            return None
        cached = self._previous.get(target)
        if cached is not None and cached.snapshot_id == int(latest[0]):
            return cached
        row = conn.execute(
            "/* pgarchitect */ SELECT max(taken_at) FROM pgarchitect.snapshot"
            " WHERE target = %s AND is_checkpoint", (target,),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return Previous(int(latest[0]), latest[1], latest[2],
                        None if latest[3] is None else int(latest[3]), row[0],
                        {k: c.as_row() for k, c in load_counters(conn, int(latest[0])).items()})


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


def start_audit(conn: Conn, target: str, audit_id: int | None = None,
                requested_by: str = "cli") -> tuple[int, datetime]:
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


def queue_audit(conn: Conn, target: str, requested_by: str = "api") -> int:
    """Record an audit that is requested but not started yet; returns its id."""
    row = conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.audit_run (target, status, requested_by)"
        " VALUES (%s, 'queued', %s) RETURNING id", (target, requested_by),
    ).fetchone()
    assert row is not None
    return int(row[0])


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
