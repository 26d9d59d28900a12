"""One statement's wish per table, and the index key that serves it (pure).

Column order: equality and join-key columns first (those most used across the table's
statements lead, then the most selective), then IN columns, then one range column (a LIKE
prefix is one) -- or, without a range, the ORDER BY columns when a LIMIT makes an ordered
scan pay. A GIN term (jsonb `@>`/`?`, arrays, tsvector, trigram) is an index of its own. A
constant predicate of the statement (`x IS NULL`, `x IS NOT NULL`, a boolean column) becomes
the partial index's WHERE when other columns make the key. A literal (`user_id = 1`) is not
one: it is the value a parameter had, and normalised texts have `$1` there anyway.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from analyzer.recommend.model import IndexColumn, StatementEvidence
from analyzer.recommend.predicates import Access, Term

# Equality columns whose distinct values multiply to fewer than this select a tenth of the
# table or more per value: a sequential scan reads that faster (a status, a kind, a boolean).
# Between this and a selective key, validation decides: the planner knows the frequencies.
MIN_DISTINCT = 10
MAX_COLUMNS = 4

ColumnStats = Mapping[str, Mapping[str, float]]  # schema.table -> column -> distinct values


@dataclass(frozen=True)
class Wish:
    """What one statement asks of one table's index."""

    statement: StatementEvidence
    table: str
    equality: tuple[Term, ...]
    ins: tuple[Term, ...]
    ranges: tuple[Term, ...]
    sorts: tuple[Term, ...]
    method: str = "btree"
    where: str | None = None


def normalize(text: str) -> str:
    """An index column as printed, with casts and redundant parentheses taken out.

    PostgreSQL prints `lower((email)::text)` for a varchar column where the statement says
    `lower(email)`; both mean the same index key.
    """
    out = text
    for _ in range(3):
        out = re.sub(r"::[a-z_ ]+(\[\])?", "", out)
    return out.replace("(", "").replace(")", "").replace(" ", "")


def _unique(terms: Sequence[Term]) -> tuple[Term, ...]:
    seen: dict[str, Term] = {}
    for t in terms:
        seen.setdefault(t.text, t)
    return tuple(seen.values())


def wishes(statement: StatementEvidence, acc: Access, stats: ColumnStats
           ) -> tuple[list[Wish], list[tuple[str, str]]]:
    """Per table: one wish from its filters (and sort), one from its join keys, one per GIN
    term; and (table, why) for tables whose only terms are constant predicates.

    A join key helps when the table is the inner side of a nested loop, its filters when it
    is scanned on its own; which of the two the planner takes is for validation to find, so
    both are candidates (a join key its table's filters already lead with merges away).
    """
    # One wish per scan of a table: a UNION branch, a subquery or the other side of a
    # self-join reads the table on its own, and an index key never mixes their columns.
    by_scan: dict[tuple[str, int], list[Term]] = defaultdict(list)
    for t in acc.terms:
        by_scan[t.table, t.scan].append(t)
    sort_scans = {(t.table, t.scan) for t in acc.terms if t.role == "sort"}
    out: list[Wish] = []
    lonely: list[tuple[str, str]] = []
    for (table, scan), terms in by_scan.items():
        where = [t for t in terms if t.role == "partial"]
        eq = _unique([t for t in terms if t.role == "equality"])
        eq_texts = {t.text for t in eq}
        ins = _unique([t for t in terms if t.role == "in" and t.text not in eq_texts])
        ranges = _unique([t for t in terms if t.role == "range" and t.text not in eq_texts])
        sorts = (tuple(t for t in terms if t.role == "sort") if sort_scans == {(table, scan)}
                 else ())
        predicate = " AND ".join(sorted({t.text for t in where})) or None
        if eq or ins or ranges or sorts:
            out.append(Wish(statement, table, eq, ins, ranges, sorts, where=predicate))
        elif predicate is not None:
            lonely.append((table, f"only a constant predicate ({predicate}): no column to "
                                  "key a partial index on"))
        joins = _unique([t for t in terms if t.role == "join" and t.text not in eq_texts])
        if joins:
            out.append(Wish(statement, table, joins, (), (), ()))
        for g in _unique([t for t in terms if t.role == "gin"]):
            out.append(Wish(statement, table, (g,), (), (), (), method=g.method))
    return out, lonely


def _distinct(stats: ColumnStats, table: str, t: Term) -> float | None:
    if t.expression:
        return None
    return stats.get(table, {}).get(t.column)


def _column(t: Term, role: str, descending: bool = False) -> IndexColumn:
    return IndexColumn(t.text, role, descending, t.column, t.expression, t.opclass)


def key(w: Wish, weight: Mapping[str, float], stats: ColumnStats) -> tuple[IndexColumn, ...]:
    """The index columns for one wish, in order."""
    if w.method != "btree":
        return tuple(_column(t, "gin") for t in w.equality)

    def rank(t: Term) -> tuple[float, float, str]:
        return (-weight.get(t.text, 0.0), -(_distinct(stats, w.table, t) or 1e12), t.text)

    cols = [_column(t, t.role) for t in sorted(w.equality, key=rank)]
    cols += [_column(t, "in") for t in sorted(w.ins, key=rank)]
    taken = {c.text for c in cols}
    sorts = [t for t in w.sorts if t.text not in taken]
    if w.ranges:
        first = next((r for r in w.ranges if sorts and r.text == sorts[0].text), None)
        rng = first or sorted(w.ranges, key=rank)[0]
        cols.append(_column(rng, "range"))
        if first is not None and not w.ins:
            cols += _sort_columns(sorts[1:], sorts[0].descending)
    elif sorts and not w.ins:
        cols += _sort_columns(sorts, sorts[0].descending)
    return tuple(cols[:MAX_COLUMNS])


def _sort_columns(sorts: Sequence[Term], first_desc: bool) -> list[IndexColumn]:
    # A btree scans either way: only directions that differ from the first need DESC.
    return [_column(t, "sort", t.descending != first_desc) for t in sorts]


def selective(columns: Sequence[IndexColumn], table: str, stats: ColumnStats,
              where: str | None = None) -> bool:
    """Whether the key (with its partial predicate) can pick out few enough rows."""
    if where is not None or any(c.role in ("range", "sort", "gin") for c in columns):
        return True
    product = 1.0
    for c in columns:
        n = stats.get(table, {}).get(c.column) if c.column and not c.expression else None
        if n is None:
            return True  # no statistics: let validation judge
        product *= max(n, 1.0)
    return product >= MIN_DISTINCT


def is_prefix(short: Sequence[IndexColumn], long: Sequence[IndexColumn]) -> bool:
    """Whether an index on `long` serves everything one on `short` does (same method and
    predicate are the caller's to check)."""
    if len(short) > len(long):
        return False
    a = [(c.text, c.descending, c.opclass) for c in short]
    b = [(c.text, c.descending, c.opclass) for c in long[: len(short)]]
    flipped = [(t, not d, o) for t, d, o in b]
    return a in (b, flipped)


def parse_index(definition: str) -> ast.IndexStmt | None:
    """A catalog definition as one CREATE INDEX; None when it is not one."""
    try:
        stmts = parse_sql(definition)
    except (ParseError, ValueError):
        return None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.IndexStmt):
        return None
    return stmts[0].stmt


def index_shape(definition: str) -> tuple[str, tuple[str | None, ...]] | None:
    """(method, opclass per key column) of a catalog definition; None if it does not parse."""
    stmt = parse_index(definition)
    if stmt is None:
        return None
    classes = []
    for elem in stmt.indexParams or ():
        names = [str(n.sval) for n in (elem.opclass or ()) if isinstance(n, ast.String)] \
            if isinstance(elem, ast.IndexElem) else []
        classes.append(names[-1] if names else None)
    return str(stmt.accessMethod or "btree"), tuple(classes)


def sort_direction(elem: ast.IndexElem) -> bool:
    """Whether an index element is DESC."""
    return bool(elem.ordering == enums.SortByDir.SORTBY_DESC)
