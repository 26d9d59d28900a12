"""How a statement reaches each table: its equality, IN, range, join and sort columns.

Read from pglast's parse tree (the parser analyzer/analysis/features.py uses too), per query
level: the FROM list and JOIN ... ON conditions, the WHERE clause's top-level AND terms, and
ORDER BY when a LIMIT makes an ordered index scan worth having. Subqueries, CTEs and set
operations are levels of their own. A column wrapped in something an index cannot use as
written (a cast, arithmetic, a function with parameters) is kept apart as a rewrite hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from analyzer.names import qualified
from analyzer.recommend.ddl import expression, quote_ident

_RANGE_OPS = {"<", ">", "<=", ">="}
# Functions whose result an expression index can hold (immutable for their usual arguments).
INDEXABLE_FUNCTIONS = {"lower", "upper", "btrim", "trim", "md5", "abs"}
# Casts an ORM puts inside such a function (`upper(email::text)` on a varchar column), printed
# the way PostgreSQL prints them in an index definition.
INDEXABLE_CASTS = {"text"}


@dataclass(frozen=True)
class Term:
    """One column (or indexable expression of one column) a predicate uses."""

    table: str  # as written or resolved (schema.table where known)
    text: str  # as PostgreSQL prints it: `customer_id`, `"Customer"`, `lower(email)`
    column: str  # the bare column underneath
    role: str  # equality | in | range | join | sort
    descending: bool = False
    expression: bool = False


@dataclass(frozen=True)
class Wrapped:
    """A column hidden from its indexes by what surrounds it (`created_at::date = $1`)."""

    table: str
    column: str
    how: str  # cast | arithmetic | function


@dataclass(frozen=True)
class Access:
    """Everything one statement asks of its tables."""

    terms: tuple[Term, ...] = ()
    wrapped: tuple[Wrapped, ...] = ()
    tables: tuple[str, ...] = ()
    parsed: bool = False


@dataclass
class _Level:
    aliases: dict[str, str]
    tables: list[str]
    parent: _Level | None = None

    def lookup(self, qualifier: str) -> str | None:
        level: _Level | None = self
        while level is not None:
            if qualifier in level.aliases:
                return level.aliases[qualifier]
            level = level.parent
        return None


@dataclass
class _Collector:
    resolve: Mapping[str, str]
    columns_of: Mapping[str, frozenset[str]]
    terms: list[Term] = field(default_factory=list)
    wrapped: list[Wrapped] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    # -- tables and levels ------------------------------------------------------------
    def table_name(self, rv: ast.RangeVar) -> str:
        name = qualified(str(rv.schemaname) if rv.schemaname else None, str(rv.relname))
        return self.resolve.get(name, name)

    def from_item(self, node: object, level: _Level, quals: list[object]) -> None:
        if isinstance(node, ast.RangeVar):
            name = self.table_name(node)
            level.tables.append(name)
            self.tables.append(name)
            level.aliases[str(node.relname)] = name
            if node.alias is not None and node.alias.aliasname:
                level.aliases[str(node.alias.aliasname)] = name
        elif isinstance(node, ast.JoinExpr):
            self.from_item(node.larg, level, quals)
            self.from_item(node.rarg, level, quals)
            if node.quals is not None:
                quals.append(node.quals)
        elif isinstance(node, ast.RangeSubselect) and node.subquery is not None:
            self.statement(node.subquery, level)

    def statement(self, node: object, parent: _Level | None) -> None:
        if isinstance(node, ast.SelectStmt):
            self.select(node, parent)
        elif isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
            level = _Level({}, [], parent)
            quals: list[object] = []
            if node.relation is not None:
                self.from_item(node.relation, level, quals)
            extra = node.fromClause if isinstance(node, ast.UpdateStmt) else node.usingClause
            for item in extra or ():
                self.from_item(item, level, quals)
            self.conditions([*quals, node.whereClause], level)
        elif isinstance(node, ast.InsertStmt) and node.selectStmt is not None:
            self.statement(node.selectStmt, parent)

    def select(self, node: ast.SelectStmt, parent: _Level | None) -> None:
        for cte in (node.withClause.ctes if node.withClause else ()) or ():
            if isinstance(cte, ast.CommonTableExpr):
                self.statement(cte.ctequery, parent)
        if node.op != enums.SetOperation.SETOP_NONE:
            self.statement(node.larg, parent)
            self.statement(node.rarg, parent)
            return
        level = _Level({}, [], parent)
        quals: list[object] = []
        for item in node.fromClause or ():
            self.from_item(item, level, quals)
        self.conditions([*quals, node.whereClause], level)
        if node.limitCount is not None and node.sortClause:
            self.sort(node.sortClause, level)

    # -- predicates -------------------------------------------------------------------
    def conditions(self, roots: Sequence[object], level: _Level) -> None:
        for root in roots:
            for term in _conjuncts(root):
                self.condition(term, level)
                self.sublinks(term, level)

    def sublinks(self, node: object, level: _Level) -> None:
        """Subqueries anywhere in a condition are levels of their own (correlated or not)."""
        if isinstance(node, ast.SubLink):
            self.statement(node.subselect, level)
            return
        if isinstance(node, tuple | list):
            for item in node:
                self.sublinks(item, level)
        elif isinstance(node, ast.Node):
            for slot in getattr(type(node), "__slots__", ()):
                self.sublinks(getattr(node, slot, None), level)

    def condition(self, node: object, level: _Level) -> None:
        if not isinstance(node, ast.A_Expr):
            return
        op = _op(node)
        kind = node.kind
        if kind == enums.A_Expr_Kind.AEXPR_IN or (
                kind == enums.A_Expr_Kind.AEXPR_OP_ANY and op == "="):
            role = "in"
        elif kind == enums.A_Expr_Kind.AEXPR_BETWEEN:
            role = "range"
        elif kind == enums.A_Expr_Kind.AEXPR_OP and op == "=":
            role = "equality"
        elif kind == enums.A_Expr_Kind.AEXPR_OP and op in _RANGE_OPS:
            role = "range"
        else:
            return
        left = self.side(node.lexpr, level)
        right = self.side(node.rexpr, level) if role in ("equality", "range") else None
        if left is not None and right is not None and left.table != right.table:
            if role == "equality":  # a join key on both sides
                self.terms.append(_with_role(left, "join"))
                self.terms.append(_with_role(right, "join"))
            return
        for mine, other in ((left, node.rexpr), (right, node.lexpr)):
            if mine is not None and not self.refers(other, level, mine.table):
                self.terms.append(_with_role(mine, role))
                return
        self.wrapped_columns(node.lexpr, level)
        if role in ("equality", "range"):
            self.wrapped_columns(node.rexpr, level)

    def refers(self, node: object, level: _Level, table: str) -> bool:
        """Whether `node` mentions a column of `table` (then the term is no index key)."""
        found: list[str] = []
        _column_refs(node, found, self, level)
        return table in found

    def side(self, node: object, level: _Level) -> Term | None:
        """The column (or indexable function of one column) an operand is, if it is one."""
        if isinstance(node, ast.ColumnRef):
            ref = self.column(node, level)
            if ref is None:
                return None
            table, column = ref
            return Term(table, quote_ident(column), column, "")
        if isinstance(node, ast.FuncCall) and node.args and len(node.args) == 1:
            name = ".".join(str(n.sval) for n in node.funcname or () if isinstance(n, ast.String))
            arg, cast = node.args[0], None
            if isinstance(arg, ast.TypeCast) and isinstance(arg.arg, ast.ColumnRef):
                cast = _type_name(arg.typeName)
                arg = arg.arg if cast in INDEXABLE_CASTS else None
            if name.lower() in INDEXABLE_FUNCTIONS and isinstance(arg, ast.ColumnRef) \
                    and not node.agg_star and not node.agg_distinct and node.over is None:
                ref = self.column(arg, level)
                if ref is None:
                    return None
                table, column = ref
                text = expression(name.lower(), [column]) if cast is None else (
                    f"{name.lower()}(({quote_ident(column)})::{cast})")
                return Term(table, text, column, "", expression=True)
        return None

    def wrapped_columns(self, node: object, level: _Level) -> None:
        how = None
        if isinstance(node, ast.TypeCast):
            how, inner = "cast", node.arg
        elif isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP:
            how, inner = "arithmetic", node
        elif isinstance(node, ast.FuncCall):
            how, inner = "function", node
        if how is None:
            return
        found: list[tuple[str, str]] = []
        _columns(inner, found, self, level)
        for table, column in dict.fromkeys(found):
            self.wrapped.append(Wrapped(table, column, how))

    def column(self, node: ast.ColumnRef, level: _Level) -> tuple[str, str] | None:
        parts = [str(f.sval) for f in node.fields or () if isinstance(f, ast.String)]
        if not parts or len(parts) != len(node.fields or ()):
            return None  # `t.*`
        if len(parts) >= 2:
            table = level.lookup(parts[-2])
            return None if table is None else (table, parts[-1])
        column = parts[0]
        lv: _Level | None = level
        while lv is not None:
            if len(lv.tables) == 1:
                return lv.tables[0], column
            owners = [t for t in lv.tables if column in self.columns_of.get(t, ())]
            if len(owners) == 1:
                return owners[0], column
            lv = lv.parent
        return None

    def sort(self, clause: Sequence[object], level: _Level) -> None:
        for item in clause:
            if not isinstance(item, ast.SortBy):
                return
            term = self.side(item.node, level)
            if term is None:
                return
            self.terms.append(Term(term.table, term.text, term.column, "sort",
                                   item.sortby_dir == enums.SortByDir.SORTBY_DESC,
                                   term.expression))


def _type_name(t: ast.TypeName | None) -> str | None:
    if t is None or t.arrayBounds:
        return None
    names = [str(n.sval) for n in t.names or () if isinstance(n, ast.String)]
    return names[-1] if names else None


def _with_role(t: Term, role: str) -> Term:
    return Term(t.table, t.text, t.column, role, t.descending, t.expression)


def _op(node: ast.A_Expr) -> str:
    return "".join(str(n.sval) for n in node.name or () if isinstance(n, ast.String))


def _conjuncts(node: object) -> list[object]:
    if node is None:
        return []
    if isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.AND_EXPR:
        return [t for a in node.args or () for t in _conjuncts(a)]
    return [node]


def _walk(node: object, visit: Callable[[ast.ColumnRef], None]) -> None:
    if isinstance(node, tuple | list):
        for item in node:
            _walk(item, visit)
        return
    if isinstance(node, ast.SubLink):
        return
    if isinstance(node, ast.ColumnRef):
        visit(node)
        return
    if isinstance(node, ast.Node):
        for slot in getattr(type(node), "__slots__", ()):
            _walk(getattr(node, slot, None), visit)


def _columns(node: object, out: list[tuple[str, str]], c: _Collector, level: _Level) -> None:
    def visit(ref: ast.ColumnRef) -> None:
        found = c.column(ref, level)
        if found is not None:
            out.append(found)

    _walk(node, visit)


def _column_refs(node: object, out: list[str], c: _Collector, level: _Level) -> None:
    pairs: list[tuple[str, str]] = []
    _columns(node, pairs, c, level)
    out.extend(t for t, _ in pairs)


def access(query: str, resolve: Mapping[str, str] | None = None,
           columns_of: Mapping[str, frozenset[str]] | None = None) -> Access:
    """The access paths one normalized statement text asks for; unparsable text gives none."""
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return Access()
    if len(stmts) != 1:
        return Access()
    c = _Collector(resolve or {}, columns_of or {})
    c.statement(stmts[0].stmt, None)
    return Access(tuple(dict.fromkeys(c.terms)), tuple(dict.fromkeys(c.wrapped)),
                  tuple(dict.fromkeys(c.tables)), True)
