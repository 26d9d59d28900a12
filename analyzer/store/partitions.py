"""Time partitions of the store: created ahead of need, dropped whole by retention.

`snapshot` and `statement_stat` are range-partitioned by the snapshot time with the same
bounds, recorded in ``pgarchitect.time_partition``. Bounds are multiples of the partition
interval counted from the Unix epoch (a daily interval gives UTC days). A partition is
created as a plain table and then attached, which locks the parent only in SHARE UPDATE
EXCLUSIVE mode (ingest and audits go on meanwhile). Dropping a partition needs an exclusive
lock on the parent; it is tried under a short lock timeout and simply left for the next
snapshot when a long reader holds the table.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.partitions")

Conn = psycopg.Connection[Any]
PARENTS = ("snapshot", "statement_stat")
SCHEMA = "pgarchitect_partitions"
# Serialises partition maintenance across analyzer replicas (hashtext is not stable across
# versions; a constant is).
LOCK_KEY = 0x7067_6172_0004
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Partition:
    """One time slice of a partitioned table."""

    parent: str
    name: str
    lower: datetime
    upper: datetime


def slot(at: datetime, interval: float) -> tuple[datetime, datetime]:
    """The aligned [lower, upper) range of the given interval that holds `at`."""
    n = math.floor((at - _EPOCH).total_seconds() / interval)
    lower = _EPOCH + timedelta(seconds=n * interval)
    return lower, lower + timedelta(seconds=interval)


def partition_name(parent: str, lower: datetime) -> str:
    """The partition's table name, from its parent and lower bound (UTC)."""
    return f"{parent}_p{lower.astimezone(UTC):%Y%m%dT%H%M%S}"


def existing(conn: Conn, parent: str = "snapshot") -> list[Partition]:
    """The recorded partitions of `parent`, oldest first."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT parent, name, lower_bound, upper_bound"
        " FROM pgarchitect.time_partition WHERE parent = %s ORDER BY lower_bound", (parent,),
    ).fetchall()
    return [Partition(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]


def lower_bound_at(conn: Conn, at: datetime) -> datetime | None:
    """The start of the partition that holds `at` (None: no partition does)."""
    row = conn.execute(
        "/* pgarchitect */ SELECT lower_bound FROM pgarchitect.time_partition"
        " WHERE parent = 'snapshot' AND lower_bound <= %s AND upper_bound > %s"
        " ORDER BY lower_bound DESC LIMIT 1", (at, at),
    ).fetchone()
    return None if row is None else row[0]


def gaps(covered: list[tuple[datetime, datetime]], lower: datetime,
         upper: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of [lower, upper) that no range in `covered` holds."""
    out: list[tuple[datetime, datetime]] = []
    cursor = lower
    for lo, hi in sorted(covered):
        if hi <= cursor or lo >= upper:
            continue
        if lo > cursor:
            out.append((cursor, min(lo, upper)))
        cursor = max(cursor, hi)
        if cursor >= upper:
            break
    if cursor < upper:
        out.append((cursor, upper))
    return out


def ensure(conn: Conn, at: datetime, interval: float, ahead: int = 2) -> datetime:
    """Create the partitions holding `at` and the `ahead` intervals after it; returns the end
    of the time now covered without a gap from `at`.

    Runs in its own transaction (a savepoint inside the caller's, whose commit then releases
    the maintenance lock).
    """
    lower, _ = slot(at, interval)
    _, upper = slot(lower + timedelta(seconds=interval * ahead), interval)
    created = []
    with conn.transaction():
        conn.execute("/* pgarchitect */ SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        have = [(p.lower, p.upper) for p in existing(conn)]
        for lo, hi in gaps(have, lower, upper):
            # Split a gap at the interval's own boundaries, so a changed interval still
            # yields aligned partitions after the ones that exist.
            cursor = lo
            while cursor < hi:
                end = min(slot(cursor, interval)[1], hi)
                for parent in PARENTS:
                    _create(conn, parent, cursor, end)
                created.append(cursor)
                cursor = end
        covered = at
        for lo, hi in sorted(have + [(c, slot(c, interval)[1]) for c in created]):
            if lo <= covered < hi:
                covered = hi
    if created:
        log.info(event("partitions.created", count=len(created),
                       first=created[0].isoformat(), until=covered.isoformat()))
    return covered


def _create(conn: Conn, parent: str, lower: datetime, upper: datetime) -> None:
    name = partition_name(parent, lower)
    table = sql.Identifier(SCHEMA, name)
    conn.execute(sql.SQL(
        "/* pgarchitect */ CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ).format(table, sql.Identifier("pgarchitect", parent)))
    conn.execute(sql.SQL(
        "/* pgarchitect */ ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})"
    ).format(sql.Identifier("pgarchitect", parent), table, sql.Literal(lower),
             sql.Literal(upper)))
    conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.time_partition"
        " (parent, name, lower_bound, upper_bound) VALUES (%s, %s, %s, %s)",
        (parent, name, lower, upper),
    )


def drop_expired(conn: Conn, retention: float, lock_timeout: float = 1.0) -> int:
    """Drop the partitions wholly older than the retention; returns how many time slices went.

    A slice whose lock is not granted within `lock_timeout` stays for the next call.
    """
    dropped = 0
    rows = conn.execute(
        "/* pgarchitect */ SELECT lower_bound FROM pgarchitect.time_partition"
        " WHERE parent = 'snapshot' AND upper_bound <= now() - make_interval(secs => %s)"
        " ORDER BY lower_bound", (retention,),
    ).fetchall()
    for (lower,) in rows:
        try:
            with conn.transaction():
                conn.execute("/* pgarchitect */ SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                conn.execute(sql.SQL("/* pgarchitect */ SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{max(int(lock_timeout * 1000), 1)}ms")))
                names = conn.execute(
                    "/* pgarchitect */ DELETE FROM pgarchitect.time_partition"
                    " WHERE lower_bound = %s RETURNING name", (lower,),
                ).fetchall()
                for (name,) in names:
                    conn.execute(sql.SQL("/* pgarchitect */ DROP TABLE IF EXISTS {}").format(
                        sql.Identifier(SCHEMA, str(name))))
        except psycopg.errors.LockNotAvailable:
            log.info(event("partitions.drop_deferred", lower=lower.isoformat(),
                           reason="lock timeout"))
            break
        dropped += 1
    if dropped:
        log.info(event("partitions.dropped", count=dropped))
    return dropped
