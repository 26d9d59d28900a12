"""What the target says about the relations a statement names: views, partitions, columns.

Read on the analyzer's held (read-only) target session with two small catalog queries: each
name resolved through the session's search_path to its relation, kind, view definition
(`pg_get_viewdef`), partition root and size (a partitioned table: the sum of its leaf
partitions); each relation's columns with their type and collation; the installed extensions.
Names inside view definitions are read too, so nested views reach their base tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.parser import ParseError

from analyzer.names import qualified, split_qualified
from analyzer.snapshots.own import register_own
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.recommend")

MAX_VIEW_DEPTH = 8  # views of views of ... read this deep at most
# Collations under which a plain btree serves LIKE 'prefix%' (byte order).
C_COLLATIONS = {"C", "POSIX", "ucs_basic"}

RELATIONS = """/* pgarchitect */
SELECT k.name, n.nspname, c.relname, c.relkind::text, c.oid,
       CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid, true) END,
       root.nsp, root.rel,
       CASE WHEN c.relkind = 'p' THEN (
           SELECT coalesce(sum(pg_table_size(t.relid)), 0)::bigint
           FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
            ELSE pg_table_size(c.oid) END,
       CASE WHEN c.relkind = 'p' THEN (
           SELECT coalesce(sum(greatest(rc.reltuples, 0)), 0)::float8
           FROM pg_partition_tree(c.oid) t JOIN pg_class rc ON rc.oid = t.relid
           WHERE t.isleaf)
            ELSE greatest(c.reltuples, 0)::float8 END
FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(name, nsp, rel)
JOIN pg_class c ON c.oid = to_regclass(CASE WHEN k.nsp IS NULL THEN quote_ident(k.rel)
                                            ELSE quote_ident(k.nsp) || '.' || quote_ident(k.rel)
                                       END)
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT rn.nspname AS nsp, rc.relname AS rel FROM pg_class rc
    JOIN pg_namespace rn ON rn.oid = rc.relnamespace
    WHERE c.relispartition AND rc.oid = pg_partition_root(c.oid)) root ON true
"""

COLUMNS = """/* pgarchitect */
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod),
       t.typcategory::text,
       CASE WHEN a.attcollation = 0 THEN NULL
            WHEN co.collname = 'default' THEN
                 CASE WHEN coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c'
                      THEN d.datcollate ELSE 'icu' END
            ELSE co.collname END
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
JOIN pg_database d ON d.datname = current_database()
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid = ANY(%s::oid[])
"""

EXTENSIONS = "/* pgarchitect */ SELECT extname FROM pg_extension"
register_own(RELATIONS, COLUMNS, EXTENSIONS)


@dataclass(frozen=True)
class Column:
    """One column: its type as printed, type category, collation (None: not collatable)."""

    type: str
    category: str  # pg_type.typcategory: S string, A array, U user (jsonb, tsvector), ...
    collation: str | None = None

    @property
    def byte_ordered(self) -> bool:
        """Whether a plain btree on it serves LIKE 'prefix%' (a C collation)."""
        return self.collation in C_COLLATIONS

    @property
    def pattern_ops(self) -> str:
        """The btree operator class for LIKE 'prefix%' under a non-C collation."""
        if self.type.startswith("character varying"):
            return "varchar_pattern_ops"
        if self.type.startswith("character"):
            return "bpchar_pattern_ops"
        return "text_pattern_ops"


@dataclass(frozen=True)
class Relation:
    """One relation a statement (or a view it reads) names."""

    name: str  # schema.relation, printed (analyzer/names.py)
    kind: str  # table | view | matview | partitioned | foreign | other
    definition: str | None = None  # a view's SELECT
    root: str | None = None  # a partition's partitioned root table
    size_bytes: int = 0  # a partitioned table: its leaf partitions together
    rows: float = 0.0
    columns: Mapping[str, Column] = field(default_factory=dict)


_KINDS = {"r": "table", "v": "view", "m": "matview", "p": "partitioned", "f": "foreign"}


@dataclass(frozen=True)
class Relations:
    """The relations of a set of statements, by schema-qualified name, and how to find them."""

    by_name: Mapping[str, Relation] = field(default_factory=dict)
    resolved: Mapping[str, str] = field(default_factory=dict)  # as written -> schema.relation
    extensions: frozenset[str] = frozenset()

    def get(self, name: str) -> Relation | None:
        """The relation `name` (as written or qualified), if known."""
        return self.by_name.get(self.resolved.get(name, name))

    def columns_of(self) -> dict[str, frozenset[str]]:
        """Each relation's column names."""
        return {n: frozenset(r.columns) for n, r in self.by_name.items()}

    def tables(self) -> list[str]:
        """The relations an index can be put on (tables, partitioned tables, matviews)."""
        return sorted(n for n, r in self.by_name.items()
                      if r.kind in ("table", "partitioned", "matview"))


def view_names(definition: str) -> list[str]:
    """The relation names a view's definition reads, as written."""
    try:
        stmts = parse_sql(definition)
    except (ParseError, ValueError):
        return []
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, tuple | list):
            for item in node:
                walk(item)
        elif isinstance(node, ast.RangeVar):
            out.append(qualified(str(node.schemaname) if node.schemaname else None,
                                 str(node.relname)))
        elif isinstance(node, ast.Node):
            for slot in getattr(type(node), "__slots__", ()):
                walk(getattr(node, slot, None))

    walk([s.stmt for s in stmts])
    return out


def read_relations(conn: psycopg.Connection[Any], names: Iterable[str]) -> Relations:
    """The relations these names (and the views among them, to any depth) are."""
    by_name: dict[str, Relation] = {}
    resolved: dict[str, str] = {}
    oids: dict[str, int] = {}
    rows_of: dict[str, tuple[Any, ...]] = {}
    wanted = sorted(set(names))
    try:
        for _ in range(MAX_VIEW_DEPTH):
            wanted = [n for n in wanted if n not in resolved]
            if not wanted:
                break
            parts = [split_qualified(n) for n in wanted]
            more: list[str] = []
            for r in conn.execute(RELATIONS, (wanted, [p[0] for p in parts],
                                              [p[1] for p in parts])).fetchall():
                name = qualified(str(r[1]), str(r[2]))
                resolved[str(r[0])] = name
                if name not in rows_of:
                    root = None if r[6] is None else qualified(str(r[6]), str(r[7]))
                    rows_of[name] = (r[3], r[5], root, r[8], r[9])
                    oids[name] = int(r[4])
                    if r[5]:
                        more += view_names(str(r[5]))
            wanted = sorted(set(more))
        names_of = {oid: name for name, oid in oids.items()}
        columns: dict[str, dict[str, Column]] = {}
        for r in conn.execute(COLUMNS, (sorted(oids.values()),)).fetchall():
            columns.setdefault(names_of[int(r[0])], {})[str(r[1])] = Column(
                str(r[2]), str(r[3]), None if r[4] is None else str(r[4]))
        extensions = frozenset(str(r[0]) for r in conn.execute(EXTENSIONS).fetchall())
    except psycopg.Error as exc:
        log.warning(event("recommend.relations_failed", reason=first_line(exc)))
        return Relations()
    for name, (kind, definition, root, size, rows) in rows_of.items():
        by_name[name] = Relation(name, _KINDS.get(str(kind), "other"),
                                 None if definition is None else str(definition),
                                 None if root is None or root == name else root,
                                 int(size or 0), float(rows or 0.0), columns.get(name, {}))
    return Relations(by_name, resolved, extensions)
