"""One snapshot: read the target (statements and, when its structure may have changed, the
catalog), fetch texts the store lacks, write it all in one transaction (the catalog row
only when its structure changed).

The log line `snapshot.taken` gives the time of each phase in seconds: `fetch` (the view,
the texts the store lacks), `compare` (with the previous state), `write` (the store), and
`catalog` (the probe, and the full read when the probe says the structure may have changed;
analyzer/snapshots/catalog_probe.py says what "changed" means).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter

from analyzer.snapshots import catalog_probe
from analyzer.snapshots.catalog import Catalog, read_catalog
from analyzer.snapshots.model import STAT_COLUMNS, SnapshotMeta, StatementText
from analyzer.snapshots.own import is_own, is_own_entry, own_role, statement_fingerprint
from analyzer.snapshots.source import StatementSource
from analyzer.store import catalogs, partitions, snapshots
from analyzer.store.connection import Conn
from analyzer.store.writer import StatementWriter
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.snapshot")

_TEXT_KEY = itemgetter(0, 4)  # (dbid, queryid) of a row: how texts are keyed
_USERID = STAT_COLUMNS.index("userid")  # where a row holds its userid


@dataclass(frozen=True)
class SnapshotResult:
    """What one snapshot wrote."""

    snapshot: SnapshotMeta
    server_version: str
    server_version_num: int
    statements: int
    own_skipped: int
    new_texts: int
    pruned: int
    duration_seconds: float
    catalog: Catalog = field(default_factory=Catalog)  # the target's catalog at this snapshot
    catalog_stored: bool = False  # its structure differed from the last stored one
    stored: int = 0                # statement rows written (changed ones, or all at a checkpoint)
    checkpoint: str | None = None  # why every statement was stored, if it was
    skipped: bool = False          # a racing snapshot read later had already been stored
    catalog_read: bool = True      # read in full (False: the probe saw no change)
    phases: Mapping[str, float] = field(default_factory=dict)  # seconds: fetch, compare, ...


def take_snapshot(
    source: StatementSource, store: Conn, target: str, retention_seconds: float,
    writer: StatementWriter | None = None, fresh_catalog: bool = False,
) -> SnapshotResult:
    """Read `source` and store one snapshot of `target`; partitions beyond retention go.

    Pass the same `writer` to successive snapshots to keep each target's last state (and
    its last catalog read) in memory. `fresh_catalog`: read the catalog in full whatever the
    probe says (for current table counters; a new writer has no earlier read anyway).
    """
    started = time.perf_counter()
    writer = writer if writer is not None else StatementWriter()
    read_at = snapshots.store_clock(store)
    reading = source.read()
    rows = reading.rows
    known = writer.known_texts(store, target)
    pairs = list(map(_TEXT_KEY, rows))
    missing = {queryid for _, queryid in set(pairs).difference(known)}
    fetched = source.texts(missing) if missing else {}
    new_texts: list[StatementText] = []
    for (dbid, queryid), query in fetched.items():
        if (dbid, queryid) in known:
            continue
        fp = statement_fingerprint(query, queryid)
        own = is_own(query, fp)
        new_texts.append(StatementText(dbid, queryid, query, fp, own))
        known[(dbid, queryid)] = (fp, own)
    # Statements whose text vanished before we asked (evicted meanwhile) are kept: their
    # counters are still real; they are simply analysed without a fingerprint.
    # An entry is ours when our role ran it and its text looks like ours (snapshots/own.py).
    role = own_role(source.conn)
    owned = {key for key, (_, mine) in known.items() if mine}
    kept = ([row for row, pair in zip(rows, pairs, strict=True)
             if not is_own_entry(row[_USERID], pair in owned, role)]
            if owned and role is not None else rows)
    fetched_at = time.perf_counter()

    seen = writer.catalogs.get(target)
    digest = catalog_probe.probe(source.conn)
    reuse = (not fresh_catalog and seen is not None and digest is not None
             and seen.digest == digest and catalogs.latest_id(store, target)
             == seen.stored_id)
    catalog = seen.catalog if reuse and seen is not None else read_catalog(source.conn)
    catalog_seconds = time.perf_counter() - fetched_at
    catalog_stored = False

    def store_catalog(snap: SnapshotMeta) -> None:
        # In the snapshot's transaction: a snapshot is never committed without its catalog.
        nonlocal catalog_stored
        if not reuse:
            catalog_stored = catalogs.store_if_changed(store, target, snap, catalog)
            if digest is not None:
                writer.catalogs[target] = catalog_probe.Seen(
                    digest, catalog, catalogs.latest_id(store, target))
        catalogs.prune(store, target, retention_seconds)

    writing = time.perf_counter()
    written = writer.write(store, target, reading, read_at, new_texts, kept, store_catalog)
    snap = written.snapshot
    pruned = partitions.drop_expired(store, retention_seconds)
    done = time.perf_counter()
    phases = {"fetch": fetched_at - started, "compare": written.compare_seconds,
              "write": done - writing - written.compare_seconds, "catalog": catalog_seconds}
    result = SnapshotResult(
        snapshot=snap, server_version=reading.server_version,
        server_version_num=reading.server_version_num, statements=len(kept),
        own_skipped=len(rows) - len(kept), new_texts=len(new_texts),
        pruned=pruned, duration_seconds=done - started, catalog=catalog,
        catalog_stored=catalog_stored, catalog_read=not reuse,
        stored=written.stored, checkpoint=written.checkpoint, skipped=written.skipped,
        phases=phases,
    )
    log.info(event("snapshot.taken", target=target, id=snap.id, statements=len(kept),
                   stored=written.stored, checkpoint=written.checkpoint or "",
                   skipped=written.skipped,
                   own_skipped=result.own_skipped, new_texts=len(new_texts), pruned=pruned,
                   catalog_read=not reuse, catalog_stored=catalog_stored,
                   **{name: round(seconds, 4) for name, seconds in phases.items()},
                   seconds=round(result.duration_seconds, 3)))
    return result
