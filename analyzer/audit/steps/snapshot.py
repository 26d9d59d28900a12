"""The snapshot step: one snapshot of the target, then the recommendations its catalog shows
applied or reverted. The CLI's `snapshot`, the service's snapshot jobs and every audit take
their snapshots through `snapshot_and_observe`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from analyzer import lifecycle, verify
from analyzer.snapshots.source import StatementSource
from analyzer.snapshots.take import SnapshotResult, take_snapshot
from analyzer.store.connection import Conn
from analyzer.store.writer import StatementWriter
from pgarchitect.config import AnalyzerSettings


@dataclass(frozen=True)
class Observed:
    """A snapshot and the status changes its catalog showed."""

    snapshot: SnapshotResult
    changes: tuple[lifecycle.Change, ...]


def observe_applied(store: Conn, target: str, snap: SnapshotResult
                    ) -> tuple[lifecycle.Change, ...]:
    """Recommendations applied or reverted on the target, as this snapshot's catalog shows;
    recorded at the snapshot's time (its own transaction: it is part of the snapshot)."""
    valid = {i.qualified_name: i.definition for i in snap.catalog.indexes if i.valid}
    with store.transaction():
        changes = verify.observe_catalog(store, target, valid, at=snap.snapshot.taken_at)
    return tuple(changes)


def snapshot_and_observe(tconn: psycopg.Connection[Any], store: Conn, target: str,
                         settings: AnalyzerSettings,
                         writer: StatementWriter | None = None) -> Observed:
    """Take one snapshot of `target` (committed), then observe what its catalog shows.

    `writer` keeps the target's last state between snapshots (a new one reads it back)."""
    snap = take_snapshot(StatementSource(tconn, settings.all_databases), store, target,
                         settings.retention, writer or StatementWriter.for_settings(settings))
    return Observed(snap, observe_applied(store, target, snap))
