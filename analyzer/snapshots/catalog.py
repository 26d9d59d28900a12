"""The target's catalog as the analyzer sees it: indexes, per-table counters, plan settings.

Read with three small queries on the analyzer's own (read-only) connection. The values are
frozen and JSON-serialisable, so the store can keep one copy per change and an audit can diff
two of them to attribute a regression's cause (an index dropped, a table analysed, a setting
changed) or to see a recommended index appear on the target.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from analyzer.names import qualified
from analyzer.snapshots.own import register_own
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.catalog")

# Settings that change plans; their values decide between index and sequential scans, sorts
# in memory or on disk, hash or nested-loop joins.
PLAN_SETTINGS = (
    "work_mem", "hash_mem_multiplier", "random_page_cost", "seq_page_cost",
    "effective_cache_size", "effective_io_concurrency", "cpu_tuple_cost",
    "cpu_index_tuple_cost", "cpu_operator_cost", "default_statistics_target",
    "from_collapse_limit", "join_collapse_limit", "plan_cache_mode", "jit",
    "max_parallel_workers_per_gather", "enable_seqscan", "enable_indexscan",
    "enable_indexonlyscan", "enable_bitmapscan", "enable_hashjoin", "enable_mergejoin",
    "enable_nestloop", "enable_sort", "enable_hashagg", "enable_material",
    "enable_partitionwise_join", "shared_buffers",
)


@dataclass(frozen=True)
class IndexInfo:
    """One index on a user table."""

    schema: str
    table: str
    name: str
    definition: str  # pg_get_indexdef, as PostgreSQL prints it
    columns: tuple[str, ...]  # key columns in order, as printed (lower(email)), no ASC/DESC
    include: tuple[str, ...]  # INCLUDE columns
    method: str  # btree, hash, gin, …
    predicate: str | None  # partial index WHERE clause, as printed
    valid: bool
    unique: bool
    primary: bool
    constraint: bool  # backs a PRIMARY KEY, UNIQUE or EXCLUDE constraint
    scans: int
    size_bytes: int

    @property
    def qualified_table(self) -> str:
        """`schema.table`, printed (analyzer/names.py: quoted where needed)."""
        return qualified(self.schema, self.table)

    @property
    def qualified_name(self) -> str:
        """`schema.index`, printed."""
        return qualified(self.schema, self.name)


@dataclass(frozen=True)
class TableInfo:
    """Write and maintenance counters of one user table."""

    schema: str
    name: str
    live_tuples: int
    dead_tuples: int
    inserts: int
    updates: int
    deletes: int
    hot_updates: int
    mod_since_analyze: int
    seq_scans: int
    index_scans: int
    reltuples: float
    size_bytes: int
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    last_vacuum: datetime | None
    last_autovacuum: datetime | None

    @property
    def qualified(self) -> str:
        """`schema.table`, printed (analyzer/names.py: quoted where needed)."""
        return qualified(self.schema, self.name)

    @property
    def last_analyzed(self) -> datetime | None:
        """The later of the manual and automatic ANALYZE."""
        seen = [t for t in (self.last_analyze, self.last_autoanalyze) if t is not None]
        return max(seen) if seen else None


@dataclass(frozen=True)
class Catalog:
    """What one read of the target's catalog found."""

    indexes: tuple[IndexInfo, ...] = ()
    tables: tuple[TableInfo, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    stats_reset: datetime | None = None  # pg_stat_database.stats_reset of this database

    def index(self, qualified_name: str) -> IndexInfo | None:
        """The index `schema.name`, if present."""
        return next((i for i in self.indexes if i.qualified_name == qualified_name), None)

    def table(self, qualified: str) -> TableInfo | None:
        """The table `schema.name`, if present."""
        return next((t for t in self.tables if t.qualified == qualified), None)

    def indexes_on(self, qualified_table: str) -> tuple[IndexInfo, ...]:
        """The indexes of one table."""
        return tuple(i for i in self.indexes if i.qualified_table == qualified_table)

    def structure(self) -> dict[str, Any]:
        """The part that changes only with DDL, ANALYZE or configuration (not with traffic).

        Two reads with the same structure need not both be stored: counters are kept with the
        first and refreshed only when the structure changes or the caller asks for it.
        """
        return {
            "indexes": sorted([i.schema, i.name, i.definition, i.valid] for i in self.indexes),
            "analyzed": sorted([t.schema, t.name, _iso(t.last_analyzed) or ""]
                               for t in self.tables),
            "settings": dict(sorted(self.settings.items())),
            "stats_reset": _iso(self.stats_reset),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form; `from_json` reads it back."""
        return {
            "indexes": [asdict(i) for i in self.indexes],
            "tables": [{k: _iso(v) if isinstance(v, datetime) else v
                        for k, v in asdict(t).items()} for t in self.tables],
            "settings": dict(self.settings),
            "stats_reset": _iso(self.stats_reset),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalog:
        """The inverse of `to_json`."""
        indexes = tuple(
            IndexInfo(**{**i, "columns": tuple(i["columns"]), "include": tuple(i["include"])})
            for i in data.get("indexes", ()))
        tables = []
        for t in data.get("tables", ()):
            fields: dict[str, Any] = {k: _parse(v) if k.startswith("last_") else v
                                      for k, v in t.items()}
            tables.append(TableInfo(**fields))
        return cls(indexes=indexes, tables=tuple(tables), settings=dict(data.get("settings", {})),
                   stats_reset=_parse(data.get("stats_reset")))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class CatalogChange:
    """One structural difference between two catalog reads."""

    kind: str  # index_dropped | index_created | index_invalid | analyzed | setting_changed
    #            | stats_reset
    object: str  # schema.index, schema.table, or the setting's name
    definition: str | None = None  # the index's definition (dropped, created, invalid)
    table: str | None = None  # schema.table the change concerns, where there is one
    before: str | None = None  # setting_changed: old value
    after: str | None = None  # setting_changed: new value


def diff(before: Catalog, after: Catalog) -> tuple[CatalogChange, ...]:
    """What changed structurally from `before` to `after`, in a stable order."""
    changes: list[CatalogChange] = []
    old = {i.qualified_name: i for i in before.indexes}
    new = {i.qualified_name: i for i in after.indexes}
    for name in sorted(old.keys() - new.keys()):
        i = old[name]
        changes.append(CatalogChange("index_dropped", name, i.definition, i.qualified_table))
    for name in sorted(new.keys() - old.keys()):
        i = new[name]
        kind = "index_created" if i.valid else "index_invalid"
        changes.append(CatalogChange(kind, name, i.definition, i.qualified_table))
    for name in sorted(old.keys() & new.keys()):
        a, b = old[name], new[name]
        if a.definition != b.definition:
            changes.append(CatalogChange("index_dropped", name, a.definition, a.qualified_table))
            changes.append(CatalogChange("index_created", name, b.definition, b.qualified_table))
        elif a.valid and not b.valid:
            changes.append(CatalogChange("index_invalid", name, b.definition, b.qualified_table))
        elif not a.valid and b.valid:
            changes.append(CatalogChange("index_created", name, b.definition, b.qualified_table))
    old_tables = {t.qualified: t for t in before.tables}
    for t in after.tables:
        prev = old_tables.get(t.qualified)
        if prev is not None and t.last_analyzed is not None and (
                prev.last_analyzed is None or t.last_analyzed > prev.last_analyzed):
            changes.append(CatalogChange("analyzed", t.qualified, table=t.qualified,
                                         after=t.last_analyzed.isoformat()))
    for name in sorted(before.settings.keys() & after.settings.keys()):
        if before.settings[name] != after.settings[name]:
            changes.append(CatalogChange("setting_changed", name,
                                         before=before.settings[name],
                                         after=after.settings[name]))
    if after.stats_reset is not None and after.stats_reset != before.stats_reset:
        changes.append(CatalogChange("stats_reset", "pg_stat_database",
                                     after=after.stats_reset.isoformat()))
    return tuple(changes)


INDEXES = """/* pgarchitect */
SELECT n.nspname, t.relname, c.relname, pg_get_indexdef(i.indexrelid),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(i.indnkeyatts + 1, i.indnatts) AS k ORDER BY k),
       am.amname, pg_get_expr(i.indpred, i.indrelid, true),
       i.indisvalid AND i.indisready, i.indisunique, i.indisprimary,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                                               AND k.contype IN ('p', 'u', 'x')),
       coalesce(s.idx_scan, 0), pg_relation_size(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%%' AND t.relkind IN ('r', 'm', 'p')
ORDER BY 1, 2, 3
"""

TABLES = """/* pgarchitect */
SELECT s.schemaname, s.relname, s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd,
       s.n_tup_del, s.n_tup_hot_upd, s.n_mod_since_analyze, coalesce(s.seq_scan, 0),
       coalesce(s.idx_scan, 0), c.reltuples, pg_table_size(s.relid),
       s.last_analyze, s.last_autoanalyze, s.last_vacuum, s.last_autovacuum
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
ORDER BY 1, 2
"""

SETTINGS = """/* pgarchitect */
SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s::text[])
"""

STATS_RESET = """/* pgarchitect */
SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()
"""
register_own(INDEXES, TABLES, SETTINGS, STATS_RESET)


def _table(r: Sequence[Any]) -> TableInfo:
    n = [int(v or 0) for v in r[2:11]]
    return TableInfo(r[0], r[1], live_tuples=n[0], dead_tuples=n[1], inserts=n[2],
                     updates=n[3], deletes=n[4], hot_updates=n[5], mod_since_analyze=n[6],
                     seq_scans=n[7], index_scans=n[8], reltuples=float(r[11] or 0),
                     size_bytes=int(r[12] or 0), last_analyze=r[13], last_autoanalyze=r[14],
                     last_vacuum=r[15], last_autovacuum=r[16])


def read_catalog(conn: psycopg.Connection[Any], settings: Sequence[str] = PLAN_SETTINGS
                 ) -> Catalog:
    """The target's catalog now; a part that cannot be read (privileges) is left empty."""
    indexes: tuple[IndexInfo, ...] = ()
    tables: tuple[TableInfo, ...] = ()
    values: dict[str, str] = {}
    reset: datetime | None = None
    try:
        with conn.transaction(force_rollback=True):
            indexes = tuple(
                IndexInfo(r[0], r[1], r[2], r[3], tuple(r[4]), tuple(r[5]), r[6], r[7],
                          bool(r[8]), bool(r[9]), bool(r[10]), bool(r[11]), int(r[12]),
                          int(r[13]))
                for r in conn.execute(INDEXES).fetchall())
            tables = tuple(_table(r) for r in conn.execute(TABLES).fetchall())
            values = {str(r[0]): str(r[1])
                      for r in conn.execute(SETTINGS, (list(settings),)).fetchall()}
            row = conn.execute(STATS_RESET).fetchone()
            reset = row[0] if row else None
    except psycopg.Error as exc:
        log.warning(event("catalog.read_failed", reason=first_line(exc)))
    return Catalog(indexes=indexes, tables=tables, settings=values, stats_reset=reset)
