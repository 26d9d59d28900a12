"""How each level's conditions reach its tables: equality, IN, range, join, sort, GIN, partial.

Read from pglast's parse tree: the FROM list's JOIN ... ON and USING (NATURAL too), the
WHERE clause's top-level AND terms, IN (SELECT ...) and EXISTS (join keys on both sides, the
subquery a level of its own), and ORDER BY (by expression, select-list alias or ordinal)
when a LIMIT makes an ordered index scan worth having. A constant equality on one side of a
join key holds on the other side too (the planner's equivalence classes). A column wrapped in
something an index cannot use as written (a cast, arithmetic, a function with parameters) is
kept apart as a rewrite hint; every other shape that gives no index key is recorded with why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pglast import ast, enums

from analyzer.recommend.predicates.collector import Level, Rel, ref
from analyzer.recommend.predicates.operands import Operands
from analyzer.recommend.predicates.patterns import (
    Part,
    like_pattern,
    like_shape,
    pattern_values,
    regex_literal,
)
from analyzer.recommend.predicates.terms import Term, Unhandled

_RANGE_OPS = {"<", ">", "<=", ">="}
_GIN_OPS = {"@>", "<@", "?", "?|", "?&", "&&", "@?", "@@"}
AEXPR = enums.A_Expr_Kind


@dataclass
class Predicates(Operands):
    """The predicate side of the statement walk (see collector.Reader)."""

    # the statement's representative parameter values (parameters.Samples.values), $1 first
    samples: Sequence[Sequence[str | None]] = ()

    def on_level(self, level: Level, quals: Sequence[object], node: ast.SelectStmt | None,
                 joins: Sequence[tuple[Rel, Rel, str, str]]) -> None:
        start = len(self.terms)
        pairs: list[tuple[Term, Term]] = []
        for ra, rb, ca, cb in joins:
            for x in self.side(ref(level, ra, ca), level):
                for y in self.side(ref(level, rb, cb), level):
                    pairs.append((x, y))
        for root in quals:
            for term in _conjuncts(root):
                if isinstance(term, ast.SubLink):
                    self.sublink(term, level, pairs)
                    continue
                self.condition(term, level, pairs)
                self.sublinks(term, level)
        for x, y in pairs:
            if (x.table, x.scan) != (y.table, y.scan):  # a self-join is two scans
                self.terms += [_with_role(x, "join"), _with_role(y, "join")]
        # a constant equality on one side of a join key holds on the other (equivalence)
        eq = {(t.table, t.scan, t.text) for t in self.terms[start:] if t.role == "equality"}
        for x, y in pairs:
            for a, b in ((x, y), (y, x)):
                if (a.table, a.scan, a.text) in eq and (b.table, b.scan, b.text) not in eq:
                    self.terms.append(_with_role(b, "equality"))
                    eq.add((b.table, b.scan, b.text))
        if node is not None and node.limitCount is not None and node.sortClause:
            self.sort(node.sortClause, level)

    # -- conditions -----------------------------------------------------------------------
    def sublink(self, node: ast.SubLink, level: Level, pairs: list[tuple[Term, Term]]) -> None:
        """EXISTS / IN (SELECT ...): the subquery is a level; IN's two sides are a join key."""
        branches = self.statement(node.subselect, level)
        if node.subLinkType != enums.SubLinkType.ANY_SUBLINK or node.testexpr is None:
            return
        outer = self.side(node.testexpr, level)
        for sub, inner_level in branches:
            targets = [t for t in sub.targetList or () if isinstance(t, ast.ResTarget)]
            if len(targets) != 1:
                continue
            for y in self.side(targets[0].val, inner_level):
                pairs += [(x, y) for x in outer]

    def sublinks(self, node: object, level: Level) -> None:
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

    def note(self, level: Level, node: object, shape: str, detail: str) -> None:
        tables: list[str | None] = list(self.tables_in(node, level)) or [None]
        for table in tables:
            self.unhandled.append(Unhandled(table, shape, detail))

    def condition(self, node: object, level: Level, pairs: list[tuple[Term, Term]]) -> None:
        if isinstance(node, ast.NullTest):
            self.partial(node.arg, level, "IS NULL" if node.nulltesttype
                         == enums.NullTestType.IS_NULL else "IS NOT NULL")
            return
        if isinstance(node, ast.ColumnRef):
            self.partial(node, level, "")
            return
        if isinstance(node, ast.BoolExpr):
            if node.boolop == enums.BoolExprType.NOT_EXPR and node.args and isinstance(
                    node.args[0], ast.ColumnRef):
                self.partial(node.args[0], level, "NOT")
            elif node.boolop == enums.BoolExprType.NOT_EXPR and node.args and not isinstance(
                    node.args[0], ast.SubLink):  # NOT EXISTS / NOT IN (…): read as sublinks
                self.note(level, node, "operator",
                          "NOT (…): a negated condition, which no index type serves")
            elif node.boolop == enums.BoolExprType.OR_EXPR:
                self.disjunction(node, level)
            return
        if not isinstance(node, ast.A_Expr):
            return
        op, kind = _op(node), node.kind
        if isinstance(node.lexpr, ast.RowExpr) and kind in (AEXPR.AEXPR_OP, AEXPR.AEXPR_IN):
            self.row_comparison(node, level, pairs, op)
            return
        if kind in (AEXPR.AEXPR_LIKE, AEXPR.AEXPR_ILIKE):
            self.like(node, level, op)
            return
        if kind in (AEXPR.AEXPR_IN, AEXPR.AEXPR_OP_ANY):
            role = "in" if op == "=" else ""
        elif kind == AEXPR.AEXPR_BETWEEN:
            role = "range"
        elif kind == AEXPR.AEXPR_OP and op == "=":
            role = "equality"
        elif kind == AEXPR.AEXPR_OP and op in _RANGE_OPS:
            role = "range"
        elif kind == AEXPR.AEXPR_OP and op in _GIN_OPS:
            self.gin(node, level, op)
            return
        elif kind == AEXPR.AEXPR_OP and op in ("~", "~*"):
            self.trigram(node, level, op, regex_literal(_const(node.rexpr)))
            return
        else:
            role = ""
        if not role:
            if self.side(node.lexpr, level) or self.side(node.rexpr, level):
                self.note(level, node, "operator",
                          f"{_describe(node)}: no index type serves this comparison")
            return
        left = self.side(node.lexpr, level)
        right = self.side(node.rexpr, level) if role in ("equality", "range") else []
        if left and right and {(t.table, t.scan) for t in left}.isdisjoint(
                {(t.table, t.scan) for t in right}):
            if role == "equality":  # a join key on both sides
                pairs += [(x, y) for x in left for y in right]
            return
        for mine, other in ((left, node.rexpr), (right, node.lexpr)):
            keys = [t for t in mine if not self.refers(other, level, t)]
            if keys:
                self.terms += [_with_role(t, role) for t in keys]
                return
        self.wrapped_columns(node.lexpr, level)
        if role in ("equality", "range"):
            self.wrapped_columns(node.rexpr, level)

    def row_comparison(self, node: ast.A_Expr, level: Level, pairs: list[tuple[Term, Term]],
                       op: str) -> None:
        """`(a, b) = ($1, $2)`: an equality on each; `(a, b) > ($1, $2)` (keyset pagination):
        a range on the leading column, which with its `ORDER BY a, b` makes the index
        `(a, b)` the row comparison is an index condition of; `(a, b) IN ((…), (…))`: each
        column is an IN list."""
        assert isinstance(node.lexpr, ast.RowExpr)
        left = list(node.lexpr.args or ())
        if node.kind == AEXPR.AEXPR_IN and op == "=":
            rows = node.rexpr if isinstance(node.rexpr, tuple | list) else ()
            if rows and all(isinstance(r, ast.RowExpr) and len(r.args or ()) == len(left)
                            for r in rows):
                for i, column in enumerate(left):
                    self.condition(_expr(AEXPR.AEXPR_IN, "=", column,
                                         tuple(r.args[i] for r in rows)), level, pairs)
                return
        elif isinstance(node.rexpr, ast.RowExpr) and len(node.rexpr.args or ()) == len(left):
            right = list(node.rexpr.args or ())
            if op == "=":
                for a, b in zip(left, right, strict=True):
                    self.condition(_expr(AEXPR.AEXPR_OP, "=", a, b), level, pairs)
                return
            if op in _RANGE_OPS and left:
                self.condition(_expr(AEXPR.AEXPR_OP, op, left[0], right[0]), level, pairs)
                return
        self.note(level, node, "operator",
                  f"row comparison {_describe(node)}: only =, <, <=, >, >= of two rows of the "
                  "same length and IN of such rows are read")

    def partial(self, node: object, level: Level, how: str) -> None:
        """A constant predicate (IS NULL, a boolean column): a partial index's WHERE.

        Only the statement's own: a view's constant predicates hold for every statement on
        the view, and a partial index the planner must prove from a view's body is one it
        does not always take (seen with hypopg), so those give plain indexes."""
        for t in self.side(node, level):
            if self.in_view:
                return
            if t.expression:
                continue
            text = f"NOT {t.text}" if how == "NOT" else f"{t.text} {how}".strip()
            self.terms.append(Term(t.table, text, t.column, "partial", scan=t.scan))

    def disjunction(self, node: ast.BoolExpr, level: Level) -> None:
        """`a = 1 OR a = 2` is `a IN (1, 2)`; any other OR is reported."""
        sides = []
        for arg in node.args or ():
            if isinstance(arg, ast.A_Expr) and arg.kind == AEXPR.AEXPR_OP and _op(arg) == "=" \
                    and not self.tables_in(arg.rexpr, level):
                sides.append(tuple(self.side(arg.lexpr, level)))
            else:
                sides.append(())
        if sides and sides[0] and all(s == sides[0] for s in sides):
            self.terms += [_with_role(t, "in") for t in sides[0]]
            return
        self.note(level, node, "or", "an OR of conditions on different columns (an index "
                                     "per branch, BitmapOr) is not proposed")

    def like(self, node: ast.A_Expr, level: Level, op: str) -> None:
        cols = self.side(node.lexpr, level)
        if not cols:
            return
        negated, insensitive = op.startswith("!"), op.endswith("*")
        what = ("NOT " if negated else "") + ("ILIKE" if insensitive else "LIKE")
        if negated:
            self.note(level, node, "operator", f"{what}: no index serves a negated pattern")
            return
        parts, escape = like_pattern(node.rexpr)
        literal: str | None
        if parts is not None and all(isinstance(p, str) for p in parts):
            shape, literal = like_shape("".join(str(p) for p in parts), escape)
        elif parts is None:
            self.note(level, node, "like_parameter", f"{what} with a parameter: the pattern "
                      "(a prefix or a substring) is not known from the statement text")
            return
        else:
            sampled = self.sampled_shape(node, level, what, parts, escape, insensitive)
            if sampled is None:
                return
            shape, literal = sampled
        if shape == "exact" and not insensitive:
            self.terms += [_with_role(t, "equality") for t in cols]
        elif shape == "prefix" and not insensitive:
            for t in cols:
                info = self.relations.get(t.table)
                col = info.columns.get(t.column) if info is not None else None
                opclass = None if col is not None and col.byte_ordered else (
                    col.pattern_ops if col is not None else "text_pattern_ops")
                self.terms.append(Term(t.table, t.text, t.column, "range",
                                       expression=t.expression, opclass=opclass, scan=t.scan))
        else:
            self.trigram(node, level, what, literal)

    def sampled_shape(self, node: ast.A_Expr, level: Level, what: str,
                      parts: Sequence[Part], escape: str, insensitive: bool
                      ) -> tuple[str, str | None] | None:
        """A parameter's pattern judged by the statement's representative values: a prefix
        when every sample is left-anchored (an exact value is too); a substring (ILIKE, or
        samples that are not anchored) with the shortest sample's longest literal run, for
        the trigram path where pg_trgm is installed; else noted with why."""
        patterns = pattern_values(parts, self.samples)
        if not patterns or None in patterns:
            self.note(level, node, "like_parameter", f"{what} with a parameter: the pattern "
                      "(a prefix or a substring) is not known from the statement text, and no "
                      "representative values are known for its parameters (pg_qualstats, the "
                      "server log)")
            return None
        unanchored = [p for p in patterns if p is not None
                      and like_shape(p, escape)[0] == "substring"]
        if (unanchored or insensitive) and "pg_trgm" in self.relations.extensions:
            runs = [like_shape(p, escape)[1] for p in patterns if p is not None]
            return "substring", min(runs, key=len)
        if unanchored:
            self.note(level, node, "like_parameter", f"{what} with a parameter: "
                      f"{len(unanchored)} of its {len(patterns)} sampled values are not "
                      f"left-anchored prefixes (such as '{unanchored[0]}'): a btree serves "
                      "only a prefix")
            return None
        if insensitive:
            self.note(level, node, "no_trigram", f"{what} with a parameter needs a trigram "
                      "index: the pg_trgm extension is not installed")
            return None
        return "prefix", None

    def trigram(self, node: ast.A_Expr, level: Level, what: str, literal: str | None) -> None:
        cols = self.side(node.lexpr, level)
        if not cols:
            return
        if literal is None:
            self.note(level, node, "like_parameter", f"{what} with a parameter: the pattern "
                      "is not known from the statement text")
        elif len(literal) < 3:
            self.note(level, node, "short_pattern", f"{what} '{literal}': fewer than 3 "
                      "characters in a row give a trigram index nothing to look up")
        elif "pg_trgm" not in self.relations.extensions:
            self.note(level, node, "no_trigram", f"{what} '%{literal}%' needs a trigram "
                      "index: the pg_trgm extension is not installed")
        else:
            self.terms += [Term(t.table, t.text, t.column, "gin", expression=t.expression,
                                opclass="gin_trgm_ops", method="gin", scan=t.scan)
                           for t in cols]

    def gin(self, node: ast.A_Expr, level: Level, op: str) -> None:
        cols = [t for t in self.side(node.lexpr, level)
                if not self.refers(node.rexpr, level, t)]
        if not cols:
            return
        for t in cols:
            info = self.relations.get(t.table)
            col = info.columns.get(t.column) if info is not None else None
            if col is not None and col.category == "R":
                self.note(level, node, "operator", f"{t.text} {op}: a range type needs a "
                          "GiST index, which is not proposed")
                continue
            if col is not None and not (col.category == "A" or col.type in (
                    "jsonb", "tsvector")):
                self.note(level, node, "operator", f"{t.text} {op}: no GIN operator class "
                          f"for type {col.type}")
                continue
            self.terms.append(Term(t.table, t.text, t.column, "gin", expression=t.expression,
                                   method="gin", scan=t.scan))

    def sort(self, clause: Sequence[object], level: Level) -> None:
        """ORDER BY ... LIMIT: by expression, by select-list alias, or by ordinal."""
        terms: list[Term] = []
        for item in clause:
            if not isinstance(item, ast.SortBy):
                return
            expr = self.sort_key(item.node, level)
            found = self.side(expr, level) if expr is not None else []
            if len(found) != 1:
                return
            t = found[0]
            terms.append(Term(t.table, t.text, t.column, "sort",
                              item.sortby_dir == enums.SortByDir.SORTBY_DESC, t.expression,
                              scan=t.scan))
        self.terms += terms

    def sort_key(self, node: object, level: Level) -> object | None:
        """What an ORDER BY item sorts by: an ordinal or an output alias is the select list's
        expression (a bare name is an output column first, as PostgreSQL reads it)."""
        targets = level.targets
        if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
            n = int(node.val.ival or 0)
            value = targets[n - 1].val if 1 <= n <= len(targets) else None
            if value is None or (isinstance(value, ast.ColumnRef) and any(
                    isinstance(f, ast.A_Star) for f in value.fields or ())):
                self.note(level, None, "order_by", f"ORDER BY {n}: the select list has no "
                          "such plain column (or it is *)")
                return None
            return value
        fields = node.fields or () if isinstance(node, ast.ColumnRef) else ()
        if len(fields) == 1 and isinstance(fields[0], ast.String):
            name = str(fields[0].sval)
            for t in targets:
                if t.name and str(t.name) == name:
                    return t.val
        return node


def _with_role(t: Term, role: str) -> Term:
    return replace(t, role=role)


def _expr(kind: enums.A_Expr_Kind, op: str, left: Any, right: Any) -> ast.A_Expr:
    """A comparison as pglast would have parsed it (one column of a row comparison)."""
    made: ast.A_Expr = ast.A_Expr(kind=kind, name=(ast.String(sval=op),), lexpr=left,
                                  rexpr=right)
    return made


def _op(node: ast.A_Expr) -> str:
    return "".join(str(n.sval) for n in node.name or () if isinstance(n, ast.String))


def _describe(node: ast.A_Expr) -> str:
    kind = node.kind
    prefix = "NOT " if kind in (AEXPR.AEXPR_NOT_BETWEEN, AEXPR.AEXPR_NOT_DISTINCT) else ""
    if kind == AEXPR.AEXPR_IN and _op(node) == "<>":
        return "NOT IN"
    if kind in (AEXPR.AEXPR_BETWEEN, AEXPR.AEXPR_NOT_BETWEEN):
        return prefix + "BETWEEN"
    if kind == AEXPR.AEXPR_DISTINCT:
        return "IS DISTINCT FROM"
    return f"operator {_op(node)}"


def _const(node: object) -> str | None:
    """A string constant (possibly cast: 'abc%'::text), or None."""
    if isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return str(node.val.sval)
    return None


def _conjuncts(node: object) -> list[object]:
    if node is None:
        return []
    if isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.AND_EXPR:
        return [t for a in node.args or () for t in _conjuncts(a)]
    return [node]
