"""Snapshots written as changed rows plus checkpoints (analyzer/snapshots/changes.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg.rows import args_row

from analyzer.snapshots.catalog_probe import Seen
from analyzer.snapshots.changes import Previous, after, plan
from analyzer.snapshots.model import Row, SnapshotMeta, StatementText, TargetReading
from analyzer.store import partitions
from analyzer.store.connection import Conn
from analyzer.store.locks import lock_target_writes
from analyzer.store.snapshots import insert_snapshot, known_texts, load_counters
from pgarchitect.config import AnalyzerSettings


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
            lock_target_writes(conn, target)
            with conn.cursor(row_factory=args_row(SnapshotMeta)) as cur:
                latest = cur.execute(
                    "/* pgarchitect */ SELECT id, taken_at, stats_reset, dealloc"
                    " FROM pgarchitect.snapshot WHERE target = %s"
                    " ORDER BY taken_at DESC, id DESC LIMIT 1", (target,),
                ).fetchone()
            if latest is not None and latest.taken_at >= read_at:
                return Written(latest, 0, None, skipped=True)
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
                     latest: SnapshotMeta | None) -> Previous | None:
        if latest is None:
            self._previous.pop(target, None)
            return None
        cached = self._previous.get(target)
        if cached is not None and cached.snapshot_id == latest.id:
            return cached
        row = conn.execute(
            "/* pgarchitect */ SELECT max(taken_at) FROM pgarchitect.snapshot"
            " WHERE target = %s AND is_checkpoint", (target,),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        state = {key: c.as_row() for key, c in load_counters(conn, latest.id).items()}
        return Previous(latest.id, latest.taken_at, latest.stats_reset, latest.dealloc, row[0],
                        state)
