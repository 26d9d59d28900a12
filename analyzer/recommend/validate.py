"""What-if checks of index candidates: plan the statements with the index, then forget it.

Modes (`analyzer.validation.mode`, docs/analyzer.md):
- ``hypopg``: a hypothetical index on the target. Hypothetical indexes live in one backend,
  so create, EXPLAIN and drop all run on the one connection this checker holds; nothing is
  written and ``hypopg_reset()`` runs at the end whatever happened.
- ``sandbox``: a real index on the sandbox database (a copy of the target's schema and data),
  built inside a transaction that is rolled back.
- ``transaction``: the same on the target itself, only when the operator chose it and only
  for tables up to ``max_table_bytes``: the build blocks the table's writes while it runs.
- ``auto``: hypopg where the target has it, else the sandbox when one is configured, else
  none (candidates are then listed as not validated).
A real build runs under ``lock_timeout`` and ``statement_timeout``; a lock that cannot be had
is given up at once and recorded, never waited for.

Plans go through analyzer/explain.py, the one way statement text is planned: custom plans
(``custom_plan``) where the statement's parameters have representative values
(recommend/parameters.py), else the generic plan (``generic_plan``); a text from the target
is data, planned only as one explainable statement, over the extended protocol, in a
read-only transaction (a savepoint inside a real build's transaction). Several indexes can be
present at once (hypopg holds many): the workload selection judges sets.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import psycopg

from analyzer.analysis.features import plan_shape
from analyzer.explain import custom_plan, execute_one, explainable, generic_plan
from analyzer.names import pair
from analyzer.recommend.ddl import quote_ident
from analyzer.recommend.model import StatementCost, StatementEvidence, Validation
from analyzer.snapshots.own import register_own
from pgarchitect.config import ValidationSettings
from pgarchitect.db import connect_sync, first_line, mark
from pgarchitect.dsn import Dsn
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.validate")

HAS_HYPOPG = "/* pgarchitect */ SELECT 1 FROM pg_extension WHERE extname = 'hypopg'"
HYPO_CREATE = "/* pgarchitect */ SELECT indexrelid, indexname FROM hypopg_create_index(%s)"
HYPO_SIZE = "/* pgarchitect */ SELECT hypopg_relation_size(%s)"
HYPO_DROP = "/* pgarchitect */ SELECT hypopg_drop_index(%s)"
HYPO_RESET = "/* pgarchitect */ SELECT hypopg_reset()"
READ_WRITE = "/* pgarchitect */ SET TRANSACTION READ WRITE"
INDEX_SIZE = "/* pgarchitect */ SELECT pg_relation_size(to_regclass(%s))"
TABLE_SIZE = "/* pgarchitect */ SELECT pg_table_size(to_regclass(%s))"
# a partitioned index and its partitions' indexes (none for a plain index), with their sizes
PARTITION_INDEXES = ("/* pgarchitect */ SELECT c.relname, pg_relation_size(t.relid)"
                     " FROM pg_partition_tree(to_regclass(%s)) t"
                     " JOIN pg_class c ON c.oid = t.relid")
register_own(HAS_HYPOPG, HYPO_CREATE, HYPO_SIZE, HYPO_DROP, HYPO_RESET, READ_WRITE,
             INDEX_SIZE, TABLE_SIZE, PARTITION_INDEXES)

METHODS = ("hypopg", "sandbox", "transaction")


def has_hypopg(conn: psycopg.Connection[Any]) -> bool:
    """Whether the hypopg extension is installed in the connection's database."""
    try:
        return conn.execute(HAS_HYPOPG, prepare=False).fetchone() is not None
    except psycopg.Error:
        return False


def choose_method(conn: psycopg.Connection[Any], settings: ValidationSettings) -> str:
    """The method `settings.mode` means for this target: hypopg | sandbox | transaction | none."""
    mode = settings.mode
    if mode == "off":
        return "none"
    if mode == "auto":
        if has_hypopg(conn):
            return "hypopg"
        return "sandbox" if settings.sandbox_dsn is not None else "none"
    return mode


def _reason(exc: psycopg.Error) -> str:
    """A REASONS code for a failed real build."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return "lock_not_available"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "validation_timeout"
    return "validation_failed"


class Validator:
    """Plans statements without and with candidate indexes, on one held connection."""

    def __init__(self, target_conn: psycopg.Connection[Any], settings: ValidationSettings,
                 server_version_num: int, method: str | None = None,
                 connect_timeout: float = 5.0) -> None:
        self.settings = settings
        self.method = method or choose_method(target_conn, settings)
        self.server_version_num = server_version_num
        self.plans = 0
        self.validations = 0
        self.seconds = 0.0
        self._before: dict[str, float | None] = {}
        self._samples_before: dict[tuple[str, tuple[tuple[str | None, ...], ...]],
                                   tuple[float | None, ...]] = {}
        # (reason, detail) of the last plan that failed: a lock or a timeout is worth telling
        self.last_failure: tuple[str, str] | None = None
        self._own: psycopg.Connection[Any] | None = None
        self.unavailable: str | None = None
        self.conn = target_conn
        if self.method == "hypopg" and not has_hypopg(target_conn):
            self.unavailable = "hypopg is not installed in the target database"
        elif self.method == "sandbox":
            if settings.sandbox_dsn is None:
                self.unavailable = "analyzer.validation.sandbox_dsn is not set"
            else:
                self._own = self._connect(settings.sandbox_dsn, connect_timeout)
                if self._own is None:
                    self.unavailable = "cannot connect to the sandbox"
                else:
                    self.conn = self._own

    def _connect(self, dsn: Dsn, timeout: float) -> psycopg.Connection[Any] | None:
        try:
            conn = connect_sync(dsn, "sandbox", connect_timeout=timeout)
        except Exception as exc:  # ConnectError: a UserError with the masked DSN
            log.warning(event("validate.sandbox_unavailable", error=str(exc)))
            return None
        conn.autocommit = True
        return conn

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Forget every hypothetical index; close the sandbox connection."""
        if self.method == "hypopg" and self.unavailable is None and not self.conn.closed:
            with contextlib.suppress(psycopg.Error):
                if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    self.conn.rollback()
                self.conn.execute(HYPO_RESET, prepare=False)
        if self._own is not None:
            with contextlib.suppress(psycopg.Error):
                self._own.close()

    @property
    def available(self) -> bool:
        """Whether candidates can be validated at all."""
        return self.method in METHODS and self.unavailable is None

    def _explain(self, query: str, params: Sequence[str | None] | None = None
                 ) -> dict[str, Any] | None:
        """The plan of one statement text through analyzer/explain.py (custom with
        `params`, else generic); None if it has none. Inside a real build's transaction the
        executor plans in a read-only savepoint."""
        if explainable(query) is None:
            return None
        self.plans += 1
        s = self.settings
        try:
            plan = (generic_plan(self.conn, query, s.statement_timeout, s.lock_timeout)
                    if params is None else
                    custom_plan(self.conn, query, list(params), s.statement_timeout,
                                s.lock_timeout))
        except psycopg.Error as exc:
            log.debug(event("validate.plan_unavailable", reason=first_line(exc)))
            self.last_failure = _reason(exc), first_line(exc)
            return None
        return None if plan is None else plan_shape(plan)

    def _cost(self, query: str, params: Sequence[str | None] | None) -> float | None:
        plan = self._explain(query, params)
        cost = plan.get("total_cost") if plan else None
        return None if cost is None else float(cost)

    def cost_before(self, statement: StatementEvidence) -> float | None:
        """The statement's generic-plan cost as things are (cached per statement)."""
        if statement.fingerprint not in self._before:
            self._before[statement.fingerprint] = self._cost(statement.query, None)
        return self._before[statement.fingerprint]

    def sample_costs(self, statement: StatementEvidence, values: Sequence[Sequence[str | None]]
                     ) -> tuple[float | None, ...]:
        """The statement's custom-plan cost per parameter sample, as things are (cached)."""
        key = (statement.fingerprint, tuple(tuple(v) for v in values))
        if key not in self._samples_before:
            self._samples_before[key] = tuple(self._cost(statement.query, v) for v in values)
        return self._samples_before[key]

    def check(self, indexes: Sequence[tuple[str, str]], table: str,
              statements: Sequence[StatementEvidence],
              samples: Mapping[str, Sequence[Sequence[str | None]]] | None = None,
              analyze: bool = False) -> Validation:
        """Plan `statements` with the indexes (plain CREATE INDEX, name) in place, then undo.

        `samples`: per statement fingerprint, the parameter values to plan it with (custom
        plans); a statement without samples is planned generically. `analyze`: an index has
        an expression, whose statistics only a (rolled-back) ANALYZE gives the planner.
        """
        started = time.perf_counter()
        plans_before = self.plans
        if not self.available:
            return Validation("none", False, "not_validated",
                              self.unavailable or "validation is off")
        samples = samples or {}
        before: dict[str, tuple[float | None, ...]] = {}
        for s in statements:
            values = samples.get(s.fingerprint)
            before[s.fingerprint] = self.sample_costs(s, values) if values else (
                self.cost_before(s),)
        self.validations += 1
        try:
            if self.method == "hypopg":
                result = self._hypopg(indexes, statements, before, samples)
            else:
                result = self._transaction(indexes, table, statements, before, samples,
                                           analyze)
        finally:
            elapsed = time.perf_counter() - started
            self.seconds += elapsed
        log.debug(event("validate.checked", method=self.method, table=table, ok=result.ok,
                        reason=result.reason, seconds=round(elapsed, 4)))
        return Validation(result.method, result.ok, result.reason, result.detail,
                          result.costs, result.index_bytes, elapsed, self.plans - plans_before)

    def _after(self, statements: Sequence[StatementEvidence],
               before: Mapping[str, tuple[float | None, ...]],
               samples: Mapping[str, Sequence[Sequence[str | None]]],
               index_names: Sequence[str]) -> tuple[StatementCost, ...]:
        costs = []
        for s in statements:
            values = samples.get(s.fingerprint)
            pairs: list[tuple[float, float | None]] = []
            uses = False
            for b, v in zip(before.get(s.fingerprint, ()), values or (None,), strict=False):
                if b is None:
                    continue
                plan = self._explain(s.query, v)
                after = plan.get("total_cost") if plan else None
                uses = uses or (bool(plan) and any(n.get("index") in index_names
                                                   for n in (plan or {}).get("nodes", ())))
                pairs.append((b, None if after is None else float(after)))
            if not pairs:
                continue
            known = [a for _, a in pairs if a is not None]
            costs.append(StatementCost(
                s.queryids[0], sum(b for b, _ in pairs) / len(pairs),
                sum(known) / len(known) if len(known) == len(pairs) else None, uses,
                tuple(pairs), custom=bool(values)))
        return tuple(costs)

    def _hypopg(self, indexes: Sequence[tuple[str, str]],
                statements: Sequence[StatementEvidence],
                before: Mapping[str, tuple[float | None, ...]],
                samples: Mapping[str, Sequence[Sequence[str | None]]]) -> Validation:
        conn = self.conn
        made: list[tuple[int, str]] = []
        try:
            for ddl, _ in indexes:
                try:
                    row = conn.execute(HYPO_CREATE, (ddl,), prepare=False).fetchone()
                except psycopg.Error as exc:
                    return Validation("hypopg", False, _reason(exc), first_line(exc))
                assert row is not None
                made.append((int(row[0]), str(row[1])))
            costs = self._after(statements, before, samples, [n for _, n in made])
            size = 0
            for oid, _ in made:
                size_row = conn.execute(HYPO_SIZE, (oid,), prepare=False).fetchone()
                size += int(size_row[0]) if size_row and size_row[0] is not None else 0
        finally:
            for oid, _ in made:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(HYPO_DROP, (oid,), prepare=False)
        return Validation("hypopg", True, costs=costs, index_bytes=size or None)

    def _transaction(self, indexes: Sequence[tuple[str, str]], table: str,
                     statements: Sequence[StatementEvidence],
                     before: Mapping[str, tuple[float | None, ...]],
                     samples: Mapping[str, Sequence[Sequence[str | None]]],
                     analyze: bool) -> Validation:
        conn, s = self.conn, self.settings
        method = self.method
        if method == "transaction":
            try:
                row = conn.execute(TABLE_SIZE, (_regclass(table),), prepare=False).fetchone()
            except psycopg.Error as exc:
                return Validation(method, False, "validation_failed", first_line(exc))
            size = int(row[0]) if row and row[0] is not None else 0
            if size > s.max_table_bytes:
                return Validation(method, False, "table_too_large",
                                  f"{size} bytes > analyzer.validation.max_table_bytes")
        costs: tuple[StatementCost, ...] = ()
        index_bytes = 0
        try:
            with conn.transaction(force_rollback=True):
                setup = [READ_WRITE, f"SET LOCAL lock_timeout = {_ms(s.lock_timeout)}",
                         f"SET LOCAL statement_timeout = {_ms(s.statement_timeout)}"]
                conn.execute("; ".join(mark(p) for p in setup), prepare=False)
                for ddl, _ in indexes:
                    execute_one(conn, mark(ddl))  # one command only, whatever the DDL holds
                if analyze:
                    execute_one(conn, mark(f"ANALYZE {_regclass(table)}"))
                names: list[str] = []
                for _, name in indexes:
                    # a partitioned table's index has one child index per partition
                    tree = conn.execute(PARTITION_INDEXES, (_regclass(table, name),),
                                        prepare=False).fetchall()
                    names += [name, *(str(r[0]) for r in tree)]
                    row = conn.execute(INDEX_SIZE, (_regclass(table, name),),
                                       prepare=False).fetchone()
                    index_bytes += sum(int(r[1]) for r in tree) if tree else (
                        int(row[0]) if row and row[0] is not None else 0)
                costs = self._after(statements, before, samples, names)
        except psycopg.Error as exc:
            reason = _reason(exc)
            log.info(event("validate.gave_up", method=method, table=table, reason=reason,
                           error=first_line(exc)))
            return Validation(method, False, reason, first_line(exc))
        return Validation(method, True, costs=costs, index_bytes=index_bytes or None)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _regclass(table: str, index: str | None = None) -> str:
    """A quoted `schema.relation` for to_regclass (the index lives in the table's schema)."""
    schema, name = pair(table)
    rel = index if index is not None else name
    return f"{quote_ident(schema)}.{quote_ident(rel)}"
