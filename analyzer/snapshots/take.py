"""One snapshot: read the target (statements and catalog), fetch texts the store lacks, write
it all in one transaction (the catalog only when its structure changed)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from analyzer.snapshots.catalog import Catalog, read_catalog
from analyzer.snapshots.model import SnapshotMeta, StatementText
from analyzer.snapshots.own import is_own, is_own_entry, own_role, statement_fingerprint
from analyzer.snapshots.source import StatementSource
from analyzer.store import catalogs, partitions, snapshots
from analyzer.store.connection import Conn
from analyzer.store.writer import StatementWriter
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.snapshot")


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


def take_snapshot(
    source: StatementSource, store: Conn, target: str, retention_seconds: float,
    writer: StatementWriter | None = None,
) -> SnapshotResult:
    """Read `source` and store one snapshot of `target`; partitions beyond retention go.

    Pass the same `writer` to successive snapshots to keep each target's last state in memory.
    """
    started = time.perf_counter()
    writer = writer if writer is not None else StatementWriter()
    read_at = snapshots.store_clock(store)
    reading = source.read()
    catalog = read_catalog(source.conn)
    known = writer.known_texts(store, target)
    missing = {s.queryid for s in reading.statements if (s.dbid, s.queryid) not in known}
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
    role = own_role(source.conn)
    kept = [s for s in reading.statements if not is_own_entry(
        s.userid, known.get((s.dbid, s.queryid), ("", False))[1], role)]
    written = writer.write(store, target, reading, read_at, new_texts, kept)
    snap = written.snapshot
    pruned = partitions.drop_expired(store, retention_seconds)
    with store.transaction():
        catalog_stored = catalogs.store_if_changed(store, target, snap, catalog)
        catalogs.prune(store, target, retention_seconds)
    result = SnapshotResult(
        snapshot=snap, server_version=reading.server_version,
        server_version_num=reading.server_version_num, statements=len(kept),
        own_skipped=len(reading.statements) - len(kept), new_texts=len(new_texts),
        pruned=pruned, duration_seconds=time.perf_counter() - started, catalog=catalog,
        catalog_stored=catalog_stored,
        stored=written.stored, checkpoint=written.checkpoint, skipped=written.skipped,
    )
    log.info(event("snapshot.taken", target=target, id=snap.id, statements=len(kept),
                   stored=written.stored, checkpoint=written.checkpoint or "",
                   skipped=written.skipped,
                   own_skipped=result.own_skipped, new_texts=len(new_texts), pruned=pruned,
                   catalog_stored=catalog_stored,
                   seconds=round(result.duration_seconds, 3)))
    return result
