"""LIKE and regular-expression patterns: which index can serve them.

`LIKE 'abc%'` is a prefix (a btree range, with a pattern operator class under a non-C
collation); `LIKE 'abc'` is an equality; anything with a leading wildcard, ILIKE, and regular
expressions need a trigram index, which helps only with three literal characters in a row.
"""

from __future__ import annotations

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


def like_shape(pattern: str) -> tuple[str, str]:
    """(exact | prefix | substring, the longest literal run) of a LIKE pattern."""
    chars: list[tuple[str, bool]] = []
    escaped = False
    for ch in pattern:
        if escaped:
            chars.append((ch, True))
            escaped = False
        elif ch == "\\":
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
