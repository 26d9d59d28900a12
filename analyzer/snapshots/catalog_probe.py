"""One cheap query that says whether a target's catalog structure may have changed.

A snapshot needs the target's catalog for two things: to store a new catalog row when the
**structure** changed (`Catalog.structure()`: the indexes with their definitions and
validity, each table's last ANALYZE, the plan settings, the database's statistics reset), and
to see which recommended indexes exist (`observe_applied`: the same index list). Reading it in
full costs several queries with `pg_get_indexdef` and a size per relation; the probe is one
query that returns a digest of what the structure is made of:

- per index on a user table: its oid, its table, `indisvalid`/`indisready`, and the `xmin` of
  its `pg_index` row, of its and its table's `pg_class` rows and of the schema's
  `pg_namespace` row (a rename or any other catalog update changes an `xmin`);
- per index, the `xmin` of the `pg_attribute` rows of its key columns (a column renamed or
  retyped changes the printed definition);
- per user table: its oid, its `pg_class` `xmin`, `last_analyze` and `last_autoanalyze`;
- the plan settings' values, and `pg_stat_database.stats_reset` of the database.

"Changed" therefore means: the structure may differ from the last full read. Traffic does
not change the digest: the table write counters, scans, live/dead tuples and sizes a full
read also carries are **not** part of it, so while the digest stays the same the snapshot
reuses the last full read (its structure is the target's; its counters are those of that
read, which is also what the stored catalog rows hold: they are written only when the
structure changed). Callers that need current counters ask for a fresh read
(`take_snapshot(fresh_catalog=True)`; an audit uses a new writer, which has no earlier read).
A change the digest cannot see — a column renamed that only an index expression or
predicate uses, a function renamed that an expression index prints — waits
for the next change it does see, or for the next fresh read. The rare false "changed" (an
`ALTER TABLE` that rewrote a catalog row without changing the structure) costs one full read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from analyzer.snapshots.catalog import PLAN_SETTINGS, Catalog
from analyzer.snapshots.own import register_own

_USER = ("n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
         " AND n.nspname NOT LIKE 'pg_temp%%'")

PROBE = f"""/* pgarchitect */
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(',', i.indexrelid, i.indrelid, i.indisvalid, i.indisready,
                               i.xmin, c.xmin, t.xmin, n.xmin,
                               (SELECT string_agg(a.xmin::text, ',') FROM pg_attribute a
                                WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))),
                     ';' ORDER BY i.indexrelid)
   FROM pg_index i
   JOIN pg_class c ON c.oid = i.indexrelid
   JOIN pg_class t ON t.oid = i.indrelid
   JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE {_USER} AND t.relkind IN ('r', 'm', 'p')),
  (SELECT string_agg(concat_ws(',', c.oid, c.xmin, pg_stat_get_last_analyze_time(c.oid),
                               pg_stat_get_last_autoanalyze_time(c.oid)), ';' ORDER BY c.oid)
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {_USER} AND c.relkind IN ('r', 'm', 'p')),
  (SELECT string_agg(concat_ws('=', name, current_setting(name, true)), ';')
   FROM unnest(%s::text[]) AS name),
  (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())))
"""
register_own(PROBE)


def probe(conn: psycopg.Connection[Any], settings: Sequence[str] = PLAN_SETTINGS) -> str | None:
    """The digest of the target's catalog structure now; None when it cannot be read (the
    caller then reads the catalog in full, which logs why)."""
    try:
        with conn.transaction(force_rollback=True):
            row = conn.execute(PROBE, (list(settings),)).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class Seen:
    """A target's last full catalog read: its digest, the catalog, and the id of the newest
    stored catalog row it was compared with (another writer's newer row means a re-check)."""

    digest: str
    catalog: Catalog
    stored_id: int | None
