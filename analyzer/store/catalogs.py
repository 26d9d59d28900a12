"""The store's SQL for catalog snapshots: kept only when the structure changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from analyzer.snapshots.catalog import Catalog
from analyzer.snapshots.model import SnapshotMeta

Conn = psycopg.Connection[Any]


# The target's newest stored catalog row.
_NEWEST = (" FROM pgarchitect.catalog_snapshot WHERE target = %s"
           " ORDER BY taken_at DESC, id DESC LIMIT 1")


def _latest_structure(conn: Conn, target: str) -> Mapping[str, Any] | None:
    row = conn.execute("/* pgarchitect */ SELECT structure" + _NEWEST, (target,)).fetchone()
    return None if row is None else dict(row[0])


def latest_id(conn: Conn, target: str) -> int | None:
    """The id of the target's newest stored catalog row (None: none yet)."""
    row = conn.execute("/* pgarchitect */ SELECT id" + _NEWEST, (target,)).fetchone()
    return None if row is None else int(row[0])


def store_if_changed(conn: Conn, target: str, snap: SnapshotMeta, catalog: Catalog) -> bool:
    """Store `catalog` with `snap` when its structure differs from the last stored one."""
    # Compared as JSON reads it back (tuples become lists).
    structure = json.loads(json.dumps(catalog.structure()))
    if _latest_structure(conn, target) == structure:
        return False
    conn.execute(
        "/* pgarchitect */ INSERT INTO pgarchitect.catalog_snapshot"
        " (target, snapshot_id, taken_at, structure, catalog) VALUES (%s, %s, %s, %s, %s)",
        (target, snap.id, snap.taken_at, Jsonb(structure), Jsonb(catalog.to_json())))
    return True


def prune(conn: Conn, target: str, retention_seconds: float) -> int:
    """Delete catalogs older than the retention, except the newest (the baseline of a diff)."""
    cur = conn.execute(
        "/* pgarchitect */ DELETE FROM pgarchitect.catalog_snapshot WHERE target = %s"
        " AND taken_at < now() - make_interval(secs => %s) AND id <> (SELECT id FROM"
        " pgarchitect.catalog_snapshot WHERE target = %s ORDER BY taken_at DESC, id DESC"
        " LIMIT 1)", (target, retention_seconds, target))
    return int(cur.rowcount)


# The stored catalogs of a span, oldest first: (when it was taken, the catalog).
CatalogHistory = tuple[tuple[datetime, Catalog], ...]


def history(conn: Conn, target: str, since: datetime | None) -> CatalogHistory:
    """The stored catalogs from `since` on, with the last one before it, oldest first."""
    rows = conn.execute(
        "/* pgarchitect */ SELECT taken_at, catalog FROM pgarchitect.catalog_snapshot"
        " WHERE target = %(t)s AND (%(since)s::timestamptz IS NULL OR taken_at >= ("
        "   SELECT coalesce(max(taken_at), '-infinity') FROM pgarchitect.catalog_snapshot"
        "   WHERE target = %(t)s AND taken_at < %(since)s::timestamptz))"
        " ORDER BY taken_at, id", {"t": target, "since": since}).fetchall()
    return tuple((taken_at, Catalog.from_json(catalog)) for taken_at, catalog in rows)
