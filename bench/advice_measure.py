"""What the applied-advice benchmark measures: the application's statement times from
pg_stat_statements (counters diffed around a phase, so no reset disturbs the store's
history), the indexes a method's DDL created or dropped, and how many of them overlap."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg

from bench.advice_shop import APP_ROLE, STATEMENTS, shape


@dataclass(frozen=True)
class Counter:
    """calls and total execution time of one statement text."""

    calls: int
    total_ms: float


Counters = dict[str, Counter]


def counters(dsn: str) -> Counters:
    """The application role's top-level statements in this database, by text."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, sum(calls)::bigint, sum(total_exec_time) FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.userid"
            " WHERE d.datname = current_database() AND r.rolname = %s AND s.toplevel"
            " GROUP BY query", (APP_ROLE,)).fetchall()
    return {str(q): Counter(int(c), float(t)) for q, c, t in rows}


@dataclass(frozen=True)
class Phase:
    """One run of the workload: calls and time per statement name."""

    per_statement: Mapping[str, Counter]

    @property
    def calls(self) -> int:
        return sum(c.calls for c in self.per_statement.values())

    @property
    def mean_ms(self) -> float:
        """Calls-weighted mean execution time per statement."""
        total = sum(c.total_ms for c in self.per_statement.values())
        return total / self.calls if self.calls else 0.0

    def statement_mean(self, name: str) -> float | None:
        c = self.per_statement.get(name)
        return c.total_ms / c.calls if c and c.calls else None


def diff(before: Counters, after: Counters) -> Phase:
    """The phase between two readings, by statement name (unknown texts as themselves)."""
    names = {s.shape: s.name for s in STATEMENTS}
    out: dict[str, Counter] = {}
    for text, c in after.items():
        b = before.get(text, Counter(0, 0.0))
        if c.calls > b.calls:
            name = names.get(shape(text), text)
            prev = out.get(name, Counter(0, 0.0))
            out[name] = Counter(prev.calls + c.calls - b.calls,
                                prev.total_ms + c.total_ms - b.total_ms)
    return Phase(out)


@dataclass(frozen=True)
class Index:
    """An index of the shop: its table, key columns (or expressions) and definition."""

    oid: int
    table: str
    keys: tuple[str, ...]
    definition: str


def indexes(dsn: str) -> dict[int, Index]:
    """Every index on the shop's tables (schema public), by oid."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT i.indexrelid::int, i.indrelid::regclass::text,"
            " ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)"
            "       FROM generate_series(1, i.indnkeyatts) k),"
            " pg_get_indexdef(i.indexrelid)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " WHERE c.relnamespace = 'public'::regnamespace").fetchall()
    return {int(o): Index(int(o), str(t), tuple(k), str(d)) for o, t, k, d in rows}


def overlapping(created: Iterable[Index]) -> int:
    """How many of the created indexes another created index makes redundant: on the same
    table, its key columns equal to or a prefix of the other's (of two equal ones, one)."""
    items = sorted(created, key=lambda i: (i.table, -len(i.keys), i.oid))
    count = 0
    for n, index in enumerate(items):
        if any(o.table == index.table and o.keys[:len(index.keys)] == index.keys
               for o in items[:n]):
            count += 1
    return count


def duplicates(created: Iterable[Index]) -> int:
    """How many created indexes repeat another's table and key columns exactly."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    count = 0
    for index in created:
        key = (index.table, index.keys)
        count += key in seen
        seen.add(key)
    return count


def apply(dsn: str, statements: Iterable[str]) -> tuple[list[str], list[str]]:
    """Run each DDL statement in autocommit (CONCURRENTLY needs it); returns those that
    ran and those that failed, each failure with its error."""
    done, failed = [], []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for ddl in statements:
            try:
                conn.execute(ddl.encode())
                done.append(ddl)
            except psycopg.Error as exc:
                failed.append(f"{ddl}: {str(exc).strip().splitlines()[0]}")
    return done, failed
