"""What a statement touches and how it is planned: the raw material of clustering.

Statements are parsed with pglast (PostgreSQL's own parser). Plans come as EXPLAIN's JSON and
are reduced to their shape: which node scans which relation through which index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

from analyzer.names import qualified, quote_ident, split_column

_PREDICATE_SLOTS = {"whereClause", "quals", "sortClause", "havingClause"}
_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class StatementShape:
    """Tables a statement reads or writes and the columns of its predicates, joins, ORDER BY."""

    kind: str = "unknown"
    tables: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # "table.column", table as written (or resolved)
    explainable: bool = False
    parameters: int = 0


def _name(node: ast.RangeVar) -> str:
    """The table as written, printed (analyzer/names.py): `"a.b".c` and `a."b.c"` differ."""
    return qualified(str(node.schemaname) if node.schemaname else None, str(node.relname))


class _Walker:
    def __init__(self) -> None:
        self.tables: list[str] = []
        self.aliases: dict[str, str] = {}
        self.ctes: set[str] = set()
        self.column_refs: list[tuple[str, ...]] = []

    def visit(self, node: object, in_predicate: bool) -> None:
        if isinstance(node, tuple | list):
            for item in node:
                self.visit(item, in_predicate)
            return
        if not isinstance(node, ast.Node):
            return
        if isinstance(node, ast.CommonTableExpr) and node.ctename:
            self.ctes.update((str(node.ctename), quote_ident(str(node.ctename))))
        if isinstance(node, ast.RangeVar):
            name = _name(node)
            self.tables.append(name)
            self.aliases[str(node.relname)] = name
            if node.alias is not None and node.alias.aliasname:
                self.aliases[str(node.alias.aliasname)] = name
            return
        if isinstance(node, ast.ColumnRef):
            if in_predicate:
                parts = tuple(
                    str(f.sval) for f in (node.fields or ()) if isinstance(f, ast.String)
                )
                if parts:
                    self.column_refs.append(parts)
            return
        for slot in getattr(type(node), "__slots__", ()):
            self.visit(getattr(node, slot, None), in_predicate or slot in _PREDICATE_SLOTS)


def parse_statement(query: str) -> StatementShape:
    """The shape of a normalized statement text; an unparsable text gives an empty shape."""
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return StatementShape()
    if not stmts:
        return StatementShape()
    stmt = stmts[0].stmt
    walker = _Walker()
    walker.visit(stmt, False)
    tables = [t for t in dict.fromkeys(walker.tables) if t not in walker.ctes]
    columns: list[str] = []
    for parts in walker.column_refs:
        if len(parts) >= 2:
            table = walker.aliases.get(parts[-2], parts[-2])
        elif len(tables) == 1:
            table = tables[0]
        else:
            table = "?"
        if table in walker.ctes:
            continue
        columns.append(f"{table}.{parts[-1]}")
    kind = type(stmt).__name__.removesuffix("Stmt").lower()
    explainable = isinstance(stmt, ast.SelectStmt | ast.InsertStmt | ast.UpdateStmt
                             | ast.DeleteStmt)
    params = max((int(m) for m in _PARAM.findall(query)), default=0)
    return StatementShape(kind, tuple(tables), tuple(dict.fromkeys(columns)), explainable, params)


def qualify(shape: StatementShape, resolved: Mapping[str, str]) -> StatementShape:
    """Replace table names as written with schema-qualified names where known."""

    def q(name: str) -> str:
        return resolved.get(name, name)

    columns = []
    for col in shape.columns:
        table, column = split_column(col)
        columns.append(f"{q(table)}.{column}")
    return StatementShape(shape.kind, tuple(dict.fromkeys(q(t) for t in shape.tables)),
                          tuple(dict.fromkeys(columns)), shape.explainable, shape.parameters)


def plan_shape(plan_json: Any) -> dict[str, Any]:
    """EXPLAIN (FORMAT JSON) reduced to its scan nodes: [{node, relation, index}], in order."""
    root = plan_json
    if isinstance(root, list):
        root = root[0] if root else {}
    if isinstance(root, dict) and "Plan" in root:
        root = root["Plan"]
    nodes: list[dict[str, Any]] = []

    def walk(node: Mapping[str, Any]) -> None:
        relation = node.get("Relation Name")
        if relation is not None and node.get("Schema"):
            relation = f"{node['Schema']}.{relation}"
        nodes.append({"node": node.get("Node Type"), "relation": relation,
                      "index": node.get("Index Name")})
        for child in node.get("Plans", ()) or ():
            walk(child)

    if isinstance(root, dict):
        walk(root)
    return {"nodes": nodes, "total_cost": root.get("Total Cost") if isinstance(root, dict)
            else None}


def scans(shape: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(node type, relation) of every scan in a plan shape."""
    if not shape:
        return []
    return [(str(n["node"]), str(n["relation"])) for n in shape.get("nodes", ())
            if n.get("relation")]


def describe_scans(pairs: Iterable[tuple[str, str]]) -> str:
    """'Seq Scan on public.t, Index Scan on public.u' (each pair once, in order)."""
    return ", ".join(f"{node} on {rel}" for node, rel in dict.fromkeys(pairs))


def unindexed(
    columns: Sequence[str], tables: Sequence[str], indexed: set[str],
    selective: Mapping[str, bool] | None = None,
) -> list[str]:
    """Selective predicate columns of known (schema-qualified) tables that lead no valid index.

    A column known to have few distinct values (a status, a kind) is left out: no index on it
    alone would help, so its lacking one says nothing about the cause of a regression.
    """
    known = set(tables)
    sel = selective or {}
    return sorted({c for c in columns if split_column(c)[0] in known and c not in indexed
                   and sel.get(c, True)})


def feature_tokens(
    tables: Sequence[str], columns: Sequence[str], plan: Mapping[str, Any] | None,
    without_index: Sequence[str] = (),
) -> dict[str, list[str]]:
    """The categorical features of one regression, by block."""
    return {
        "table": sorted(set(tables)),
        "column": sorted(set(columns)),
        "plan": sorted({f"{node}:{rel}" for node, rel in scans(plan)}),
        "unindexed": sorted(set(without_index)),
    }
