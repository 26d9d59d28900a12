"""The ORM-path latency histograms (docs/orm-paths.md) and the in-process SDK that feeds them.

One family for every source: ``pg_orm_query_duration_seconds{orm_path, operation, datname}``
(successful statements) and ``pg_orm_queries_total{orm_path, operation, datname, outcome}``
(``outcome`` is ``ok`` or ``error``), so ``sum(pg_orm_queries_total{outcome="ok"})`` equals the
histogram's ``_count``. The server-side jsonlog tailer (`exporter.logtail`) uses the same class.

The SDK:

- ``metrics.timer(orm_path, operation, datname)``: a context manager or decorator (sync and
  async functions) around any piece of data access;
- ``instrument_asyncpg(conn, ...)`` (or ``asyncpg_init(...)`` as a pool's ``init``),
  ``instrument_psycopg(conn, ...)`` (sync and async connections) and
  ``instrument_sqlalchemy(engine, ...)`` (sync and async engines): hooks that observe every
  statement the driver runs;
- ``metrics.operation(name)``: names the operation for the hooks inside the block; without
  it a hook labels a statement by the configured statement patterns, else ``other``.

`operation` is bounded by construction: only names from the allow-list given to
:class:`OrmMetrics` appear as label values, anything else becomes ``other``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    # Types only: an application that embeds the SDK loads prometheus-client and nothing else
    # (no settings, no YAML), plus the driver it hooks, lazily.
    import asyncpg
    import psycopg
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pgarchitect.config import OrmOperation

HISTOGRAM = "pg_orm_query_duration_seconds"
COUNTER = "pg_orm_queries_total"
# The one definition of the edges (docs/orm-paths.md); the log tailer, the reference app and the
# tests import it. 0.05 (the 50 ms SLO) is an edge, so le="0.05" gives an exact SLO ratio.
BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
OTHER = "other"
OUTCOMES = ("ok", "error")
_CACHE_LIMIT = 4096

_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pgarchitect_orm_operation", default=None
)

P = ParamSpec("P")
R = TypeVar("R")

_QUALIFIER = re.compile(r"\b[a-z_][a-z0-9_$]*\.(?=[a-z_])")
_SPACE = re.compile(r"\s+")


def normalize_statement(text: str) -> str:
    """Lower-case, unquoted, single-spaced text without `table.` qualifiers, for matching."""
    text = _SPACE.sub(" ", text.lower().replace('"', ""))
    return _QUALIFIER.sub("", text).strip()


class OperationMatcher:
    """Maps an operation name or a statement text to a bounded `operation` label value."""

    def __init__(self, operations: Sequence[OrmOperation | str] = ()) -> None:
        self.names = frozenset(op if isinstance(op, str) else op.name for op in operations)
        self._patterns = tuple(
            (normalize_statement(op.statement), op.name)
            for op in operations
            if not isinstance(op, str) and op.statement.strip()
        )
        self._by_text: dict[str, str] = {}

    def bounded(self, name: str) -> str:
        """`name` when it is allow-listed, else ``other``."""
        return name if name in self.names else OTHER

    def match(self, statement: str) -> str:
        """The first configured operation whose pattern occurs in `statement`, else ``other``."""
        found = self._by_text.get(statement)
        if found is not None:
            return found
        text = normalize_statement(statement)
        found = next((name for pattern, name in self._patterns if pattern in text), OTHER)
        if len(self._by_text) < _CACHE_LIMIT:  # bounded: statement texts are not
            self._by_text[statement] = found
        return found


@dataclass(frozen=True, slots=True)
class _Series:
    duration: Any  # prometheus_client Histogram child
    ok: Any
    error: Any


class OrmMetrics:
    """The ORM-path histogram family and its outcome counter, in one registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        operations: Sequence[OrmOperation | str] = (),
    ) -> None:
        self.matcher = OperationMatcher(operations)
        self.duration = Histogram(
            HISTOGRAM,
            "Duration of successful statements by ORM path and operation.",
            ["orm_path", "operation", "datname"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.queries = Counter(
            COUNTER,
            "Statements by ORM path, operation and outcome (ok or error).",
            ["orm_path", "operation", "datname", "outcome"],
            registry=registry,
        )
        self._series: dict[tuple[str, str, str], _Series] = {}

    def series(self, orm_path: str, operation: str, datname: str) -> _Series:
        """The label children for one (path, operation, database); `operation` is bounded."""
        key = (orm_path, operation, datname)
        found = self._series.get(key)
        if found is None:
            op = self.matcher.bounded(operation)
            found = _Series(
                self.duration.labels(orm_path, op, datname),
                self.queries.labels(orm_path, op, datname, "ok"),
                self.queries.labels(orm_path, op, datname, "error"),
            )
            if op == operation:  # hostile names all share the `other` children, uncached
                self._series[key] = found
        return found

    def observe(
        self, orm_path: str, operation: str, datname: str, seconds: float, ok: bool = True
    ) -> None:
        """Record one statement: its duration when it succeeded, and its outcome."""
        s = self.series(orm_path, operation, datname)
        if ok:
            s.duration.observe(seconds)
            s.ok.inc()
        else:
            s.error.inc()

    def timer(self, orm_path: str, operation: str, datname: str = "") -> Timer:
        """A context manager / decorator observing the time spent inside it."""
        return Timer(self.series(orm_path, operation, datname))

    @staticmethod
    @contextlib.contextmanager
    def operation(name: str) -> Iterator[None]:
        """Label the statements the driver hooks see inside this block as `name`."""
        token = _operation.set(name)
        try:
            yield
        finally:
            _operation.reset(token)

    def operation_for(self, statement: str) -> str:
        """The operation of a statement a hook saw: the active `operation()` block, else a match."""
        name = _operation.get()
        return self.matcher.match(statement) if name is None else name


def current_operation() -> str | None:
    """The name set by the innermost active ``OrmMetrics.operation()`` block, if any."""
    return _operation.get()


class Timer:
    """Times a block (``with``) or every call of a function (decorator); errors are counted."""

    __slots__ = ("_series", "_start")

    def __init__(self, series: _Series) -> None:
        self._series = series
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        elapsed = time.perf_counter() - self._start
        if exc_type is None:
            self._series.duration.observe(elapsed)
            self._series.ok.inc()
        elif issubclass(exc_type, Exception):  # a cancellation is not a failed statement
            self._series.error.inc()

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        series = self._series
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with Timer(series):
                    return await async_fn(*args, **kwargs)

            return cast(Callable[P, R], awrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with Timer(series):
                return fn(*args, **kwargs)

        return wrapper


# --- asyncpg -------------------------------------------------------------------------------


def instrument_asyncpg(
    conn: asyncpg.Connection, metrics: OrmMetrics, orm_path: str, datname: str | None = None
) -> Callable[[Any], None]:
    """Observe every statement `conn` runs through execute/fetch*/executemany.

    Uses asyncpg's query logger, which does not see ``PreparedStatement`` calls nor COPY:
    wrap those in ``metrics.timer(...)``. A pool's reset statement on release is not the
    application's and is left out. Returns the logger (for ``remove_query_logger``).
    """
    get_reset = getattr(conn, "get_reset_query", None)  # asyncpg >= 0.30
    reset_query = get_reset() if get_reset is not None else None

    def log_query(record: Any) -> None:
        exc = record.exception
        if exc is not None and not isinstance(exc, Exception):
            return  # cancelled: no outcome to count
        if record.query == reset_query:
            return
        db = datname if datname is not None else (record.conn_params.database or "")
        metrics.observe(orm_path, metrics.operation_for(record.query), db, record.elapsed,
                        ok=exc is None)

    conn.add_query_logger(log_query)
    return log_query


def asyncpg_init(
    metrics: OrmMetrics, orm_path: str, datname: str | None = None
) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """An ``init`` hook for ``asyncpg.create_pool`` that instruments each new connection."""

    async def init(conn: asyncpg.Connection) -> None:
        instrument_asyncpg(conn, metrics, orm_path, datname)

    return init


# --- psycopg 3 -----------------------------------------------------------------------------


def _psycopg_text(query: Any, context: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes | bytearray | memoryview):
        return bytes(query).decode("utf-8", "replace")
    as_string = getattr(query, "as_string", None)  # sql.Composable
    return str(as_string(context)) if as_string is not None else str(query)


def instrument_psycopg(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    metrics: OrmMetrics,
    orm_path: str,
    datname: str | None = None,
) -> None:
    """Observe every execute/executemany on `conn`'s cursors (sync or async connection)."""
    import psycopg

    db = datname if datname is not None else conn.info.dbname

    def observe(cur: Any, query: Any, seconds: float, ok: bool) -> None:
        # Rendering a composed query costs time: only when no operation() block names it.
        op = _operation.get()
        if op is None:
            op = metrics.matcher.match(_psycopg_text(query, cur))
        metrics.observe(orm_path, op, db, seconds, ok)

    if isinstance(conn, psycopg.AsyncConnection):
        base_async: type[Any] = conn.cursor_factory

        class AsyncTimedCursor(base_async):  # type: ignore[misc]
            async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    result = await super().execute(query, *args, **kwargs)
                except Exception:
                    observe(self, query, 0.0, False)
                    raise
                observe(self, query, time.perf_counter() - start, True)
                return result

            async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
                start = time.perf_counter()
                try:
                    await super().executemany(query, *args, **kwargs)
                except Exception:
                    observe(self, query, 0.0, False)
                    raise
                observe(self, query, time.perf_counter() - start, True)

        conn.cursor_factory = AsyncTimedCursor
        return

    base: type[Any] = conn.cursor_factory

    class TimedCursor(base):  # type: ignore[misc]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = super().execute(query, *args, **kwargs)
            except Exception:
                observe(self, query, 0.0, False)
                raise
            observe(self, query, time.perf_counter() - start, True)
            return result

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                super().executemany(query, *args, **kwargs)
            except Exception:
                observe(self, query, 0.0, False)
                raise
            observe(self, query, time.perf_counter() - start, True)

    conn.cursor_factory = TimedCursor


# --- SQLAlchemy 2 --------------------------------------------------------------------------

_SA_START = "pgarchitect_orm_start"


def instrument_sqlalchemy(
    engine: Engine | AsyncEngine,
    metrics: OrmMetrics,
    orm_path: str,
    datname: str | None = None,
) -> None:
    """Observe every statement of a SQLAlchemy 2 engine (an AsyncEngine's sync core too)."""
    from sqlalchemy import event
    from sqlalchemy.ext import asyncio as sa_asyncio

    sync_engine = engine.sync_engine if isinstance(engine, sa_asyncio.AsyncEngine) else engine
    db = datname if datname is not None else (sync_engine.url.database or "")

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault(_SA_START, []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        stack = conn.info.get(_SA_START)
        if stack:
            metrics.observe(orm_path, metrics.operation_for(statement), db,
                            time.perf_counter() - stack.pop(), True)

    def failed(context: Any) -> None:
        conn = context.connection
        stack = conn.info.get(_SA_START) if conn is not None else None
        if stack:
            stack.pop()
        if context.statement is not None and isinstance(context.original_exception, Exception):
            metrics.observe(orm_path, metrics.operation_for(context.statement), db, 0.0, False)

    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(sync_engine, "handle_error", failed)
