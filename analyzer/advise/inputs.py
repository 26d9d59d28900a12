"""What `advise` is asked about: statements from arguments, a file, stdin or a server log.

A file (or stdin) is SQL: split into its statements by PostgreSQL's own grammar (pglast); one
that does not parse is bad input. A log gives each distinct statement once (the first time it
ran with its parameters, if any run did), its bind parameters put in place of `$n` as the
literals the log printed: the statement is planned with the values it ran with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pglast import ast, parse_sql
from pglast.parser import ParseError, fingerprint

from analyzer.advise.logs import LoggedStatement
from pgarchitect.errors import UserError

QUERY_KINDS = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)


class BadInput(UserError):
    """A statement, file or log advise cannot read."""


@dataclass(frozen=True)
class Statement:
    """One statement to advise on: as given, and as planned (parameters in place)."""

    text: str  # as given (the report's `statement`)
    planned: str  # with the logged parameters substituted
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
        out.append(Statement(text, text, _kind_ok(raw.stmt)))
    return out


def from_arguments(texts: Sequence[str]) -> list[Statement]:
    """Each argument is one statement (or several, separated by `;`)."""
    out: list[Statement] = []
    for n, text in enumerate(texts, 1):
        out += split(text, f"statement {n}")
    return out


def _param_refs(node: object, out: list[tuple[int, int]]) -> None:
    if isinstance(node, tuple | list):
        for item in node:
            _param_refs(item, out)
    elif isinstance(node, ast.ParamRef):
        out.append((int(node.location or 0), int(node.number or 0)))
    elif isinstance(node, ast.Node):
        for slot in getattr(type(node), "__slots__", ()):
            _param_refs(getattr(node, slot, None), out)


def substitute(text: str, params: dict[int, str]) -> str:
    """`text` with each `$n` replaced by its logged literal (where every one is known)."""
    if not params:
        return text
    try:
        stmts = parse_sql(text)
    except ParseError:
        return text
    refs: list[tuple[int, int]] = []
    _param_refs([s.stmt for s in stmts], refs)
    if not refs or any(n not in params for _, n in refs):
        return text
    data = text.encode()
    for location, n in sorted(refs, reverse=True):
        token = f"${n}".encode()
        if data[location:location + len(token)] != token:
            return text
        data = data[:location] + params[n].encode() + data[location + len(token):]
    out = data.decode()
    try:
        return out if len(parse_sql(out)) == 1 else text
    except ParseError:
        return text


def from_log(logged: Sequence[LoggedStatement]) -> list[Statement]:
    """Each distinct statement of a log once, with the first parameters it ran with."""
    order: list[str] = []
    texts: dict[str, LoggedStatement] = {}
    for entry in logged:
        try:
            stmts = parse_sql(entry.text)
            key = fingerprint(entry.text)
        except ParseError:
            continue  # a truncated or foreign line: a log is not input the user wrote
        if len(stmts) != 1 or not _kind_ok(stmts[0].stmt):
            continue  # BEGIN, SET, COMMIT ...: nothing to index
        if key not in texts:
            order.append(key)
            texts[key] = entry
        elif entry.parameters and not texts[key].parameters:
            texts[key] = entry
    return [Statement(texts[k].text, substitute(texts[k].text, texts[k].parameters), True)
            for k in order]
