"""Stand-ins for expression candidates under hypopg.

A hypothetical index has no statistics, and neither has an expression until a real index on
it has been analysed: the planner then assumes PostgreSQL's default 0.5 % of the rows for
`lower(email) = $1` and underrates the index. For functions that keep a column's values
(nearly) distinct — `lower`, `upper`, `btrim` — the bare column has the statistics the
expression would have, so the check plans the statement with the function taken out against
a hypothetical index on the bare column. The rewritten text is only ever EXPLAINed; the
recommended DDL is the expression index.
"""

from __future__ import annotations

from collections.abc import Sequence

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from analyzer.recommend.ddl import quote_ident
from analyzer.recommend.model import IndexColumn

NEAR_INJECTIVE = {"lower", "upper", "btrim", "trim"}


def proxy_function(c: IndexColumn) -> str | None:
    """The function of an expression column that a bare-column stand-in can replace."""
    if c.column is None or not c.expression:
        return None
    name = c.text.partition("(")[0].strip('"')
    return name if name in NEAR_INJECTIVE else None


def needs_proxy(columns: Sequence[IndexColumn]) -> bool:
    """Whether any column is an expression the stand-in applies to."""
    return any(proxy_function(c) for c in columns)


def proxy_columns(columns: Sequence[IndexColumn]) -> tuple[IndexColumn, ...]:
    """The candidate's columns with such expressions replaced by their bare column."""
    out = []
    for c in columns:
        if proxy_function(c) and c.column is not None:
            out.append(IndexColumn(quote_ident(c.column), c.role, c.descending, c.column))
        else:
            out.append(c)
    return tuple(out)


def _strip(node: object, functions: set[str]) -> object:
    if isinstance(node, tuple):
        return tuple(_strip(n, functions) for n in node)
    if isinstance(node, list):
        return [_strip(n, functions) for n in node]
    if not isinstance(node, ast.Node):
        return node
    if isinstance(node, ast.FuncCall) and node.args and len(node.args) == 1 and (
            isinstance(node.args[0], ast.ColumnRef) or (
                isinstance(node.args[0], ast.TypeCast)
                and isinstance(node.args[0].arg, ast.ColumnRef))):
        name = ".".join(str(n.sval) for n in node.funcname or () if isinstance(n, ast.String))
        if name.lower() in functions:
            return node.args[0]
    for slot in getattr(type(node), "__slots__", ()):
        value = getattr(node, slot, None)
        if isinstance(value, ast.Node | tuple | list):
            setattr(node, slot, _strip(value, functions))
    return node


def proxy_query(query: str, columns: Sequence[IndexColumn]) -> str | None:
    """`query` with the stand-in's functions taken off their columns; None if it cannot be."""
    functions = {f for c in columns if (f := proxy_function(c))}
    if not functions:
        return query
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return None
    if len(stmts) != 1:
        return None
    stmt = _strip(stmts[0].stmt, functions)
    assert isinstance(stmt, ast.Node)
    return str(RawStream()(stmt))
