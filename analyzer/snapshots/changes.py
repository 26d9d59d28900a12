"""Changed-only snapshots: which statements a snapshot stores, and how full states come back.

A snapshot stores the statements whose counters moved since the target's previous snapshot;
an unchanged statement's counters are those of its last stored row, carried forward. A
checkpoint stores every statement. One is taken for the first snapshot of a target, after a
reset of the view or an eviction (a statement that vanished cannot be told apart from an
unchanged one otherwise), when the checkpoint interval has passed, and as the first snapshot
of a target in a new time partition (so dropping old partitions never orphans later ones).
The arithmetic is exact: every state rebuilt from changed-only storage equals the reading
that was taken, so window statistics are those of full storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from analyzer.snapshots.model import StatementCounters, StatementKey

State = dict[StatementKey, StatementCounters]


@dataclass(frozen=True, slots=True)
class Previous:
    """What the next snapshot is compared with: the target's latest snapshot and its state."""

    snapshot_id: int
    taken_at: datetime
    stats_reset: datetime | None
    dealloc: int | None
    last_checkpoint_at: datetime
    # Compared whole (dataclass equality): any moved counter, a changed stats_since or a
    # renamed role or database counts as a change. Kept as the reading's own objects: new
    # tuples per statement would cost more in garbage collection than the comparison.
    state: Mapping[StatementKey, StatementCounters]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one snapshot stores, and the state it leaves."""

    checkpoint: str | None                      # why all are stored; None: the changed ones
    rows: list[StatementCounters]               # the statements to write
    state: dict[StatementKey, StatementCounters]  # every statement after this snapshot


def checkpoint_reason(
    previous: Previous | None,
    stats_reset: datetime | None,
    dealloc: int | None,
    read_at: datetime,
    checkpoint_interval: float,
    partition_start: datetime,
    vanished: bool,
) -> str | None:
    """Why this snapshot must store every statement, or None when changed rows suffice."""
    if previous is None:
        return "first"
    if previous.stats_reset != stats_reset:
        return "reset"
    if previous.dealloc != dealloc:
        return "evicted"
    if (read_at - previous.last_checkpoint_at).total_seconds() >= checkpoint_interval:
        return "interval"
    if previous.last_checkpoint_at < partition_start:
        return "partition"
    if vanished:
        return "vanished"
    return None


def plan(
    previous: Previous | None,
    statements: Sequence[StatementCounters],
    stats_reset: datetime | None,
    dealloc: int | None,
    read_at: datetime,
    checkpoint_interval: float,
    partition_start: datetime,
) -> Plan:
    """Compare a reading with the previous state in one pass and decide what to store."""
    prior_state = previous.state if previous is not None else {}
    state: dict[StatementKey, StatementCounters] = {}
    moved: list[StatementCounters] = []
    matched = 0
    for s in statements:
        key = s.key
        state[key] = s
        prior = prior_state.get(key)
        if prior is None:
            moved.append(s)
            continue
        matched += 1
        if prior != s:
            moved.append(s)
    reason = checkpoint_reason(previous, stats_reset, dealloc, read_at, checkpoint_interval,
                               partition_start, vanished=matched < len(prior_state))
    return Plan(reason, list(statements) if reason is not None else moved, state)


def after(
    previous: Previous | None, snapshot_id: int, read_at: datetime,
    stats_reset: datetime | None, dealloc: int | None, stored: Plan,
) -> Previous:
    """What the next snapshot compares with, once this one is stored."""
    last_checkpoint = (read_at if stored.checkpoint is not None or previous is None
                       else previous.last_checkpoint_at)
    return Previous(snapshot_id, read_at, stats_reset, dealloc, last_checkpoint, stored.state)


def roll_forward(
    snapshots: Iterable[tuple[bool, Iterable[StatementCounters]]],
) -> list[State]:
    """Full states from stored snapshots in order, each (is_checkpoint, stored rows).

    The first one must be a checkpoint; later ones overlay their rows on the state before.
    """
    out: list[State] = []
    state: State | None = None
    for is_checkpoint, rows in snapshots:
        if is_checkpoint or state is None:
            if not is_checkpoint:
                raise ValueError("a series of stored snapshots must start at a checkpoint")
            state = {}
        else:
            state = dict(state)
        for r in rows:
            state[r.key] = r
        out.append(state)
    return out
