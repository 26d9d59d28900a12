"""Rebuilt snapshot states kept between jobs: one `SnapshotStates` per analyzer process.

The quick check after every snapshot job reads the full counters of up to ~50 stored
snapshots of its target, and the next job of the target reads nearly the same ones again.
A stored snapshot never changes once written, so its rebuilt state is kept, and a state not
kept is rolled forward from the nearest kept one before it (reading only the rows stored
since) instead of from its checkpoint.

Never a wrong state: a kept state is keyed by the store (system identifier or server
address, database oid and the snapshot table's oid, read once per session), the target and
the snapshot's id, time and row version (its xmin: a store recreated, truncated or restored
writes its rows anew, so a repeated id never matches). Only whole states are kept (every
statement, as `snapshots.load_counters` without queryids), only when every row the
snapshot header counts was read, and with `load_counters`' key order (statement key order),
so everything summed over them sums in the same order.

Bounded twice: per target, the states its last read asked for (at most
`MAX_STATES_PER_TARGET`: one quick check's change-point search reads up to 50); over all
targets, about `max_bytes` (`analyzer.snapshot_cache_bytes`, default 256 MiB; ~100 bytes
per statement of a state rolled forward from a kept one, ~600 bytes per statement of one
rebuilt from its checkpoint). The
targets kept are not a least-recently-used list, which would thrash when more targets than
fit run round robin: a target stays as long as its jobs keep coming (every `stale_after`,
default 30 minutes); one that does not fit while the others are live is read uncached, as
before.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Protocol

from analyzer.snapshots.model import SnapshotMeta, StatementCounters, StatementKey
from analyzer.store import snapshots
from analyzer.store.connection import Conn
from analyzer.store.snapshots import StoredHeader
from pgarchitect.config import AnalyzerSettings

State = dict[StatementKey, StatementCounters]
StateKey = tuple[int, datetime, int]  # a snapshot's (id, taken_at, row version)
Scope = tuple[object, ...]  # (store identity..., target)

MAX_STATES_PER_TARGET = 128
DEFAULT_MAX_BYTES = AnalyzerSettings().snapshot_cache_bytes
STALE_AFTER = 1800.0  # seconds without a job before a kept target may make room for another
# Estimated bytes per statement of a kept state: its dict slot, and a row object it holds
# alone (on the safe side: bench/bench_quickcheck.py compares the total with tracemalloc's).
SLOT_BYTES, ROW_BYTES = 100, 500


class StateSource(Protocol):
    """Where stored snapshots are read from (the store; plain data in the pure tests)."""

    def headers(self, first: SnapshotMeta, last: SnapshotMeta) -> Sequence[StoredHeader]: ...

    def rows(self, headers: Sequence[StoredHeader]) -> Mapping[int, Sequence[StatementCounters]]:
        ...

    def full(self, meta: SnapshotMeta) -> State: ...


@dataclass(frozen=True, slots=True)
class StoreSource:
    """One target's stored snapshots, read through an open store session."""

    conn: Conn
    target: str

    def headers(self, first: SnapshotMeta, last: SnapshotMeta) -> list[StoredHeader]:
        return snapshots.load_headers(self.conn, self.target, first, last)

    def rows(self, headers: Sequence[StoredHeader]) -> dict[int, list[StatementCounters]]:
        return snapshots.load_stored(self.conn, headers)

    def full(self, meta: SnapshotMeta) -> State:
        return snapshots.load_counters(self.conn, meta.id)


@dataclass(slots=True)
class _Kept:
    states: dict[StateKey, tuple[State, int]]  # each with its estimated bytes
    used_at: float

    @property
    def cost(self) -> int:
        return sum(c for _, c in self.states.values())


_by_key = itemgetter(0)


def _plan(chain: Sequence[StoredHeader], wanted: Sequence[int], have: Iterable[int]
          ) -> list[tuple[int | None, int, int]]:
    """(base, first, last) per wanted chain index not in `have`, in chain order: its state is
    the base's (None: empty, `first` is a checkpoint) with the rows of first..last laid over."""
    available = set(have)
    out: list[tuple[int | None, int, int]] = []
    for i in wanted:
        if i in available:
            continue
        j = i
        while not chain[j].is_checkpoint and j - 1 not in available:
            j -= 1
        out.append((None if chain[j].is_checkpoint else j - 1, j, i))
        available.add(i)
    return out


def roll(base: State | None, stored: Iterable[Sequence[StatementCounters]]) -> tuple[State, int]:
    """`base` (None: nothing, a checkpoint follows) with stored rows laid over in order, in
    statement key order; and how many rows were laid over."""
    state: State = {} if base is None else dict(base)
    size, laid = len(state), 0
    for rows in stored:
        for r in rows:
            state[r.key] = r
            laid += 1
    if base is None or len(state) != size:  # new keys went last: back to key order
        state = dict(sorted(state.items(), key=_by_key))
    return state, laid


@dataclass(eq=False)
class SnapshotStates:
    """The process's kept states (see the module doc); safe to share between job threads."""

    max_bytes: int = DEFAULT_MAX_BYTES
    stale_after: float = STALE_AFTER
    clock: Callable[[], float] = time.monotonic
    _kept: dict[Scope, _Kept] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stores: weakref.WeakKeyDictionary[Conn, tuple[object, ...]] = field(
        default_factory=weakref.WeakKeyDictionary)

    @property
    def kept_bytes(self) -> int:
        with self._lock:
            return sum(k.cost for k in self._kept.values())

    def kept_targets(self) -> list[Scope]:
        with self._lock:
            return list(self._kept)

    def load(self, conn: Conn, target: str, metas: Iterable[SnapshotMeta]
             ) -> dict[int, State]:
        """The full counters at each of `metas` (one target's) by snapshot id, equal to
        `snapshots.load_counters` of each; the states are shared: never change them."""
        return self.states(StoreSource(conn, target), (*self.store_identity(conn), target),
                           metas)

    def store_identity(self, conn: Conn) -> tuple[object, ...]:
        """What tells this store from any other, or from itself recreated (read once)."""
        with self._lock:
            known = self._stores.get(conn)
        if known is not None:
            return known
        row = conn.execute(
            "/* pgarchitect */ SELECT d.oid, 'pgarchitect.snapshot'::regclass::oid,"
            " has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')"
            " FROM pg_database d WHERE d.datname = current_database()").fetchone()
        assert row is not None
        server: object = (conn.info.host, conn.info.port)
        if row[2]:
            system = conn.execute("/* pgarchitect */ SELECT system_identifier"
                                  " FROM pg_control_system()").fetchone()
            assert system is not None
            server = int(system[0])
        identity = (server, int(row[0]), int(row[1]))
        with self._lock:
            self._stores[conn] = identity
        return identity

    def states(self, source: StateSource, scope: Scope, metas: Iterable[SnapshotMeta]
               ) -> dict[int, State]:
        """`load` over any source: kept states, the others rolled forward and kept."""
        want = sorted(set(metas), key=lambda m: (m.taken_at, m.id))
        if not want:
            return {}
        chain = source.headers(want[0], want[-1])
        index = {h.id: i for i, h in enumerate(chain)}
        keys = [(h.id, h.taken_at, h.version) for h in chain]
        with self._lock:
            kept = self._kept.get(scope)
            prior = dict(kept.states) if kept is not None else {}
        have = {i: prior[k][0] for i, k in enumerate(keys) if k in prior}
        costs = {i: prior[k][1] for i, k in enumerate(keys) if k in prior}
        wanted = [index[m.id] for m in want
                  if m.id in index and chain[index[m.id]].taken_at == m.taken_at]
        plans = _plan(chain, wanted, have)
        needed = sorted({k for _, first, last in plans for k in range(first, last + 1)})
        stored = source.rows([chain[k] for k in needed])
        complete = all(len(stored.get(chain[k].id, ())) == chain[k].stored_count
                       for k in needed)
        for base, first, last in plans:
            have[last], laid = roll(None if base is None else have[base],
                                    (stored.get(chain[k].id, ()) for k in range(first, last + 1)))
            costs[last] = len(have[last]) * SLOT_BYTES + min(laid, len(have[last])) * ROW_BYTES
        out = {chain[i].id: have[i] for i in wanted}
        for m in want:  # not found in the chain (retention raced): as load_counters says
            if m.id not in out:
                out[m.id] = source.full(m)
        if complete:
            self._keep(scope, _Kept({keys[i]: (have[i], costs[i])
                                     for i in wanted[-MAX_STATES_PER_TARGET:]}, self.clock()))
        return out

    def _keep(self, scope: Scope, kept: _Kept) -> None:
        """Keep `kept` as the target's, if it fits beside the targets still running."""
        with self._lock:
            self._kept.pop(scope, None)
            total, cost = sum(k.cost for k in self._kept.values()), kept.cost
            stale = sorted((s for s, k in self._kept.items()
                            if kept.used_at - k.used_at > self.stale_after),
                           key=lambda s: self._kept[s].used_at)
            for s in stale:
                if total + cost <= self.max_bytes:
                    break
                total -= self._kept.pop(s).cost
            if total + cost <= self.max_bytes:
                self._kept[scope] = kept
