"""DDL from identifiers, quoted the way PostgreSQL's quote_ident quotes them.

Never pasted from a statement's text: a column reaches DDL only as a name (quoted here) or
as a function of names (the function's name quoted here too); a dropped index comes back from
the definition PostgreSQL itself printed. psycopg.sql.Identifier would quote every name;
PostgreSQL's own rule (quote only what needs it) gives DDL a DBA reads as they would write it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pglast import ast, parse_sql
from pglast.parser import ParseError

from analyzer.names import quote_ident as quote_ident
from analyzer.names import requote
from analyzer.recommend.model import IndexColumn

NAMEDATALEN = 64  # PostgreSQL truncates names to NAMEDATALEN - 1 bytes
_CREATE = re.compile(r"^CREATE (UNIQUE )?INDEX ")


def qualified(schema_table: str) -> str:
    """`schema.table` (printed, or bare) as a quoted, qualified name (analyzer/names.py)."""
    return requote(schema_table)


def expression(function: str, columns: Sequence[str]) -> str:
    """`lower(email)`: a function of columns, as PostgreSQL prints it for text columns."""
    return f"{quote_ident(function)}({', '.join(quote_ident(c) for c in columns)})"


def _truncate(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")


def index_name(table: str, parts: Iterable[str], taken: Iterable[str]) -> str:
    """A free index name in PostgreSQL's own style: `table_col1_col2_idx` (at most 63 bytes)."""
    used = set(taken)
    base = "_".join([table, *parts])
    for n in range(1000):
        suffix = "_idx" if n == 0 else f"_idx{n}"
        name = _truncate(base, NAMEDATALEN - 1 - len(suffix.encode())) + suffix
        if name not in used:
            return name
    raise ValueError(f"no free index name for {table}")  # pragma: no cover


def _column_sql(c: IndexColumn) -> str:
    opclass = f" {quote_ident(c.opclass)}" if c.opclass else ""
    return c.text + opclass + (" DESC" if c.descending else "")


def create_index(schema: str, name: str, table: str, columns: Sequence[IndexColumn],
                 concurrently: bool = True, method: str = "btree",
                 where: str | None = None) -> str:
    """CREATE INDEX [CONCURRENTLY] name ON schema.table [USING method] (columns) [WHERE ...]."""
    how = "CONCURRENTLY " if concurrently else ""
    cols = ", ".join(_column_sql(c) for c in columns)
    using = "" if method == "btree" else f"USING {quote_ident(method)} "
    return (f"CREATE INDEX {how}{quote_ident(name)} ON {quote_ident(schema)}."
            f"{quote_ident(table)} {using}({cols})" + (f" WHERE {where}" if where else ""))


def drop_index(schema: str, name: str) -> str:
    """DROP INDEX CONCURRENTLY IF EXISTS schema.name."""
    return f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(schema)}.{quote_ident(name)}"


def concurrent(definition: str) -> str:
    """A catalog definition (pg_get_indexdef) as CREATE INDEX CONCURRENTLY.

    The definition is PostgreSQL's own output, so its form is fixed; it is checked to parse as
    one CREATE INDEX before the keyword goes in at its one possible place.
    """
    if not _CREATE.match(definition) or not is_create_index(definition):
        raise ValueError("not a CREATE INDEX definition")
    return _CREATE.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY ", definition,
                       count=1)


def is_create_index(text: str) -> bool:
    """Whether `text` is exactly one CREATE INDEX statement."""
    try:
        stmts = parse_sql(text)
    except (ParseError, ValueError):
        return False
    return len(stmts) == 1 and isinstance(stmts[0].stmt, ast.IndexStmt)


def plain(ddl: str) -> str:
    """The same DDL without CONCURRENTLY (what a what-if check can run in a transaction)."""
    return ddl.replace(" INDEX CONCURRENTLY ", " INDEX ", 1)
