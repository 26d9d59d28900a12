"""How a statement reaches each table: its equality, IN, range, join, sort, GIN and partial
terms, through views, inlined CTEs, subqueries and partitions (docs/analyzer.md, Index
candidates). `access` is pure; `read_relations` reads what it needs from the target."""

from __future__ import annotations

from collections.abc import Mapping

from pglast import parse_sql
from pglast.parser import ParseError

from analyzer.recommend.predicates.operands import INDEXABLE_CASTS, INDEXABLE_FUNCTIONS
from analyzer.recommend.predicates.reader import Predicates
from analyzer.recommend.predicates.relations import Column, Relation, Relations, read_relations
from analyzer.recommend.predicates.terms import Access, Term, Unhandled, Wrapped

__all__ = ["INDEXABLE_CASTS", "INDEXABLE_FUNCTIONS", "Access", "Column", "Relation",
           "Relations", "Term", "Unhandled", "Wrapped", "access", "read_relations"]


def access(query: str, resolve: Mapping[str, str] | None = None,
           columns_of: Mapping[str, frozenset[str]] | None = None,
           relations: Relations | None = None) -> Access:
    """The access paths one statement text asks for; unparsable text gives none.

    `resolve` maps table names as written to schema-qualified ones, `columns_of` gives each
    table's columns, `relations` the target's views, partitions, column types and
    extensions (read_relations); without them names stay as written and views are tables.
    """
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return Access()
    if len(stmts) != 1:
        return Access()
    rels = relations or Relations()
    known = {**rels.columns_of(), **(columns_of or {})}
    c = Predicates(resolve or {}, known, rels)
    try:
        c.statement(stmts[0].stmt, None)
    except RecursionError:
        # A statement nested deeper than Python's stack: said so, never the audit's failure.
        return Access(parsed=True, unhandled=(Unhandled(
            None, "too_deep", "the statement is nested too deeply to read its predicates"),))
    return Access(tuple(dict.fromkeys(c.terms)), tuple(dict.fromkeys(c.wrapped)),
                  tuple(dict.fromkeys(c.tables)), True, tuple(dict.fromkeys(c.unhandled)))
