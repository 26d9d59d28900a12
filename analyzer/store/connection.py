"""A store session: migrated to the version this code needs (checked once, when it opens),
in autocommit mode (callers open transactions), with pgvector's codecs registered.

Every statement starts with the ``/* pgarchitect */`` marker. The store functions take an open
session and leave transaction control to the caller unless they say otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector as _register_vector
from psycopg.abc import Params
from psycopg.rows import args_row

from pgarchitect.db import connect_sync, first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import UserError

APPLICATION_NAME = "pgarchitect-analyzer"
Conn = psycopg.Connection[Any]

T = TypeVar("T")

# The store schema version this code needs (the newest file in migrations/ it relies on).
SCHEMA_VERSION = 7


def schema_version(conn: Conn) -> int:
    """The newest migration applied to the store (0: none)."""
    try:
        row = conn.execute("/* pgarchitect */ SELECT max(version)"
                           " FROM pgarchitect.schema_migrations").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(str(row[0])) if row and row[0] is not None else 0


def connect_store(dsn: Dsn, connect_timeout: float = 5.0) -> Conn:
    """A session on a migrated store (see the module doc); one line (UserError) if not."""
    conn = connect_sync(dsn, "store", application_name=APPLICATION_NAME,
                        connect_timeout=connect_timeout)
    conn.autocommit = True
    try:
        version = schema_version(conn)
        if version < SCHEMA_VERSION:
            raise UserError(f"the store {dsn.masked} is not migrated to version "
                            f"{SCHEMA_VERSION} (run `pgarchitect migrate --store DSN`)")
        register_vector(conn)
    except psycopg.Error as exc:
        conn.close()
        raise UserError(f"cannot use the store {dsn.masked}: {first_line(exc)}") from None
    except UserError:
        conn.close()
        raise
    return conn


def register_vector(conn: Conn) -> None:
    """Register pgvector's codecs on one store connection (also a pool's `configure` hook).

    The codecs need the type's oid, so this must run after the extension was created (by
    `pgarchitect migrate`) and on every new connection.
    """
    row = conn.execute("/* pgarchitect */ SELECT extversion FROM pg_extension"
                       " WHERE extname = 'vector'").fetchone()
    if row is None:
        raise UserError("the store has no pgvector extension (run `pgarchitect migrate`)")
    _register_vector(conn)


def by_pairs(conn: Conn, sql: str, pairs: Iterable[tuple[int, Any]],
             *params: object) -> list[tuple[Any, ...]]:
    """Run `sql` with the pairs passed as two arrays (for a join with unnest), then `params`."""
    unique = sorted(set(pairs))
    if not unique:
        return []
    firsts = [p[0] for p in unique]
    seconds = [p[1] for p in unique]
    return conn.execute(sql.encode(), (firsts, seconds, *params)).fetchall()


def rows_as(conn: Conn, make: Callable[..., T], query: str | bytes,
            params: Params | None = None) -> list[T]:
    """The rows of `query`, each made by `make(*columns)`: a function or a NamedTuple whose
    parameters name the columns, in SELECT order (no row read by position)."""
    with conn.cursor(row_factory=args_row(make)) as cur:
        return cur.execute(query, params).fetchall()

