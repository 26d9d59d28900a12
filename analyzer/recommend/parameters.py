"""Representative parameter values for a normalised statement ($1, $2 … for its constants).

A what-if planned with a generic plan guesses every parameter: `created_at > $1` matches a
third of the table, whatever the workload asks. Custom plans with the values the workload
uses (or values drawn like them) say what an index would really save. Where they come from,
best first:

1. pg_qualstats' stored constants (where the extension is installed): the values the
   workload used, per statement, column and operator;
1b. bind parameters from the server's log (`logged_values`: `execute …` lines with their
   `Parameters: $1 = '…'` detail, as `log_min_duration_statement` / `log_statement` write
   them, read by `bind_values`; values cut by `log_parameter_max_length` count as unknown),
   where the caller has the log;
2. `pg_stats` of the predicate's column: equality and IN from the most common values and the
   histogram (values drawn the way the data is spread); a one-sided range (`created_at > $1`)
   at a low, middle and high histogram bound, a two-sided one (`BETWEEN $1 AND $2`) as one
   histogram bucket at three places — the spread over these samples is part of the evidence;
3. LIMIT from the statement's measured rows per call, OFFSET 0.

A parameter no source can give is unknown: the statement is then planned generically, and a
range among its unknowns is never judged on the plan at all (the engine falls back on the
measured history). `bindings` (pure) finds which column and operator each `$n` is compared
with; `samples` (pure) draws the values; `read_sources` reads pg_qualstats and pg_stats.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast, enums, fingerprint, parse_sql
from pglast.parser import ParseError

from analyzer.names import pair, qualified
from analyzer.recommend.model import StatementEvidence
from analyzer.snapshots.own import register_own
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.recommend")

SAMPLES = 3  # parameter samples planned per statement
RANGE_QUANTILES = (0.1, 0.5, 0.9)  # where a one-sided range is sampled without constants
_OPS = {"=": "equality", "<": "range", ">": "range", "<=": "range", ">=": "range"}

HAS_QUALSTATS = ("/* pgarchitect */ SELECT 1 FROM pg_extension WHERE extname = 'pg_qualstats'")
QUALSTATS = """/* pgarchitect */
SELECT q.queryid, n.nspname, c.relname, a.attname,
       regexp_replace(q.opno::regoper::text, '^pg_catalog\\.', ''), q.constvalue
FROM pg_qualstats() q
JOIN pg_class c ON c.oid = q.lrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = q.lrelid AND a.attnum = q.lattnum
WHERE q.queryid = ANY(%s) AND q.constvalue IS NOT NULL
ORDER BY q.occurences DESC
"""
COLUMN_VALUES = """/* pgarchitect */
SELECT k.name, s.attname, s.most_common_vals::text::text[], s.histogram_bounds::text::text[]
FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(name, nsp, rel)
JOIN pg_stats s ON s.schemaname = k.nsp AND s.tablename = k.rel
WHERE NOT s.inherited AND s.attname = ANY(%s)
"""
register_own(HAS_QUALSTATS, QUALSTATS, COLUMN_VALUES)


@dataclass(frozen=True)
class Binding:
    """What one `$n` of a statement is compared with."""

    number: int
    table: str | None = None
    column: str | None = None
    op: str = ""  # =, <, >, <=, >=, between_low, between_high, in, limit, offset
    role: str = "other"  # equality | in | range | limit | offset | other


@dataclass(frozen=True)
class ColumnValues:
    """pg_stats' most common values and histogram bounds of one column (as text)."""

    common: tuple[str, ...] = ()
    histogram: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sources:
    """What the target knows of the workload's values."""

    # (queryid, table, column, operator) -> the constants pg_qualstats kept, most used first
    qualstats: Mapping[tuple[int, str, str, str], tuple[str, ...]] = field(default_factory=dict)
    columns: Mapping[tuple[str, str], ColumnValues] = field(default_factory=dict)
    # pglast fingerprint of a statement -> parameter tuples seen bound to it in the log
    logged: Mapping[str, tuple[tuple[str | None, ...], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Samples:
    """The parameter values to plan one statement with (custom plans)."""

    values: tuple[tuple[str | None, ...], ...] = ()  # one tuple per sample, $1 first
    source: str = "none"  # pg_qualstats | server_log | pg_stats | statement (none) | none
    unknown: tuple[int, ...] = ()  # parameters no source could give
    unknown_range: bool = False  # one of them is a range: never judged on a generic plan

    @property
    def custom(self) -> bool:
        """Whether the statement can be planned with values (all parameters known)."""
        return bool(self.values) and not self.unknown


def _unwrap(node: object) -> object:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _param(node: object) -> int | None:
    node = _unwrap(node)
    return int(node.number or 0) if isinstance(node, ast.ParamRef) else None


def _walk(node: object, visit: Any) -> None:
    if isinstance(node, list | tuple):
        for n in node:
            _walk(n, visit)
        return
    if not isinstance(node, ast.Node):
        return
    visit(node)
    for slot in getattr(type(node), "__slots__", ()):
        value = getattr(node, slot, None)
        if isinstance(value, ast.Node | tuple | list):
            _walk(value, visit)


def bindings(query: str, resolve: Mapping[str, str] | None = None,
             columns_of: Mapping[str, frozenset[str]] | None = None) -> dict[int, Binding]:
    """Each `$n` of `query` with the column and operator it is compared with (pure).

    Tables are named as `resolve` maps them (schema.table); a bare column belongs to the one
    table of the statement that has it (`columns_of`), or to the only table.
    """
    try:
        stmts = parse_sql(query)
    except (ParseError, ValueError):
        return {}
    if len(stmts) != 1:
        return {}
    resolve, columns_of = resolve or {}, columns_of or {}
    aliases: dict[str, str] = {}
    tables: list[str] = []
    exprs: list[ast.A_Expr] = []
    limits: list[tuple[object, str]] = []

    def visit(node: ast.Node) -> None:
        if isinstance(node, ast.RangeVar):
            name = f"{node.schemaname}.{node.relname}" if node.schemaname else str(node.relname)
            table = resolve.get(name, name)
            tables.append(table)
            aliases.setdefault(str(node.relname), table)
            if node.alias is not None and node.alias.aliasname:
                aliases[str(node.alias.aliasname)] = table
        elif isinstance(node, ast.A_Expr):
            exprs.append(node)
        elif isinstance(node, ast.SelectStmt):
            limits.extend([(node.limitCount, "limit"), (node.limitOffset, "offset")])

    _walk(stmts[0].stmt, visit)

    def column(node: object) -> tuple[str, str] | None:
        node = _unwrap(node)
        if not isinstance(node, ast.ColumnRef):
            return None
        parts = [str(f.sval) for f in node.fields or () if isinstance(f, ast.String)]
        if not parts or len(parts) != len(node.fields or ()):
            return None
        if len(parts) >= 2:
            table = aliases.get(parts[-2])
            return None if table is None else (table, parts[-1])
        owners = sorted({t for t in tables if parts[0] in columns_of.get(t, ())})
        if len(owners) == 1:
            return owners[0], parts[0]
        unique = sorted(set(tables))
        return (unique[0], parts[0]) if len(unique) == 1 else None

    out: dict[int, Binding] = {}
    for e in exprs:
        op = ".".join(str(n.sval) for n in e.name or () if isinstance(n, ast.String))
        col, other, flipped = column(e.lexpr), e.rexpr, False
        if col is None:
            col, other, flipped = column(e.rexpr), e.lexpr, True
        if col is None:
            continue
        kind = e.kind
        if kind == enums.A_Expr_Kind.AEXPR_OP and op in _OPS:
            n = _param(other)
            if n is not None:
                if flipped and op in ("<", ">", "<=", ">="):
                    op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}[op]
                out.setdefault(n, Binding(n, *col, op, _OPS[op]))
        elif kind in (enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_BETWEEN_SYM) \
                and isinstance(e.rexpr, list | tuple) and len(e.rexpr) == 2:
            for item, which in zip(e.rexpr, ("between_low", "between_high"), strict=True):
                n = _param(item)
                if n is not None:
                    out.setdefault(n, Binding(n, *col, which, "range"))
        elif kind == enums.A_Expr_Kind.AEXPR_IN and isinstance(e.rexpr, list | tuple):
            for item in e.rexpr:
                n = _param(item)
                if n is not None:
                    out.setdefault(n, Binding(n, *col, "=", "equality"))
    for node, role in limits:
        n = _param(node) if node is not None else None
        if n is not None:
            out.setdefault(n, Binding(n, None, None, role, role))
    return out


def parameter_count(query: str) -> int:
    """The highest `$n` of a normalised text (0: none)."""
    return max((int(p) for p in re.findall(r"\$(\d+)", query)), default=0)


def _spread(values: Sequence[str], k: int) -> list[str]:
    """`k` values spread over a sorted list (its middle first)."""
    if not values:
        return []
    picks = [values[len(values) // 2], values[len(values) // 4], values[(3 * len(values)) // 4]]
    return (picks * k)[:k]


def _quantile(values: Sequence[str], q: float) -> str:
    """The value at quantile `q` of a sorted list."""
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def _from_stats(b: Binding, cv: ColumnValues, k: int) -> list[str]:
    if b.role == "equality":
        # The most common value (the worst case for an index) and typical others.
        pool = list(cv.common[:1]) + _spread(cv.histogram, k) if cv.histogram else \
            _spread(list(cv.common), k)
        return (pool * k)[:k] if pool else []
    h = cv.histogram
    if len(h) < 3:
        return []
    if b.op in ("between_low", "between_high"):
        shift = 0 if b.op == "between_low" else 1
        spots = [round(q * (len(h) - 2)) for q in RANGE_QUANTILES]
        return [h[i + shift] for i in spots][:k]
    return [_quantile(h, q) for q in RANGE_QUANTILES][:k]


def samples(statement: StatementEvidence, bound: Mapping[int, Binding], sources: Sources,
            k: int = SAMPLES) -> Samples:
    """Up to `k` value tuples for the statement's parameters, and where they came from."""
    count = parameter_count(statement.query)
    if count == 0:
        return Samples(((),), "statement")
    logged = [v for v in sources.logged.get(_fingerprint(statement.query) or "", ())
              if len(v) >= count]
    has_qualstats = any(key[0] in statement.queryids for key in sources.qualstats)
    if logged and not has_qualstats:
        return Samples(tuple(tuple(v[:count]) for v in logged[:k]), "server_log")
    columns: list[list[str | None]] = []
    unknown: list[int] = []
    used: set[str] = set()
    rows_per_call = statement.rows / statement.calls if statement.calls else 0.0
    for n in range(1, count + 1):
        b = bound.get(n)
        values: list[str] = []
        if b is not None and b.role == "limit":
            values = [str(max(1, round(rows_per_call)))]
        elif b is not None and b.role == "offset":
            values = ["0"]
        elif b is not None and b.table is not None and b.column is not None:
            for qid in statement.queryids:
                found = sources.qualstats.get((qid, b.table, b.column, _qual_op(b.op)))
                if found:
                    values = list(found)
                    used.add("pg_qualstats")
                    break
            if not values:
                cv = sources.columns.get((b.table, b.column))
                values = _from_stats(b, cv, k) if cv is not None else []
                if values:
                    used.add("pg_stats")
        if not values:
            unknown.append(n)
            columns.append([None])
            continue
        columns.append([*values])
    if unknown:
        ranges = any((b := bound.get(n)) is not None and b.role == "range" for n in unknown)
        return Samples((), "none", tuple(unknown), ranges)
    n_samples = min(k, max(len(c) for c in columns))
    rows = tuple(tuple(c[i % len(c)] for c in columns) for i in range(n_samples))
    source = "pg_qualstats" if "pg_qualstats" in used else ("pg_stats" if used else "statement")
    return Samples(rows, source)


_PARAMETER = re.compile(r"\$(\d+) = (NULL|'((?:[^']|'')*)')(?:, |$)", re.S)
CUT = "..."  # what log_parameter_max_length leaves at the end of a value it cut


def _fingerprint(query: str) -> str | None:
    try:
        return str(fingerprint(query))
    except (ParseError, ValueError):
        return None


def bind_values(detail: str | None) -> tuple[str | None, ...] | None:
    """A server log's `Parameters: $1 = '42', $2 = NULL` detail as ("42", None), $1 first
    (pure); PostgreSQL 15 and older write `parameters:`. None when the detail is not that, or
    a value was cut by log_parameter_max_length (not the value the statement got)."""
    if not detail or detail[:12] not in ("Parameters: ", "parameters: "):
        return None
    body = detail[12:].strip()
    found: dict[int, str | None] = {}
    pos = 0
    while pos < len(body):
        m = _PARAMETER.match(body, pos)
        if m is None:
            return None
        found[int(m.group(1))] = None if m.group(2) == "NULL" else m.group(3).replace("''", "'")
        pos = m.end()
    if not found or any(v is not None and v.endswith(CUT) for v in found.values()):
        return None
    return tuple(found.get(n) for n in range(1, max(found) + 1))


def logged_values(logged: Iterable[tuple[str, Sequence[str | None]]], limit: int = SAMPLES
                  ) -> dict[str, tuple[tuple[str | None, ...], ...]]:
    """Bind parameters per statement (by pglast fingerprint), up to `limit` distinct tuples
    each, from (statement text, its `bind_values`) pairs as a server log gives them
    (analyzer/advise/logs.py reads jsonlog, csvlog and stderr); pure."""
    out: dict[str, list[tuple[str | None, ...]]] = {}
    for text, values in logged:
        key = _fingerprint(text.strip()) if values else None
        if key is None:
            continue
        seen = out.setdefault(key, [])
        if tuple(values) not in seen and len(seen) < limit:
            seen.append(tuple(values))
    return {k: tuple(v) for k, v in out.items()}


def _qual_op(op: str) -> str:
    # BETWEEN is two quals for pg_qualstats: >= and <=.
    return {"between_low": ">=", "between_high": "<="}.get(op, op)


def _literal(text: str) -> str | None:
    """A constant as pg_qualstats prints it (`'x'::text`, `42`) as its bare text value."""
    try:
        stmts = parse_sql(f"SELECT {text}")
    except (ParseError, ValueError):
        return None
    target = stmts[0].stmt.targetList[0].val if stmts and isinstance(
        stmts[0].stmt, ast.SelectStmt) and stmts[0].stmt.targetList else None
    node = _unwrap(target)
    if isinstance(node, ast.A_Const) and not node.isnull and node.val is not None:
        v = node.val
        for attr in ("sval", "ival", "fval", "boolval", "bsval"):
            if hasattr(v, attr):
                return str(getattr(v, attr)).lower() if attr == "boolval" else str(
                    getattr(v, attr))
    return None


def read_sources(conn: psycopg.Connection[Any], statements: Sequence[StatementEvidence],
                 bound: Mapping[str, Mapping[int, Binding]],
                 logged: Mapping[str, tuple[tuple[str | None, ...], ...]] | None = None
                 ) -> Sources:
    """pg_qualstats' constants of these statements (where installed) and pg_stats' values of
    their bound columns (`bound` is keyed by fingerprint); `logged`: `logged_values` of the
    server's log, where the caller has it."""
    qualstats: dict[tuple[int, str, str, str], list[str]] = {}
    try:
        if conn.execute(HAS_QUALSTATS, prepare=False).fetchone() is not None:
            ids = sorted({q for s in statements for q in s.queryids})
            for qid, nsp, rel, column, op, const in conn.execute(
                    QUALSTATS, (ids,), prepare=False).fetchall():
                value = _literal(str(const))
                if value is not None:
                    values = qualstats.setdefault((int(qid), qualified(str(nsp), str(rel)),
                                                   str(column), str(op)), [])
                    if value not in values and len(values) < SAMPLES:
                        values.append(value)
    except psycopg.Error as exc:
        log.info(event("recommend.qualstats_unavailable", reason=first_line(exc)))
    columns: dict[tuple[str, str], ColumnValues] = {}
    wanted = {(b.table, b.column) for m in bound.values() for b in m.values()
              if b.table is not None and b.column is not None}
    if wanted:
        try:
            names = sorted({t for t, _ in wanted})  # printed, qualified (analyzer/names.py)
            pairs = [pair(t) for t in names]
            rows = conn.execute(COLUMN_VALUES, (names, [p[0] for p in pairs],
                                                [p[1] for p in pairs],
                                                sorted({c for _, c in wanted})),
                                prepare=False).fetchall()
        except psycopg.Error as exc:
            log.info(event("recommend.column_values_unavailable", reason=first_line(exc)))
            rows = []
        for table, column, common, histogram in rows:
            if (str(table), str(column)) in wanted:
                columns[(str(table), str(column))] = ColumnValues(
                    tuple(common or ()), tuple(histogram or ()))
    return Sources({k: tuple(v) for k, v in qualstats.items()}, columns, dict(logged or {}))
