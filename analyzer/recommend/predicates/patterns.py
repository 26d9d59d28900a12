"""LIKE and regular-expression patterns: which index can serve them.

`LIKE 'abc%'` is a prefix (a btree range, with a pattern operator class under a non-C
collation); `LIKE 'abc'` is an equality; anything with a leading wildcard, ILIKE, and regular
expressions need a trigram index, which helps only with three literal characters in a row.
A pattern may be a parameter (`LIKE $1`, `LIKE $1 || '%'`, `ESCAPE '!'`): `like_pattern`
gives its parts, and its representative values (recommend/parameters.py) say which it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from pglast import ast, enums

Part = str | int  # a string constant, or the number of a parameter ($n)

_REGEX_META = set(".^$*+?()[]{}|\\")


def _runs(chars: list[tuple[str, bool]]) -> str:
    """The longest run of literal characters ((char, literal) pairs)."""
    best, cur = "", ""
    for ch, literal in chars:
        if literal:
            cur += ch
            best = max(best, cur, key=len)
        else:
            cur = ""
    return best


def like_pattern(node: object) -> tuple[tuple[Part, ...] | None, str]:
    """A LIKE's right side as its parts (constants and `$n`, joined by `||`; None: anything
    else) and its escape character (backslash unless ESCAPE says otherwise; "" for none)."""
    escape = "\\"
    args = tuple(node.args or ()) if isinstance(node, ast.FuncCall) else ()
    if isinstance(node, ast.FuncCall) and node.funcname and str(
            node.funcname[-1].sval) == "like_escape" and len(args) == 2:
        given = _part(args[1])
        if not isinstance(given, str):
            return None, escape
        node, escape = args[0], given
    parts: list[Part] = []

    def walk(n: object) -> bool:
        if isinstance(n, ast.A_Expr) and n.kind == enums.A_Expr_Kind.AEXPR_OP and [
                str(x.sval) for x in n.name or () if isinstance(x, ast.String)] == ["||"]:
            return walk(n.lexpr) and walk(n.rexpr)
        p = _part(n)
        if p is None:
            return False
        parts.append(p)
        return True

    return (tuple(parts), escape) if walk(node) else (None, escape)


def _part(node: object) -> Part | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return str(node.val.sval)
    if isinstance(node, ast.ParamRef):
        return int(node.number or 0)
    return None


def pattern_values(parts: Sequence[Part], samples: Sequence[Sequence[str | None]]
                   ) -> list[str | None]:
    """The pattern each sample of the statement's parameters makes (None: a value unknown)."""
    out: list[str | None] = []
    for values in samples:
        pieces = [p if isinstance(p, str) else (values[p - 1] if 0 < p <= len(values)
                                                else None) for p in parts]
        out.append(None if None in pieces else "".join(str(p) for p in pieces))
    return out


def like_shape(pattern: str, escape: str = "\\") -> tuple[str, str]:
    """(exact | prefix | substring, the longest literal run) of a LIKE pattern."""
    chars: list[tuple[str, bool]] = []
    escaped = False
    for ch in pattern:
        if escaped:
            chars.append((ch, True))
            escaped = False
        elif escape and ch == escape:
            escaped = True
        else:
            chars.append((ch, ch not in "%_"))
    if all(lit for _, lit in chars):
        return "exact", _runs(chars)
    if chars and chars[0][1]:
        return "prefix", _runs(chars)
    return "substring", _runs(chars)


def regex_literal(pattern: str | None) -> str | None:
    """The longest literal run of a regular expression (None: no constant pattern)."""
    if pattern is None:
        return None
    chars: list[tuple[str, bool]] = []
    escaped = False
    for ch in pattern:
        if escaped:
            chars.append((ch, ch.isalnum() is False))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            chars.append((ch, ch not in _REGEX_META))
    return _runs(chars)
