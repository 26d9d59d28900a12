"""The reference application's data access: one `DatabaseService`, three ORM paths.

- ``orm``: SQLAlchemy 2 async ORM (mapped class, session, ``add_all``), application_name
  ``api-orm``;
- ``thin``: asyncpg with prepared statements (the driver's statement cache) and binary ``COPY``
  for batches, application_name ``api-thin``. It is the hot path of a JSON API, so it does no
  per-row Python work: reads return the driver's records as they are, with ``payload`` kept as
  the server's JSON text (`RawJson`, embedded verbatim by the response encoder), and batches
  go out as pre-encoded JSON text in one ``COPY``;
- ``analytics``: psycopg 3 with composed SQL (``psycopg.sql``), application_name ``analytics``.

``orm`` and ``analytics`` decode ``payload`` into Python objects, as those libraries do. Every
path returns log rows by position (`LogRow`), timestamps in UTC.

CRUD goes to ``thin`` and aggregates to ``analytics``; ``route_all_orm`` sends everything
through ``orm`` (the rollback switch). Every path is instrumented with the SDK of
`exporter.instrument` under its own ``orm_path``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

import asyncpg
import orjson
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import BigInteger, Date, DateTime, Text, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from exporter.instrument import (
    OrmMetrics,
    asyncpg_init,
    instrument_psycopg,
    instrument_sqlalchemy,
)
from pgarchitect.config import OrmOperation

PathName = Literal["orm", "thin", "analytics"]
PATH_NAMES: tuple[PathName, ...] = ("orm", "thin", "analytics")
APPLICATION_NAMES: dict[PathName, str] = {
    "orm": "api-orm", "thin": "api-thin", "analytics": "analytics",
}
LATEST = "behavior_logs.latest"
INSERT_MANY = "behavior_logs.insert_many"
DAILY_ACTIVITY = "behavior_logs.daily_activity"
# The allow-list; the statement patterns also let the jsonlog tailer label the three paths.
OPERATIONS: tuple[OrmOperation, ...] = (
    OrmOperation(DAILY_ACTIVITY, "group by"),
    OrmOperation(LATEST, "from behavior_logs where user_id"),
    OrmOperation(INSERT_MANY, "insert into behavior_logs"),
    OrmOperation(INSERT_MANY, "copy behavior_logs"),
)
COLUMNS = ("id", "user_id", "action", "created_at", "payload")
INSERT_COLUMNS = ("user_id", "action", "created_at", "payload")


RawJson = orjson.Fragment
"""JSON text as the server sent it; a JSON encoder (orjson) embeds it verbatim."""


class LogRow(Protocol):
    """A behavior_logs row by position, in `COLUMNS` order: id, user_id, action, created_at
    (aware, UTC) and payload (a decoded object, or `RawJson`). Tuples and asyncpg records."""

    def __getitem__(self, index: int, /) -> Any: ...


@dataclass(frozen=True)
class NewLog:
    """A row to insert."""

    user_id: int
    action: str
    created_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DayActivity:
    """How often a user did an action on one (UTC) day."""

    day: date
    action: str
    count: int


class DataPath(Protocol):
    """What each ORM path implements."""

    name: PathName

    async def start(self, datname: str | None) -> None: ...
    async def close(self) -> None: ...
    async def latest_logs(self, user_id: int, limit: int) -> Sequence[LogRow]: ...
    async def insert_logs(self, logs: Sequence[NewLog]) -> int: ...
    async def daily_activity(self, user_id: int, since: datetime) -> list[DayActivity]: ...


# --- orm: SQLAlchemy 2 async ORM ------------------------------------------------------------


class Base(DeclarativeBase):
    """Declarative base of the reference app's models."""


class BehaviorLog(Base):
    """The behavior_logs table as a mapped class."""

    __tablename__ = "behavior_logs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)


class OrmPath:
    """Data access through the SQLAlchemy 2 async ORM."""

    name: PathName = "orm"

    def __init__(self, dsn: str, metrics: OrmMetrics, pool_size: int) -> None:
        self.dsn, self.metrics, self.pool_size = dsn, metrics, pool_size
        self.engine: AsyncEngine | None = None
        self.sessions: async_sessionmaker[Any] | None = None

    async def start(self, datname: str | None) -> None:
        """Create the engine (asyncpg underneath) and instrument it."""
        dsn, app = self.dsn, APPLICATION_NAMES[self.name]

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(dsn, server_settings={"application_name": app})

        self.engine = create_async_engine(
            "postgresql+asyncpg://", async_creator=connect,
            pool_size=self.pool_size, max_overflow=0,
        )
        instrument_sqlalchemy(self.engine, self.metrics, self.name, datname)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        """Dispose of the engine's pool."""
        if self.engine is not None:
            await self.engine.dispose()

    def _session(self) -> Any:
        assert self.sessions is not None, "path not started"
        return self.sessions()

    async def latest_logs(self, user_id: int, limit: int) -> Sequence[LogRow]:
        """The user's newest `limit` logs."""
        stmt = (select(BehaviorLog).where(BehaviorLog.user_id == user_id)
                .order_by(BehaviorLog.created_at.desc(), BehaviorLog.id.desc()).limit(limit))
        with self.metrics.operation(LATEST):
            async with self._session() as session:
                rows = (await session.scalars(stmt)).all()
        return [(r.id, r.user_id, r.action, r.created_at, r.payload) for r in rows]

    async def insert_logs(self, logs: Sequence[NewLog]) -> int:
        """Insert the rows as ORM objects in one transaction."""
        with self.metrics.operation(INSERT_MANY):
            async with self._session() as session, session.begin():
                session.add_all([
                    BehaviorLog(user_id=n.user_id, action=n.action, created_at=n.created_at,
                                payload=n.payload)
                    for n in logs
                ])
        return len(logs)

    async def daily_activity(self, user_id: int, since: datetime) -> list[DayActivity]:
        """Per-day action counts of a user since `since`."""
        # A literal, not a bind parameter: GROUP BY must repeat the select expression exactly.
        day = cast(func.timezone(literal_column("'UTC'"), BehaviorLog.created_at), Date)
        stmt = (select(day, BehaviorLog.action, func.count())
                .where(BehaviorLog.user_id == user_id, BehaviorLog.created_at >= since)
                .group_by(day, BehaviorLog.action).order_by(day, BehaviorLog.action))
        with self.metrics.operation(DAILY_ACTIVITY):
            async with self._session() as session:
                rows = (await session.execute(stmt)).all()
        return [DayActivity(d, a, c) for d, a, c in rows]


# --- thin: asyncpg, prepared statements, COPY ------------------------------------------------

THIN_LATEST = (
    "SELECT id, user_id, action, created_at, payload FROM behavior_logs"
    " WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
)
THIN_ACTIVITY = (
    "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, action, count(*) FROM behavior_logs"
    " WHERE user_id = $1 AND created_at >= $2 GROUP BY 1, 2 ORDER BY 1, 2"
)


_INSERT_COLUMNS = list(INSERT_COLUMNS)


# Binary jsonb is a version byte (1) and the JSON text: both ways, the text passes through.
def _encode_jsonb(text: bytes) -> bytes:
    return b"\x01" + text


def _decode_jsonb(data: bytes) -> RawJson:
    return RawJson(data[1:])


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _records(
    logs: Sequence[NewLog], dumps: Callable[[Any], bytes]
) -> list[tuple[int, str, datetime, bytes]]:
    """COPY records in `INSERT_COLUMNS` order, each payload encoded once as JSON text."""
    return [(n.user_id, n.action, n.created_at, dumps(n.payload)) for n in logs]


class ThinPath:
    """Data access through asyncpg: prepared statements and COPY."""

    name: PathName = "thin"

    def __init__(self, dsn: str, metrics: OrmMetrics, pool_size: int) -> None:
        self.dsn, self.metrics, self.pool_size = dsn, metrics, pool_size
        self.pool: asyncpg.Pool | None = None
        self.datname = ""

    async def start(self, datname: str | None) -> None:
        """Open the pool; each connection gets the raw-JSON jsonb codec and the SDK hook."""
        instrument = asyncpg_init(self.metrics, self.name, datname)

        async def init(conn: asyncpg.Connection) -> None:
            # Binary, because COPY is binary (a text codec cannot encode there).
            await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                                      encoder=_encode_jsonb, decoder=_decode_jsonb)
            await instrument(conn)

        async def reset(conn: asyncpg.Connection) -> None:
            """Nothing to undo: this path never LISTENs, SETs, locks or keeps cursors.

            asyncpg's default reset is one more round trip (RESET ALL, ...) per request.
            """

        self.datname = datname or ""
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.pool_size, init=init, reset=reset,
            server_settings={"application_name": APPLICATION_NAMES[self.name]},
        )

    async def close(self) -> None:
        """Close the pool."""
        if self.pool is not None:
            await self.pool.close()

    def _pool(self) -> asyncpg.Pool:
        assert self.pool is not None, "path not started"
        return self.pool

    async def latest_logs(self, user_id: int, limit: int) -> Sequence[LogRow]:
        """The user's newest `limit` logs: the driver's records, payload as `RawJson`."""
        with self.metrics.operation(LATEST):
            rows: list[LogRow] = await self._pool().fetch(THIN_LATEST, user_id, limit)
        return rows

    async def insert_logs(self, logs: Sequence[NewLog]) -> int:
        """Insert the rows with one binary COPY (the query logger does not see COPY: timer)."""
        try:
            records = _records(logs, orjson.dumps)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits: the standard library can
            records = _records(logs, _stdlib_dumps)
        async with self._pool().acquire() as conn:
            with self.metrics.timer(self.name, INSERT_MANY, self.datname):
                await conn.copy_records_to_table(
                    "behavior_logs", records=records, columns=_INSERT_COLUMNS
                )
        return len(records)

    async def daily_activity(self, user_id: int, since: datetime) -> list[DayActivity]:
        """Per-day action counts of a user since `since`."""
        with self.metrics.operation(DAILY_ACTIVITY):
            rows = await self._pool().fetch(THIN_ACTIVITY, user_id, since)
        return [DayActivity(*r) for r in rows]


# --- analytics: psycopg 3, composed SQL -----------------------------------------------------

_T = sql.Identifier("behavior_logs")


def _cols(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


ANALYTICS_LATEST = sql.SQL(
    "SELECT {cols} FROM {t} WHERE {user_id} = %s ORDER BY {created_at} DESC, {id} DESC LIMIT %s"
).format(cols=_cols(COLUMNS), t=_T, user_id=sql.Identifier("user_id"),
         created_at=sql.Identifier("created_at"), id=sql.Identifier("id"))
ANALYTICS_INSERT = sql.SQL("INSERT INTO {t} ({cols}) VALUES ({params})").format(
    t=_T, cols=_cols(INSERT_COLUMNS),
    params=sql.SQL(", ").join(sql.Placeholder() for _ in INSERT_COLUMNS),
)
ANALYTICS_ACTIVITY = sql.SQL(
    "SELECT ({created_at} AT TIME ZONE 'UTC')::date AS day, {action}, count(*) FROM {t}"
    " WHERE {user_id} = %s AND {created_at} >= %s GROUP BY 1, 2 ORDER BY 1, 2"
).format(t=_T, created_at=sql.Identifier("created_at"), action=sql.Identifier("action"),
         user_id=sql.Identifier("user_id"))


class AnalyticsPath:
    """Data access through psycopg 3 with composed SQL."""

    name: PathName = "analytics"

    def __init__(self, dsn: str, metrics: OrmMetrics, pool_size: int) -> None:
        self.dsn, self.metrics, self.pool_size = dsn, metrics, pool_size
        self.pool: AsyncConnectionPool[Any] | None = None

    async def start(self, datname: str | None) -> None:
        """Open the pool; each connection is instrumented when it is made."""
        metrics, name = self.metrics, self.name

        async def configure(conn: Any) -> None:
            instrument_psycopg(conn, metrics, name, datname)

        self.pool = AsyncConnectionPool(
            self.dsn, min_size=1, max_size=self.pool_size, open=False, configure=configure,
            # TimeZone UTC: timestamps come back in UTC, like asyncpg's, at no per-row cost.
            kwargs={"application_name": APPLICATION_NAMES[self.name], "autocommit": True,
                    "options": "-c TimeZone=UTC"},
        )
        await self.pool.open(wait=True)

    async def close(self) -> None:
        """Close the pool."""
        if self.pool is not None:
            await self.pool.close()

    def _pool(self) -> AsyncConnectionPool[Any]:
        assert self.pool is not None, "path not started"
        return self.pool

    async def datname(self) -> str:
        """The database the pool is connected to (from the connection, no query)."""
        async with self._pool().connection() as conn:
            return str(conn.info.dbname)

    async def latest_logs(self, user_id: int, limit: int) -> Sequence[LogRow]:
        """The user's newest `limit` logs (tuples; psycopg decodes the payload)."""
        with self.metrics.operation(LATEST):
            async with self._pool().connection() as conn:
                cur = await conn.execute(ANALYTICS_LATEST, (user_id, limit))
                rows: list[LogRow] = await cur.fetchall()
        return rows

    async def insert_logs(self, logs: Sequence[NewLog]) -> int:
        """Insert the rows with executemany (pipelined) in one transaction."""
        params = [(n.user_id, n.action, n.created_at, Jsonb(n.payload)) for n in logs]
        with self.metrics.operation(INSERT_MANY):
            async with self._pool().connection() as conn, conn.transaction():
                await conn.cursor().executemany(ANALYTICS_INSERT, params)
        return len(params)

    async def daily_activity(self, user_id: int, since: datetime) -> list[DayActivity]:
        """Per-day action counts of a user since `since`."""
        with self.metrics.operation(DAILY_ACTIVITY):
            async with self._pool().connection() as conn:
                cur = await conn.execute(ANALYTICS_ACTIVITY, (user_id, since))
                rows = await cur.fetchall()
        return [DayActivity(*r) for r in rows]


# --- the service ----------------------------------------------------------------------------


class DatabaseService:
    """Routes each kind of data access to its ORM path (CRUD: thin, aggregates: analytics)."""

    def __init__(
        self, dsn: str, metrics: OrmMetrics, route_all_orm: bool = False, pool_size: int = 4
    ) -> None:
        self.route_all_orm = route_all_orm
        self.analytics = AnalyticsPath(dsn, metrics, pool_size)
        self.paths: dict[PathName, DataPath] = {
            "orm": OrmPath(dsn, metrics, pool_size),
            "thin": ThinPath(dsn, metrics, pool_size),
            "analytics": self.analytics,
        }
        self.datname = ""

    async def start(self) -> None:
        """Open every path's pool (a failure closes those already open)."""
        try:
            await self.analytics.start(None)
            self.datname = await self.analytics.datname()
            await self.paths["thin"].start(self.datname)
            await self.paths["orm"].start(self.datname)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every path's pool."""
        for path in self.paths.values():
            await path.close()

    def path(
        self, kind: Literal["crud", "aggregate"], override: PathName | None = None
    ) -> DataPath:
        """The path for a kind of access: the override, the rollback switch, or the default."""
        if override is not None:
            return self.paths[override]
        if self.route_all_orm:
            return self.paths["orm"]
        return self.paths["thin" if kind == "crud" else "analytics"]

    async def latest_logs(
        self, user_id: int, limit: int, path: PathName | None = None
    ) -> Sequence[LogRow]:
        """A user's newest logs (CRUD)."""
        return await self.path("crud", path).latest_logs(user_id, limit)

    async def insert_logs(self, logs: Sequence[NewLog], path: PathName | None = None) -> int:
        """Insert a batch of logs (CRUD)."""
        return await self.path("crud", path).insert_logs(logs)

    async def daily_activity(
        self, user_id: int, since: datetime, path: PathName | None = None
    ) -> list[DayActivity]:
        """Per-day activity of a user (aggregate)."""
        return await self.path("aggregate", path).daily_activity(user_id, since)
