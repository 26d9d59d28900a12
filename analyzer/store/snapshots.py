"""The snapshot store: headers, statement texts and counters (changed rows plus checkpoints,
rebuilt on reading).

Every statement starts with the ``/* pgarchitect */`` marker. Functions take an open store
session and leave transaction control to the caller unless they say otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from psycopg.rows import args_row

from analyzer.snapshots.changes import roll_forward
from analyzer.snapshots.model import (
    STAT_COLUMNS,
    Row,
    SnapshotMeta,
    StatementCounters,
    StatementKey,
    StatementText,
    TargetReading,
    TextKey,
)
from analyzer.store import partitions
from analyzer.store.connection import Conn, by_pairs, rows_as


class KnownText(NamedTuple):
    """What the store knows of a text without reading it."""

    fingerprint: str
    own: bool


def known_texts(conn: Conn, target: str) -> dict[tuple[int, int], tuple[str, bool]]:
    """(dbid, queryid) -> (fingerprint, own) for every text the store has for `target`."""
    return dict(rows_as(
        conn, _known, "/* pgarchitect */ SELECT dbid, queryid, coalesce(fingerprint, ''), own"
        " FROM pgarchitect.statement_text WHERE target = %s", (target,)))


def _known(dbid: int, queryid: int, fingerprint: str, own: bool) -> tuple[TextKey, KnownText]:
    return TextKey(int(dbid), int(queryid)), KnownText(fingerprint, bool(own))


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
    return rows_as(
        conn, SnapshotMeta,
        "/* pgarchitect */ SELECT id, taken_at, stats_reset, dealloc FROM pgarchitect.snapshot"
        " WHERE target = %(t)s AND taken_at >= coalesce((SELECT min(taken_at)"
        "   FROM pgarchitect.snapshot WHERE target = %(t)s AND is_checkpoint), 'infinity')"
        " ORDER BY taken_at, id", {"t": target})


_COLUMNS = ", ".join(STAT_COLUMNS)


_counters = StatementCounters.from_columns


class _SeriesRow(NamedTuple):
    snapshot_id: int
    counters: StatementCounters


def _series_row(snapshot_id: int, *columns: Any) -> _SeriesRow:
    return _SeriesRow(int(snapshot_id), _counters(*columns))


@dataclass(frozen=True, slots=True)
class _Stored:
    id: int
    taken_at: datetime
    is_checkpoint: bool


def _chain(conn: Conn, snapshot_id: int, last_id: int | None = None) -> list[_Stored]:
    """The target's snapshots from the checkpoint at or before `snapshot_id` up to `last_id`
    (default: `snapshot_id` itself), oldest first."""
    return rows_as(
        conn, _Stored,
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
        {"first": snapshot_id, "last": snapshot_id if last_id is None else last_id})


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
    with conn.cursor(row_factory=args_row(_counters)) as cur:
        return {c.key: c for c in cur.execute(sql.encode(), params)}


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
    with conn.cursor(row_factory=args_row(_series_row)) as cur:
        for r in cur.execute(sql.encode(), params):
            rows[r.snapshot_id].append(r.counters)
    states = roll_forward((c.is_checkpoint, rows[c.id]) for c in chain)
    by_id = {c.id: state for c, state in zip(chain, states, strict=True)}
    return [by_id.get(m.id, {}) for m in metas]


class StoredHeader(NamedTuple):
    """A stored snapshot's header as a rebuild needs it; `version` (the row's xmin) changes
    whenever the row is written anew (a store recreated, a snapshot id used again)."""

    id: int
    taken_at: datetime
    is_checkpoint: bool
    stored_count: int
    version: int


def load_headers(conn: Conn, target: str, first: SnapshotMeta, last: SnapshotMeta
                 ) -> list[StoredHeader]:
    """The target's snapshot headers from the checkpoint at or before `first` up to `last`,
    oldest first (none when no checkpoint precedes `first`)."""
    return rows_as(
        conn, StoredHeader,
        "/* pgarchitect */ WITH cp AS (SELECT taken_at, id FROM pgarchitect.snapshot"
        "   WHERE target = %(t)s AND is_checkpoint AND (taken_at, id) <= (%(ft)s, %(fi)s)"
        "   ORDER BY taken_at DESC, id DESC LIMIT 1)"
        " SELECT x.id, x.taken_at, x.is_checkpoint, x.stored_count, x.xmin::text::bigint"
        " FROM pgarchitect.snapshot x, cp"
        " WHERE x.target = %(t)s AND x.taken_at BETWEEN cp.taken_at AND %(lt)s"
        "   AND (x.taken_at, x.id) BETWEEN (cp.taken_at, cp.id) AND (%(lt)s, %(li)s)"
        " ORDER BY x.taken_at, x.id",
        {"t": target, "ft": first.taken_at, "fi": first.id, "lt": last.taken_at,
         "li": last.id})


def load_stored(conn: Conn, headers: Sequence[StoredHeader]
                ) -> dict[int, list[StatementCounters]]:
    """The rows stored with each of `headers` (changed ones, or all for a checkpoint)."""
    rows: dict[int, list[StatementCounters]] = {h.id: [] for h in headers}
    if not headers:
        return rows
    sql = (f"/* pgarchitect */ SELECT snapshot_id, {_COLUMNS} FROM pgarchitect.statement_stat"
           " WHERE snapshot_id = ANY(%s) AND taken_at = ANY(%s)")
    params = [[h.id for h in headers], sorted({h.taken_at for h in headers})]
    with conn.cursor(row_factory=args_row(_series_row)) as cur:
        for r in cur.execute(sql.encode(), params):
            rows[r.snapshot_id].append(r.counters)
    return rows


def load_texts(conn: Conn, target: str, keys: Iterable[tuple[int, int]]
               ) -> dict[tuple[int, int], StatementText]:
    """Texts and fingerprints for (dbid, queryid) pairs."""
    rows = by_pairs(
        conn,
        "/* pgarchitect */ SELECT t.dbid, t.queryid, t.query, coalesce(t.fingerprint, ''), t.own"
        " FROM pgarchitect.statement_text t"
        " JOIN unnest(%s::oid[], %s::bigint[]) AS k(dbid, queryid)"
        "   ON k.dbid = t.dbid AND k.queryid = t.queryid"
        " WHERE t.target = %s",
        keys, target,
    )
    texts = (StatementText(int(dbid), int(queryid), str(query), str(fingerprint), bool(own))
             for dbid, queryid, query, fingerprint, own in rows)
    return {TextKey(t.dbid, t.queryid): t for t in texts}
