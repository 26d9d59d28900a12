"""Qualified names: (schema, name) pairs, printed quoted where PostgreSQL would quote them.

``"a.b".c`` and ``a."b.c"`` are different tables; joined with a bare dot both would read
``a.b.c``. The catalog keeps the parts apart; wherever a qualified name is one string (a key,
a label, DDL) it is the printed form, each part bare when PostgreSQL's ``quote_ident`` would
leave it bare and double-quoted otherwise, so the string names one table and reads back into
its parts (`split`). For ordinary names the printed form is the familiar ``public.orders``.
"""

from __future__ import annotations

import re

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

_SAFE = re.compile(r"[a-z_][a-z0-9_]*")
_QUOTED_KEYWORDS = RESERVED_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS | COL_NAME_KEYWORDS


def quote_ident(name: str) -> str:
    """`name` as an SQL identifier: bare when PostgreSQL would print it bare, else quoted."""
    if _SAFE.fullmatch(name) and name not in _QUOTED_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str | None, name: str) -> str:
    """The printed `schema.name` (just `name` without a schema)."""
    return quote_ident(name) if not schema else f"{quote_ident(schema)}.{quote_ident(name)}"


def split(text: str) -> tuple[str, ...]:
    """The parts of a dotted name as printed: ``"a.b".c`` -> ('a.b', 'c').

    Quoted parts lose their quotes (``""`` is one ``"``); bare parts are taken as they are
    (the catalog's names need no case folding).
    """
    parts: list[str] = []
    i, n = 0, len(text)
    while i <= n:
        if i < n and text[i] == '"':
            buf: list[str] = []
            i += 1
            while i < n:
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            part = "".join(buf)
            end = text.find(".", i)
            end = n if end < 0 else end
            part += text[i:end]  # anything after a closing quote (malformed) is kept
        else:
            end = text.find(".", i)
            end = n if end < 0 else end
            part = text[i:end]
        parts.append(part)
        i = end + 1
    return tuple(parts)


def split_qualified(text: str) -> tuple[str | None, str]:
    """(schema, name) of a printed qualified name; (None, name) when it has no schema."""
    parts = split(text)
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], ".".join(parts[1:])


def pair(text: str) -> tuple[str, str]:
    """(schema, name) of a qualified name from the catalog (always qualified; "" if not)."""
    schema, name = split_qualified(text)
    return schema or "", name


def requote(text: str) -> str:
    """A qualified name in its printed form, whether it came printed or as bare `schema.name`."""
    return qualified(*split_qualified(text))


def split_column(text: str) -> tuple[str, str]:
    """(table, column) of ``table.column`` whose table is printed (``"a.b".c.x``): the split is
    at the last dot outside quotes; the table part is returned as it was written."""
    quoted, last = False, -1
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            last = i
    if last < 0:
        return "", text
    return text[:last], text[last + 1:]
