"""What `advise` is asked about: statements from arguments, a file, stdin or a server log.

A file (or stdin) is SQL: split into its statements by PostgreSQL's own grammar (pglast); one
that does not parse is bad input. A log gives each distinct statement once, and the bind
parameters it ran with (`parameters.logged_values`): the engine plans it with those values
(custom plans), as an audit does with a log's parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pglast import ast, parse_sql
from pglast.parser import ParseError, fingerprint

from analyzer.advise.logs import LoggedStatement
from analyzer.recommend.parameters import logged_values
from pgarchitect.errors import UserError

QUERY_KINDS = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)


class BadInput(UserError):
    """A statement, file or log advise cannot read."""


@dataclass(frozen=True)
class Statement:
    """One statement to advise on."""

    text: str  # as given (the report's `statement`)
    query: bool  # a SELECT / INSERT / UPDATE / DELETE (the rest get no advice)


def _kind_ok(stmt: object) -> bool:
    return isinstance(stmt, QUERY_KINDS)


def split(sql: str, where: str) -> list[Statement]:
    """The statements of an SQL text; BadInput (one line) when it does not parse."""
    try:
        stmts = parse_sql(sql)
    except ParseError as exc:
        raise BadInput(f"advise: {where} does not parse: {exc}") from None
    out = []
    encoded = sql.encode()
    for raw in stmts:
        start = raw.stmt_location or 0
        length = raw.stmt_len or len(encoded) - start
        text = encoded[start:start + length].decode().strip().rstrip(";").strip()
        out.append(Statement(text, _kind_ok(raw.stmt)))
    return out


def from_arguments(texts: Sequence[str]) -> list[Statement]:
    """Each argument is one statement (or several, separated by `;`)."""
    out: list[Statement] = []
    for n, text in enumerate(texts, 1):
        out += split(text, f"statement {n}")
    return out


@dataclass(frozen=True)
class FromLog:
    """A log's statements, each once, and the parameters each ran with (by fingerprint)."""

    statements: tuple[Statement, ...]
    parameters: Mapping[str, tuple[tuple[str | None, ...], ...]]


def from_log(logged: Sequence[LoggedStatement]) -> FromLog:
    """Each distinct statement of a log once (in the order first seen), and its parameters."""
    seen: dict[str, Statement] = {}
    for entry in logged:
        try:
            stmts = parse_sql(entry.text)
            key = fingerprint(entry.text)
        except ParseError:
            continue  # a truncated or foreign line: a log is not input the user wrote
        if len(stmts) != 1 or not _kind_ok(stmts[0].stmt):
            continue  # BEGIN, SET, COMMIT ...: nothing to index
        seen.setdefault(key, Statement(entry.text, True))
    return FromLog(tuple(seen.values()), logged_values((e.text, e.values) for e in logged))
