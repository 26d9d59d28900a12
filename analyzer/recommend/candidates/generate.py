"""Index candidates from the statements' predicates, merged per table (pure).

Each statement's wishes (keys.py) become index keys; candidates of one table whose columns
are a prefix of another's (same method, same partial predicate) are served by the longer
one, so the table gets the fewest indexes that serve its statements, the heaviest (by total
time) first. A dropped index that caused a regression comes back as written in the catalog.
Tables too small to matter, columns with too few distinct values, keys an existing valid
index already serves and predicate shapes no index is made for are left out here, each with
its reason. A partitioned table is sized by its partitions (the index goes on the parent).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from pglast import ast
from pglast.stream import RawStream

from analyzer.names import pair
from analyzer.recommend.candidates.keys import (
    MIN_DISTINCT,
    ColumnStats,
    Wish,
    index_shape,
    is_prefix,
    key,
    normalize,
    parse_index,
    selective,
    sort_direction,
    wishes,
)
from analyzer.recommend.ddl import quote_ident
from analyzer.recommend.model import (
    Candidate,
    DroppedIndex,
    IndexColumn,
    NotProposed,
    StatementEvidence,
)
from analyzer.recommend.predicates import Access, Relations
from analyzer.snapshots.catalog import Catalog, IndexInfo, TableInfo

# A table below both of these is scanned whole faster than an index would be worth keeping.
MIN_TABLE_BYTES = 1024 * 1024
MIN_TABLE_ROWS = 1000
# GIN operator classes that serve what a candidate's default (or named) class serves.
_GIN_SERVES: dict[str | None, set[str | None]] = {
    None: {None, "jsonb_ops", "array_ops", "tsvector_ops"},
    "gin_trgm_ops": {"gin_trgm_ops", "gist_trgm_ops"}}


def too_small(table: TableInfo) -> bool:
    """Whether a sequential scan of the whole table is cheap whatever the filter."""
    rows = max(table.reltuples, float(table.live_tuples))
    return table.size_bytes < MIN_TABLE_BYTES and rows < MIN_TABLE_ROWS


def _norm_where(where: str | None) -> str | None:
    return None if where is None else normalize(where).lower()


def covering_index(columns: Sequence[IndexColumn], indexes: Sequence[IndexInfo],
                   method: str = "btree", where: str | None = None) -> IndexInfo | None:
    """A valid index that already serves this key: for btree, leading with the same equality
    columns (in any order) then the same range/sort columns, the same operator classes, and no
    predicate or the same one; for GIN, the column with an operator class that serves it."""
    want = [normalize(c.text) for c in columns]
    eq = {normalize(c.text) for c in columns if c.role in ("equality", "join", "in")}
    n_eq = sum(1 for c in columns if c.role in ("equality", "join", "in"))
    for i in indexes:
        if not i.valid or (i.predicate is not None and
                           _norm_where(i.predicate) != _norm_where(where)):
            continue
        shape = index_shape(i.definition) or (i.method, tuple(None for _ in i.columns))
        have = [normalize(c) for c in i.columns]
        if method != "btree":
            if i.method in ("gin", "gist") and have[:1] == want[:1] and (
                    shape[1][:1] and shape[1][0] in _GIN_SERVES.get(columns[0].opclass, set())):
                return i
            continue
        if i.method != "btree" or len(have) < len(want):
            continue
        classes = dict(zip(have, shape[1], strict=False))
        if any(c.opclass is not None and classes.get(normalize(c.text)) != c.opclass
               for c in columns):
            continue
        if set(have[:n_eq]) == eq and have[n_eq:len(want)] == want[n_eq:]:
            return i
    return None


def dropped_columns(definition: str) -> tuple[IndexColumn, ...] | None:
    """The key columns of a catalog definition, as printed; None when it does not parse."""
    stmt = parse_index(definition)
    shape = index_shape(definition)
    if stmt is None or shape is None:
        return None
    classes = shape[1]
    cols = []
    for n, elem in enumerate(stmt.indexParams or ()):
        if not isinstance(elem, ast.IndexElem):
            return None
        opclass = classes[n] if n < len(classes) else None
        desc = sort_direction(elem)
        if elem.name:
            cols.append(IndexColumn(quote_ident(str(elem.name)), "equality", desc,
                                    str(elem.name), opclass=opclass))
        elif elem.expr is not None:
            cols.append(IndexColumn(RawStream()(elem.expr), "equality", desc, None, True,
                                    opclass))
    return tuple(cols)


def table_info(table: str, catalog: Catalog, relations: Relations | None) -> TableInfo | None:
    """The catalog's counters of a table; a partitioned one sized by its partitions."""
    info = catalog.table(table)
    rel = relations.get(table) if relations is not None else None
    if rel is None or rel.kind != "partitioned":
        return info
    if info is None:
        schema, name = pair(table)
        info = TableInfo(schema, name, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, None, None, None,
                         None)
    return replace(info, size_bytes=max(info.size_bytes, rel.size_bytes),
                   reltuples=max(info.reltuples, rel.rows))


# PostgreSQL's own schemas: no index can be created there (a driver's catalog queries, such as
# asyncpg's type introspection, are not the application's workload and are not advised on).
SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})


def system_table(table: str | None) -> bool:
    """Whether `table` (schema-qualified as the predicates resolved it) is a system catalog."""
    return table is not None and pair(table)[0] in SYSTEM_SCHEMAS


def generate(
    statements: Sequence[StatementEvidence],
    accesses: Mapping[str, Access],
    catalog: Catalog,
    stats: ColumnStats,
    dropped: Sequence[DroppedIndex] = (),
    relations: Relations | None = None,
) -> tuple[list[Candidate], list[NotProposed]]:
    """Index candidates for these statements (keyed in `accesses` by fingerprint)."""
    not_proposed: list[NotProposed] = []
    reported: dict[tuple[str | None, tuple[str, ...], str, str | None], int] = {}

    def skip(table: str | None, cols: Sequence[str], reason: str, detail: str | None,
             members: Sequence[StatementEvidence]) -> None:
        """One entry per table, columns and reason, with every statement it stands for."""
        if system_table(table):
            return
        k = (table, tuple(cols), reason, detail if reason == "shape_not_handled" else None)
        ids = tuple(str(q) for m in members for q in m.queryids)
        if k in reported:
            n = reported[k]
            old = not_proposed[n]
            not_proposed[n] = replace(old, queryids=tuple(dict.fromkeys(old.queryids + ids)))
            return
        reported[k] = len(not_proposed)
        not_proposed.append(NotProposed("create_index", table, k[1], reason, detail, ids))

    all_wishes: list[Wish] = []
    for s in statements:
        acc = accesses.get(s.fingerprint)
        if acc is None or (acc.tables and all(system_table(t) for t in acc.tables)):
            continue
        found, lonely = wishes(s, acc, stats)
        all_wishes += [w for w in found if not system_table(w.table)]
        for u in acc.unhandled:
            skip(u.table, (), "shape_not_handled", f"{u.shape}: {u.detail}", [s])
        for table, why in lonely:
            skip(table, (), "shape_not_handled", f"null_test: {why}", [s])
    by_table: dict[str, list[Wish]] = defaultdict(list)
    for w in all_wishes:
        if table_info(w.table, catalog, relations) is not None:
            by_table[w.table].append(w)
        else:
            skip(w.table, tuple(t.text for t in w.equality + w.ins + w.ranges),
                 "shape_not_handled", f"not_a_table: {w.table} is not a table the catalog "
                 "shows (a foreign table, a function, or one the role cannot see)",
                 [w.statement])
    dropped_by_table: dict[str, list[DroppedIndex]] = defaultdict(list)
    for d in dropped:
        dropped_by_table[d.table].append(d)

    out: list[Candidate] = []
    for table in sorted(set(by_table) | set(dropped_by_table)):
        info = table_info(table, catalog, relations)
        indexes = catalog.indexes_on(table)
        chosen: list[tuple[tuple[IndexColumn, ...], str, str | None,
                           list[StatementEvidence], DroppedIndex | None]] = []
        for d in dropped_by_table.get(table, ()):
            cols = dropped_columns(d.definition)
            if not cols:
                continue
            ids = set(d.queryids)
            members = [s for s in statements if ids & set(s.queryids)] if ids else []
            if covering_index(cols, indexes) is not None or catalog.index(d.name) is not None:
                skip(table, [c.text for c in cols], "covered_by_existing_index",
                     f"{d.name} or an equivalent index is back", members)
                continue
            shape = index_shape(d.definition)
            chosen.append((cols, shape[0] if shape else "btree", None, members, d))
        table_wishes = by_table.get(table, [])
        weight: dict[str, float] = defaultdict(float)
        for w in table_wishes:
            for t in (*w.equality, *w.ins):
                weight[t.text] += w.statement.total_ms
        keyed: list[tuple[tuple[IndexColumn, ...], Wish]] = []
        for w in table_wishes:
            cols = key(w, weight, stats)
            texts = [c.text for c in cols]
            if info is not None and too_small(info):
                skip(table, texts, "table_too_small",
                     f"{info.size_bytes} bytes, about {int(max(info.reltuples, 0))} rows",
                     [w.statement])
                continue
            cover = covering_index(cols, indexes, w.method, w.where)
            if cover is not None:
                skip(table, texts, "covered_by_existing_index", cover.qualified_name,
                     [w.statement])
                continue
            if not selective(cols, table, stats, w.where):
                skip(table, texts, "low_selectivity",
                     f"fewer than {MIN_DISTINCT} distinct values", [w.statement])
                continue
            keyed.append((cols, w))
        keyed.sort(key=lambda kw: (-len(kw[0]), -kw[1].statement.total_ms))
        for cols, w in keyed:
            home = next((c for c in chosen if c[1] == w.method and c[2] == w.where
                         and is_prefix(cols, c[0])), None)
            if home is None:
                chosen.append((cols, w.method, w.where, [w.statement], None))
            elif w.statement not in home[3]:
                home[3].append(w.statement)
        for cols, method, where, members, drop in chosen:
            out.append(Candidate(
                table, cols, tuple(sorted(members, key=lambda s: -s.total_ms)),
                source="dropped_index" if drop is not None else "predicates",
                definition=drop.definition if drop is not None else None,
                name=drop.name if drop is not None else None, method=method, where=where))
    out.sort(key=lambda c: -sum(s.total_ms for s in c.statements))
    return out, not_proposed
