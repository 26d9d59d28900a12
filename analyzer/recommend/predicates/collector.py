"""Query levels and the relations in them: tables, views, subqueries, CTEs.

Per query level (subqueries, CTE bodies and each branch of a UNION are levels of their own)
the FROM list is read into relations: a base table (a partition stands for its partitioned
root: the index belongs on the parent), or a *derived* relation -- a view (its definition
read from the target, nested views to any depth), a subquery in FROM, or a CTE the planner
inlines (a plain one referenced once, or `NOT MATERIALIZED`) -- whose output columns map to
expressions of the level below. A condition on a derived column reaches the base table when
the planner would push it down (no LIMIT, aggregate or window function in the way); a
`MATERIALIZED` CTE (or one referenced twice, or recursive) is scanned as it is, so conditions
on it reach no index: those are reported, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from analyzer.names import qualified
from analyzer.recommend.predicates.relations import Relations
from analyzer.recommend.predicates.terms import Term, Unhandled, Wrapped

_MAX_DEPTH = 16


@dataclass
class Rel:
    """One relation of a level: a base table, or a derived one with its output columns."""

    name: str  # base: schema.table; derived: its alias
    base: bool
    # derived: output column -> (expression, level it is evaluated in), one per UNION branch
    columns: dict[str, list[tuple[object, Level]]] = field(default_factory=dict)
    why_not: str | None = None  # derived: why conditions on it do not reach base tables
    # derived: output columns only grouping lets conditions through (None: all of them)
    pushable: frozenset[str] | None = None
    reads: list[str] = field(default_factory=list)  # a materialized CTE: its base tables
    scan: int = 0  # base: which reference to the table this is (Term.scan)


@dataclass
class Level:
    """One query level: its relations by alias, the CTEs it sees, its select list."""

    aliases: dict[str, Rel] = field(default_factory=dict)
    rels: list[Rel] = field(default_factory=list)
    parent: Level | None = None
    ctes: dict[str, ast.CommonTableExpr] = field(default_factory=dict)
    materialized: dict[str, list[str]] = field(default_factory=dict)  # CTE -> tables read
    merged: dict[str, Rel] = field(default_factory=dict)  # USING / NATURAL columns
    targets: list[ast.ResTarget] = field(default_factory=list)

    def lookup(self, qualifier: str) -> Rel | None:
        level: Level | None = self
        while level is not None:
            if qualifier in level.aliases:
                return level.aliases[qualifier]
            level = level.parent
        return None

    def cte(self, name: str) -> tuple[ast.CommonTableExpr, list[str] | None] | None:
        level: Level | None = self
        while level is not None:
            if name in level.ctes:
                return level.ctes[name], level.materialized.get(name)
            level = level.parent
        return None


def _names(node: object, out: dict[str, int]) -> None:
    """How often each unqualified relation name is referenced (for CTE inlining)."""
    if isinstance(node, tuple | list):
        for item in node:
            _names(item, out)
    elif isinstance(node, ast.RangeVar):
        if not node.schemaname:
            out[str(node.relname)] = out.get(str(node.relname), 0) + 1
    elif isinstance(node, ast.Node):
        for slot in getattr(type(node), "__slots__", ()):
            _names(getattr(node, slot, None), out)


def _has(node: object, kinds: tuple[type, ...], stop_at_sublink: bool = True) -> bool:
    if isinstance(node, tuple | list):
        return any(_has(i, kinds, stop_at_sublink) for i in node)
    if isinstance(node, kinds):
        return True
    if stop_at_sublink and isinstance(node, ast.SubLink):
        return False
    if isinstance(node, ast.Node):
        return any(_has(getattr(node, s, None), kinds, stop_at_sublink)
                   for s in getattr(type(node), "__slots__", ()))
    return False


def _aggregate(node: object) -> bool:
    """Whether an expression holds an aggregate or window call (approximated by FuncCall
    with `*`, DISTINCT, OVER, or a well-known aggregate name)."""
    if isinstance(node, tuple | list):
        return any(_aggregate(i) for i in node)
    if isinstance(node, ast.FuncCall):
        name = str(node.funcname[-1].sval) if node.funcname else ""
        if node.agg_star or node.agg_distinct or node.over is not None or name.lower() in {
                "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and",
                "bool_or", "every", "jsonb_agg", "json_agg", "jsonb_object_agg"}:
            return True
    if isinstance(node, ast.SubLink):
        return False
    if isinstance(node, ast.Node):
        return any(_aggregate(getattr(node, s, None)) for s in getattr(type(node), "__slots__", ()))
    return False


def output_name(t: ast.ResTarget) -> str | None:
    """The name a select-list entry is known by outside (PostgreSQL's rule, roughly)."""
    if t.name:
        return str(t.name)
    v = t.val
    if isinstance(v, ast.ColumnRef) and v.fields and isinstance(v.fields[-1], ast.String):
        return str(v.fields[-1].sval)
    if isinstance(v, ast.FuncCall) and v.funcname:
        return str(v.funcname[-1].sval)
    if isinstance(v, ast.TypeCast) and isinstance(v.arg, ast.ColumnRef) and v.arg.fields \
            and isinstance(v.arg.fields[-1], ast.String):
        return str(v.arg.fields[-1].sval)
    return None


@dataclass
class Reader:
    """Walks a statement's levels; `on_level` reads each level's conditions (predicates)."""

    resolve: Mapping[str, str]
    columns_of: Mapping[str, frozenset[str]]
    relations: Relations
    tables: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    wrapped: list[Wrapped] = field(default_factory=list)
    unhandled: list[Unhandled] = field(default_factory=list)
    depth: int = 0
    in_view: int = 0  # reading a view's definition: its constants are not the statement's
    scans: int = 0  # base relations met so far (each reference is one scan)

    # -- to be provided by the predicate reader ------------------------------------------
    def on_level(self, level: Level, quals: Sequence[object], node: ast.SelectStmt | None,
                 joins: Sequence[tuple[Rel, Rel, str, str]]) -> None:
        raise NotImplementedError

    # -- relations -----------------------------------------------------------------------
    def table_name(self, rv: ast.RangeVar) -> str:
        name = qualified(str(rv.schemaname) if rv.schemaname else None, str(rv.relname))
        return self.resolve.get(name, self.relations.resolved.get(name, name))

    def base(self, name: str) -> Rel:
        rel = self.relations.get(name)
        if rel is not None and rel.root is not None:
            name = rel.root  # a partition: the index belongs on its partitioned root
        self.tables.append(name)
        self.scans += 1
        return Rel(name, True, scan=self.scans)

    def known_columns(self, rel: Rel) -> frozenset[str] | None:
        if not rel.base:
            return frozenset(rel.columns)
        found = self.columns_of.get(rel.name)
        if found is None:
            r = self.relations.get(rel.name)
            found = frozenset(r.columns) if r is not None and r.columns else None
        return found

    def range_var(self, node: ast.RangeVar, level: Level) -> Rel:
        alias = str(node.alias.aliasname) if node.alias and node.alias.aliasname else None
        cte = level.cte(str(node.relname)) if not node.schemaname else None
        if cte is not None:
            body, materialized = cte
            if materialized is not None:
                rel = Rel(alias or str(node.relname), False,
                          why_not=f"CTE {node.relname} is materialized: conditions on it "
                                  "are applied to its result, not to a table",
                          reads=materialized)
            else:
                rel = self.derived(body.ctequery, alias or str(node.relname), level,
                                   [str(c.sval) for c in body.aliascolnames or ()])
        else:
            name = self.table_name(node)
            info = self.relations.get(name)
            if info is not None and info.kind == "view" and info.definition \
                    and self.depth < _MAX_DEPTH:
                rel = self.view(info.definition, alias or str(node.relname))
            else:
                rel = self.base(name)
        level.aliases[str(node.relname)] = rel
        if alias:
            level.aliases[alias] = rel
        level.rels.append(rel)
        return rel

    def view(self, definition: str, alias: str) -> Rel:
        try:
            stmts = parse_sql(definition)
        except (ParseError, ValueError):
            stmts = ()
        if len(stmts) != 1:
            return Rel(alias, False, why_not=f"the definition of view {alias} does not parse")
        self.in_view += 1
        try:
            return self.derived(stmts[0].stmt, alias, None, [])
        finally:
            self.in_view -= 1

    def derived(self, query: object, alias: str, parent: Level | None,
                colnames: Sequence[str]) -> Rel:
        """A derived relation from a SELECT (a view, a FROM subquery, an inlined CTE)."""
        if not isinstance(query, ast.SelectStmt):
            return Rel(alias, False, why_not=f"{alias} is not a SELECT")
        self.depth += 1
        try:
            branches = self.select(query, parent)
        finally:
            self.depth -= 1
        rel = Rel(alias, False)
        why = _not_pushable(query)
        if why is not None:
            rel.why_not = f"{alias}: {why}"
        grouped: set[str] | None = None
        for node, level in branches:
            names: list[tuple[str | None, object]] = []
            for t in node.targetList or ():
                if not isinstance(t, ast.ResTarget):
                    continue
                if isinstance(t.val, ast.ColumnRef) and t.val.fields and isinstance(
                        t.val.fields[-1], ast.A_Star):
                    for r in level.rels:
                        for col in sorted(self.known_columns(r) or ()):
                            names.append((col, ref(level, r, col)))
                    continue
                names.append((output_name(t), t.val))
            if colnames and len(colnames) <= len(names):
                names = [(colnames[i] if i < len(colnames) else n, v)
                         for i, (n, v) in enumerate(names)]
            for name, value in names:
                if name is not None:
                    rel.columns.setdefault(name, []).append((value, level))
            if node.groupClause or node.havingClause or _aggregate(node.targetList):
                keys = {_last_field(g) for g in node.groupClause or ()} - {None}
                grouped = (grouped or set()) | {
                    n for n, v in names if n is not None and _last_field(v) in keys}
        if grouped is not None:
            rel.pushable = frozenset(grouped)
        return rel

    def from_item(self, node: object, level: Level, quals: list[object],
                  joins: list[tuple[Rel, Rel, str, str]]) -> list[Rel]:
        if isinstance(node, ast.RangeVar):
            return [self.range_var(node, level)]
        if isinstance(node, ast.JoinExpr):
            left = self.from_item(node.larg, level, quals, joins)
            right = self.from_item(node.rarg, level, quals, joins)
            using = [str(s.sval) for s in node.usingClause or ()]
            if node.isNatural:
                lc = set().union(*(self.known_columns(r) or () for r in left))
                rc = set().union(*(self.known_columns(r) or () for r in right))
                using = sorted(lc & rc)
            for col in using:
                a = next((r for r in left if col in (self.known_columns(r) or ())), None)
                b = next((r for r in right if col in (self.known_columns(r) or ())), None)
                if a is None and len(left) == 1:
                    a = left[0]
                if b is None and len(right) == 1:
                    b = right[0]
                if a is not None and b is not None:
                    joins.append((a, b, col, col))
                    level.merged.setdefault(col, a)
            if node.quals is not None:
                quals.append(node.quals)
            return left + right
        if isinstance(node, ast.RangeSubselect) and node.subquery is not None:
            alias = str(node.alias.aliasname) if node.alias and node.alias.aliasname else ""
            colnames = [str(c.sval) for c in (node.alias.colnames or ())] if node.alias else []
            rel = self.derived(node.subquery, alias, level if node.lateral else None, colnames)
            if alias:
                level.aliases[alias] = rel
            level.rels.append(rel)
            return [rel]
        return []

    def statement(self, node: object, parent: Level | None) -> list[tuple[ast.SelectStmt, Level]]:
        if isinstance(node, ast.SelectStmt):
            return self.select(node, parent)
        if isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
            level = Level(parent=parent)
            self.with_clause(node.withClause, node, level)
            quals: list[object] = []
            joins: list[tuple[Rel, Rel, str, str]] = []
            if node.relation is not None:
                self.from_item(node.relation, level, quals, joins)
            extra = node.fromClause if isinstance(node, ast.UpdateStmt) else node.usingClause
            for item in extra or ():
                self.from_item(item, level, quals, joins)
            self.on_level(level, [*quals, node.whereClause], None, joins)
        elif isinstance(node, ast.MergeStmt):
            # MERGE joins its target and its source on the ON condition, as a join would.
            level = Level(parent=parent)
            self.with_clause(node.withClause, node, level)
            merge_quals: list[object] = []
            merge_joins: list[tuple[Rel, Rel, str, str]] = []
            for item in (node.relation, node.sourceRelation):
                if item is not None:
                    self.from_item(item, level, merge_quals, merge_joins)
            self.on_level(level, [*merge_quals, node.joinCondition], None, merge_joins)
        elif isinstance(node, ast.InsertStmt) and node.selectStmt is not None:
            level = Level(parent=parent)
            self.with_clause(node.withClause, node, level)
            return self.statement(node.selectStmt, level)
        return []

    def with_clause(self, clause: ast.WithClause | None, owner: object, level: Level) -> None:
        """Register the CTEs a level sees; walk the bodies the planner keeps as they are."""
        if clause is None:
            return
        counts: dict[str, int] = {}
        _names(owner, counts)
        for cte in clause.ctes or ():
            if not isinstance(cte, ast.CommonTableExpr) or not cte.ctename:
                continue
            name = str(cte.ctename)
            refs = counts.get(name, 0)
            how = cte.ctematerialized
            select = isinstance(cte.ctequery, ast.SelectStmt)
            inlined = select and not clause.recursive and (
                how == enums.CTEMaterialize.CTEMaterializeNever
                or (how == enums.CTEMaterialize.CTEMaterializeDefault and refs <= 1))
            level.ctes[name] = cte
            if not inlined:
                before = len(self.tables)
                # Known as materialized before its body is read: a recursive CTE's body
                # names the CTE itself, which must not be inlined into itself again.
                level.materialized[name] = []
                if refs or not select:  # an unreferenced SELECT CTE is never run
                    self.statement(cte.ctequery, level)
                level.materialized[name] = list(dict.fromkeys(self.tables[before:]))

    def select(self, node: ast.SelectStmt, parent: Level | None
               ) -> list[tuple[ast.SelectStmt, Level]]:
        """Read one SELECT (every branch of a set operation); its branches and levels."""
        scope = Level(parent=parent)
        self.with_clause(node.withClause, node, scope)
        if node.op != enums.SetOperation.SETOP_NONE:
            out = []
            for side in (node.larg, node.rarg):
                if side is not None:
                    out += self.select(side, scope)
            return out
        level = Level(parent=scope)
        quals: list[object] = []
        joins: list[tuple[Rel, Rel, str, str]] = []
        for item in node.fromClause or ():
            self.from_item(item, level, quals, joins)
        level.targets = [t for t in node.targetList or () if isinstance(t, ast.ResTarget)]
        self.on_level(level, [*quals, node.whereClause], node, joins)
        return [(node, level)]


def ref(level: Level, rel: Rel, column: str) -> ast.ColumnRef:
    """A column reference to `rel.column` as the level knows the relation (by an alias)."""
    key = next((k for k, v in level.aliases.items() if v is rel), rel.name)
    return ast.ColumnRef(fields=(ast.String(sval=key), ast.String(sval=column)))


def _last_field(node: object) -> str | None:
    if isinstance(node, ast.ColumnRef) and node.fields and isinstance(node.fields[-1], ast.String):
        return str(node.fields[-1].sval)
    return None


def _not_pushable(q: ast.SelectStmt) -> str | None:
    """Why conditions on this subquery's output stay above it (None: they are pushed down)."""
    if q.limitCount is not None or q.limitOffset is not None:
        return "it has a LIMIT or OFFSET"
    if q.distinctClause:
        return "it has DISTINCT"
    if _has(q.targetList, (ast.WindowDef,), True) or any(
            isinstance(t, ast.ResTarget) and isinstance(t.val, ast.FuncCall)
            and t.val.over is not None for t in q.targetList or ()):
        return "it has a window function"
    if q.op != enums.SetOperation.SETOP_NONE:
        for side in (q.larg, q.rarg):
            why = _not_pushable(side) if side is not None else None
            if why is not None:
                return why
    return None
