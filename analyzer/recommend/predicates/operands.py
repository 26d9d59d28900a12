"""Operands of a condition: which base-table column (or indexable function of one) each is.

A column reference is located in its level (qualified by an alias, or the one relation of the
level that has the column, or a USING column), then followed through derived relations --
views, subqueries, inlined CTEs -- to the table underneath, where the planner would push the
condition down; where it would not, the shape is recorded as not handled, with why.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast, enums

from analyzer.recommend.ddl import expression, quote_ident
from analyzer.recommend.predicates.collector import Level, Reader, Rel
from analyzer.recommend.predicates.terms import Term, Unhandled, Wrapped

# Functions whose result an expression index can hold (immutable for their usual arguments).
INDEXABLE_FUNCTIONS = {"lower", "upper", "btrim", "trim", "md5", "abs"}
# Casts an ORM puts inside such a function (`upper(email::text)` on a varchar column), printed
# the way PostgreSQL prints them in an index definition.
INDEXABLE_CASTS = {"text"}


@dataclass
class Operands(Reader):
    """Column resolution for the predicate reader (see reader.Predicates)."""

    def refers(self, node: object, level: Level, term: Term) -> bool:
        """Whether `node` mentions a column of the scan `term` is on (then the term is no
        index key: `a = b + 1` on one row); another scan of the same table is a join."""
        return (term.table, term.scan) in self.scans_in(node, level)

    def tables_in(self, node: object, level: Level) -> list[str]:
        """The base tables whose columns `node` mentions (through derived relations)."""
        return list(dict.fromkeys(table for table, _ in self.scans_in(node, level)))

    def scans_in(self, node: object, level: Level) -> list[tuple[str, int]]:
        """(table, scan) of each base relation whose columns `node` mentions."""
        out: list[tuple[str, int]] = []

        def visit(n: object, lv: Level, depth: int) -> None:
            if depth > 16:
                return
            if isinstance(n, tuple | list):
                for item in n:
                    visit(item, lv, depth)
            elif isinstance(n, ast.ColumnRef):
                found = self.locate(n, lv)
                if found is None:
                    return
                rel, col = found
                if rel.base:
                    out.append((rel.name, rel.scan))
                else:
                    for expr, inner in rel.columns.get(col, ()):
                        visit(expr, inner, depth + 1)
            elif isinstance(n, ast.Node) and not isinstance(n, ast.SubLink):
                for slot in getattr(type(n), "__slots__", ()):
                    visit(getattr(n, slot, None), lv, depth)

        visit(node, level, 0)
        return list(dict.fromkeys(out))

    def locate(self, node: ast.ColumnRef, level: Level) -> tuple[Rel, str] | None:
        """The relation (as the level sees it) and column a column reference names."""
        parts = [str(f.sval) for f in node.fields or () if isinstance(f, ast.String)]
        if not parts or len(parts) != len(node.fields or ()):
            return None  # `t.*`
        if len(parts) >= 2:
            rel = level.lookup(parts[-2])
            return None if rel is None else (rel, parts[-1])
        column = parts[0]
        lv: Level | None = level
        while lv is not None:
            if column in lv.merged:
                return lv.merged[column], column
            owners = [r for r in lv.rels if column in (self.known_columns(r) or ())]
            if len(owners) == 1:
                return owners[0], column
            if len(lv.rels) == 1 and (self.known_columns(lv.rels[0]) is None or (
                    not lv.rels[0].base and not lv.rels[0].columns)):
                return lv.rels[0], column  # a table of unknown columns, a materialized CTE
            lv = lv.parent
        return None

    def side(self, node: object, level: Level, depth: int = 0) -> list[Term]:
        """The base-table columns (or indexable functions of one) an operand is."""
        if depth > 16:
            return []
        if isinstance(node, ast.ColumnRef):
            found = self.locate(node, level)
            if found is None:
                return []
            rel, column = found
            if rel.base:
                return [Term(rel.name, quote_ident(column), column, "", scan=rel.scan)]
            why = rel.why_not or (f"{rel.name}.{column} is computed by grouping"
                                  if rel.pushable is not None and column not in rel.pushable
                                  else None)
            branches = rel.columns.get(column, [])
            out = [t for expr, inner in branches for t in self.side(expr, inner, depth + 1)]
            if why is not None or not out:
                detail = why or f"{rel.name}.{column} is an expression, not a table column"
                where: list[str | None] = list(self.tables_in(node, level) or rel.reads
                                               ) or [None]
                for table in where:
                    self.unhandled.append(Unhandled(table, "derived", detail))
                return []
            return out
        if isinstance(node, ast.FuncCall) and node.args and len(node.args) == 1:
            name = ".".join(str(n.sval) for n in node.funcname or () if isinstance(n, ast.String))
            arg, cast = node.args[0], None
            if isinstance(arg, ast.TypeCast) and isinstance(arg.arg, ast.ColumnRef):
                cast = _type_name(arg.typeName)
                arg = arg.arg if cast in INDEXABLE_CASTS else None
            if name.lower() in INDEXABLE_FUNCTIONS and isinstance(arg, ast.ColumnRef) \
                    and not node.agg_star and not node.agg_distinct and node.over is None:
                out = []
                for t in self.side(arg, level, depth + 1):
                    if t.expression:
                        continue
                    text = expression(name.lower(), [t.column]) if cast is None else (
                        f"{name.lower()}(({quote_ident(t.column)})::{cast})")
                    out.append(Term(t.table, text, t.column, "", expression=True,
                                    scan=t.scan))
                return out
        return []

    def wrapped_columns(self, node: object, level: Level) -> None:
        how = None
        if isinstance(node, ast.TypeCast):
            how = "cast"
        elif isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP:
            how = "arithmetic"
        elif isinstance(node, ast.FuncCall | ast.CoalesceExpr | ast.MinMaxExpr | ast.CaseExpr):
            how = "function"  # COALESCE, GREATEST / LEAST and CASE are computed like one
        if how is None:
            return
        found: list[tuple[str, str]] = []

        def visit(n: object) -> None:
            if isinstance(n, tuple | list):
                for item in n:
                    visit(item)
            elif isinstance(n, ast.ColumnRef):
                found.extend((t.table, t.column) for t in self.side(n, level))
            elif isinstance(n, ast.Node) and not isinstance(n, ast.SubLink):
                for slot in getattr(type(n), "__slots__", ()):
                    visit(getattr(n, slot, None))

        visit(node)
        for table, column in dict.fromkeys(found):
            self.wrapped.append(Wrapped(table, column, how))
            self.unhandled.append(Unhandled(
                table, "wrapped", f"{column} is inside a {how}: an index on the column cannot "
                "serve the condition as written (an expression index is proposed only for "
                f"{', '.join(sorted(INDEXABLE_FUNCTIONS))})"))


def _type_name(t: ast.TypeName | None) -> str | None:
    if t is None or t.arrayBounds:
        return None
    names = [str(n.sval) for n in t.names or () if isinstance(n, ast.String)]
    return names[-1] if names else None
