"""Index candidates from the statements' predicates, merged per table (pure).

For each statement and each table it filters, joins or sorts: the equality and join-key columns
first (those most used across the table's statements, then the most selective, lead), then IN
columns, then one range column — or, without a range, the ORDER BY columns when a LIMIT makes
an ordered scan pay. Candidates of one table whose columns are a prefix of another's are served
by the longer one, so the table gets the fewest indexes that serve its statements, the
heaviest (by total time) first. A dropped index that caused a regression comes back as written
in the catalog. Tables too small to matter, columns with too few distinct values and columns
an existing valid index already leads are left out here, each with its reason.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from analyzer.recommend.ddl import quote_ident
from analyzer.recommend.model import (
    Candidate,
    DroppedIndex,
    IndexColumn,
    NotProposed,
    StatementEvidence,
)
from analyzer.recommend.predicates import Access, Term
from analyzer.snapshots.catalog import Catalog, IndexInfo, TableInfo

# A table below both of these is scanned whole faster than an index would be worth keeping.
MIN_TABLE_BYTES = 1024 * 1024
MIN_TABLE_ROWS = 1000
# Equality columns whose distinct values multiply to fewer than this select too much of the
# table for an index to beat a sequential scan (a status, a kind, a boolean).
MIN_DISTINCT = 100
MAX_COLUMNS = 4

ColumnStats = Mapping[str, Mapping[str, float]]  # schema.table -> column -> distinct values


@dataclass(frozen=True)
class _Wish:
    statement: StatementEvidence
    table: str
    equality: tuple[Term, ...]
    ins: tuple[Term, ...]
    ranges: tuple[Term, ...]
    sorts: tuple[Term, ...]


def normalize(text: str) -> str:
    """An index column as printed, with casts and redundant parentheses taken out.

    PostgreSQL prints `lower((email)::text)` for a varchar column where the statement says
    `lower(email)`; both mean the same index key.
    """
    out = text
    for _ in range(3):
        out = _strip_casts(out)
    return out.replace("(", "").replace(")", "").replace(" ", "")


def _strip_casts(text: str) -> str:
    return re.sub(r"::[a-z_ ]+(\[\])?", "", text)


def too_small(table: TableInfo) -> bool:
    """Whether a sequential scan of the whole table is cheap whatever the filter."""
    rows = max(table.reltuples, float(table.live_tuples))
    return table.size_bytes < MIN_TABLE_BYTES and rows < MIN_TABLE_ROWS


def _usable(i: IndexInfo) -> bool:
    return i.valid and i.method == "btree" and i.predicate is None


def covering_index(columns: Sequence[IndexColumn], indexes: Sequence[IndexInfo]
                   ) -> IndexInfo | None:
    """A valid index whose leading columns already are these (equality columns in any order)."""
    want = [normalize(c.text) for c in columns]
    eq = {normalize(c.text) for c in columns if c.role in ("equality", "join", "in")}
    n_eq = sum(1 for c in columns if c.role in ("equality", "join", "in"))
    for i in indexes:
        if not _usable(i):
            continue
        have = [normalize(c) for c in i.columns]
        if len(have) < len(want):
            continue
        if set(have[:n_eq]) == eq and have[n_eq:len(want)] == want[n_eq:]:
            return i
    return None


def _wishes(statement: StatementEvidence, acc: Access) -> list[_Wish]:
    """Per table: one wish from its filters (and sort), one from its join keys.

    A join key helps when the table is the inner side of a nested loop, its filters when it
    is scanned on its own; which of the two the planner takes is for validation to find, so
    both are candidates (a join key its table's filters already lead with merges away).
    """
    by_table: dict[str, list[Term]] = defaultdict(list)
    for t in acc.terms:
        by_table[t.table].append(t)
    sort_tables = {t.table for t in acc.terms if t.role == "sort"}
    out = []
    for table, terms in by_table.items():
        eq = _unique([t for t in terms if t.role == "equality"])
        eq_texts = {t.text for t in eq}
        ins = _unique([t for t in terms if t.role == "in" and t.text not in eq_texts])
        ranges = _unique([t for t in terms if t.role == "range" and t.text not in eq_texts])
        sorts = tuple(t for t in terms if t.role == "sort") if sort_tables == {table} else ()
        if eq or ins or ranges or sorts:
            out.append(_Wish(statement, table, eq, ins, ranges, sorts))
        joins = _unique([t for t in terms if t.role == "join" and t.text not in eq_texts])
        if joins:
            out.append(_Wish(statement, table, joins, (), (), ()))
    return out


def _unique(terms: Sequence[Term]) -> tuple[Term, ...]:
    seen: dict[str, Term] = {}
    for t in terms:
        seen.setdefault(t.text, t)
    return tuple(seen.values())


def _distinct(stats: ColumnStats, table: str, t: Term) -> float | None:
    if t.expression:
        return None
    return stats.get(table, {}).get(t.column)


def _key(w: _Wish, weight: Mapping[str, float], stats: ColumnStats) -> tuple[IndexColumn, ...]:
    def rank(t: Term) -> tuple[float, float, str]:
        return (-weight.get(t.text, 0.0), -(_distinct(stats, w.table, t) or 1e12), t.text)

    cols = [IndexColumn(t.text, t.role, False, t.column, t.expression)
            for t in sorted(w.equality, key=rank)]
    cols += [IndexColumn(t.text, "in", False, t.column, t.expression)
             for t in sorted(w.ins, key=rank)]
    taken = {c.text for c in cols}
    sorts = [t for t in w.sorts if t.text not in taken]
    if w.ranges:
        first = next((r for r in w.ranges if sorts and r.text == sorts[0].text), None)
        rng = first or sorted(w.ranges, key=rank)[0]
        cols.append(IndexColumn(rng.text, "range", False, rng.column, rng.expression))
        if first is not None and not w.ins:
            cols += _sort_columns(sorts[1:], sorts[0].descending)
    elif sorts and not w.ins:
        cols += _sort_columns(sorts, sorts[0].descending)
    return tuple(cols[:MAX_COLUMNS])


def _sort_columns(sorts: Sequence[Term], first_desc: bool) -> list[IndexColumn]:
    # A btree scans either way: only directions that differ from the first need DESC.
    return [IndexColumn(t.text, "sort", t.descending != first_desc, t.column, t.expression)
            for t in sorts]


def _selective(columns: Sequence[IndexColumn], table: str, stats: ColumnStats) -> bool:
    if any(c.role in ("range", "sort") for c in columns):
        return True
    product = 1.0
    for c in columns:
        n = stats.get(table, {}).get(c.column) if c.column and not c.expression else None
        if n is None:
            return True  # no statistics: let validation judge
        product *= max(n, 1.0)
    return product >= MIN_DISTINCT


def _is_prefix(short: Sequence[IndexColumn], long: Sequence[IndexColumn]) -> bool:
    if len(short) > len(long):
        return False
    a = [(c.text, c.descending) for c in short]
    b = [(c.text, c.descending) for c in long[: len(short)]]
    flipped = [(t, not d) for t, d in b]
    return a in (b, flipped)


def dropped_columns(definition: str) -> tuple[IndexColumn, ...] | None:
    """The key columns of a catalog definition, as printed; None when it does not parse."""
    try:
        stmts = parse_sql(definition)
    except (ParseError, ValueError):
        return None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.IndexStmt):
        return None
    cols = []
    for elem in stmts[0].stmt.indexParams or ():
        if not isinstance(elem, ast.IndexElem):
            return None
        desc = elem.ordering == enums.SortByDir.SORTBY_DESC
        if elem.name:
            cols.append(IndexColumn(quote_ident(str(elem.name)), "equality", desc,
                                    str(elem.name)))
        elif elem.expr is not None:
            cols.append(IndexColumn(RawStream()(elem.expr), "equality", desc, None, True))
    return tuple(cols)


def generate(
    statements: Sequence[StatementEvidence],
    accesses: Mapping[str, Access],
    catalog: Catalog,
    stats: ColumnStats,
    dropped: Sequence[DroppedIndex] = (),
) -> tuple[list[Candidate], list[NotProposed]]:
    """Index candidates for these statements (keyed in `accesses` by fingerprint)."""
    not_proposed: list[NotProposed] = []
    wishes: list[_Wish] = []
    for s in statements:
        acc = accesses.get(s.fingerprint)
        if acc is not None:
            wishes += _wishes(s, acc)
    by_table: dict[str, list[_Wish]] = defaultdict(list)
    for w in wishes:
        if catalog.table(w.table) is not None:
            by_table[w.table].append(w)
    dropped_by_table: dict[str, list[DroppedIndex]] = defaultdict(list)
    for d in dropped:
        dropped_by_table[d.table].append(d)

    out: list[Candidate] = []
    reported: dict[tuple[str, tuple[str, ...], str], int] = {}

    def skip(table: str, cols: Sequence[IndexColumn], reason: str, detail: str | None,
             members: Sequence[StatementEvidence]) -> None:
        """One entry per table, columns and reason, with every statement it stands for."""
        key = (table, tuple(c.text for c in cols), reason)
        ids = tuple(str(q) for m in members for q in m.queryids)
        if key in reported:
            n = reported[key]
            old = not_proposed[n]
            not_proposed[n] = NotProposed(old.kind, old.table, old.columns, old.reason,
                                          old.detail, tuple(dict.fromkeys(old.queryids + ids)))
            return
        reported[key] = len(not_proposed)
        not_proposed.append(NotProposed("create_index", table, key[1], reason, detail, ids))

    for table in sorted(set(by_table) | set(dropped_by_table)):
        info = catalog.table(table)
        indexes = catalog.indexes_on(table)
        chosen: list[tuple[tuple[IndexColumn, ...], list[StatementEvidence], DroppedIndex | None]]
        chosen = []
        for d in dropped_by_table.get(table, ()):
            cols = dropped_columns(d.definition)
            if not cols:
                continue
            ids = set(d.queryids)
            members = [s for s in statements if ids & set(s.queryids)] if ids else []
            if covering_index(cols, indexes) is not None or catalog.index(d.name) is not None:
                skip(table, cols, "covered_by_existing_index",
                     f"{d.name} or an equivalent index is back", members)
                continue
            chosen.append((cols, members, d))
        table_wishes = by_table.get(table, [])
        weight: dict[str, float] = defaultdict(float)
        for w in table_wishes:
            for t in (*w.equality, *w.ins):
                weight[t.text] += w.statement.total_ms
        keyed: list[tuple[tuple[IndexColumn, ...], _Wish]] = []
        for w in table_wishes:
            cols = _key(w, weight, stats)
            if info is not None and too_small(info):
                skip(table, cols, "table_too_small",
                     f"{info.size_bytes} bytes, about {int(max(info.reltuples, 0))} rows",
                     [w.statement])
                continue
            cover = covering_index(cols, indexes)
            if cover is not None:
                skip(table, cols, "covered_by_existing_index", cover.qualified_name,
                     [w.statement])
                continue
            if not _selective(cols, table, stats):
                skip(table, cols, "low_selectivity",
                     f"fewer than {MIN_DISTINCT} distinct values", [w.statement])
                continue
            keyed.append((cols, w))
        keyed.sort(key=lambda kw: (-len(kw[0]), -kw[1].statement.total_ms))
        for cols, w in keyed:
            home = next((c for c in chosen if _is_prefix(cols, c[0])), None)
            if home is None:
                chosen.append((cols, [w.statement], None))
            elif w.statement not in home[1]:
                home[1].append(w.statement)
        for cols, members, drop in chosen:
            out.append(Candidate(
                table, cols, tuple(sorted(members, key=lambda s: -s.total_ms)),
                source="dropped_index" if drop is not None else "predicates",
                definition=drop.definition if drop is not None else None,
                name=drop.name if drop is not None else None))
    out.sort(key=lambda c: -sum(s.total_ms for s in c.statements))
    return out, not_proposed
