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
    state: Mapping[StatementKey, StatementCounters]


def same(a: StatementCounters, b: StatementCounters) -> bool:
    """True when two readings of one statement carry identical counters."""
    return a.as_row() == b.as_row()


def checkpoint_reason(
    previous: Previous | None,
    statements: Sequence[StatementCounters],
    stats_reset: datetime | None,
    dealloc: int | None,
    read_at: datetime,
    checkpoint_interval: float,
    partition_start: datetime,
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
    present = {s.key for s in statements}
    if any(key not in present for key in previous.state):
        return "vanished"
    return None


def changed(
    previous: Mapping[StatementKey, StatementCounters], statements: Iterable[StatementCounters]
) -> list[StatementCounters]:
    """The statements that are new or whose counters differ from the previous state."""
    out = []
    for s in statements:
        prior = previous.get(s.key)
        if prior is None or not same(prior, s):
            out.append(s)
    return out


def plan(
    previous: Previous | None,
    statements: Sequence[StatementCounters],
    stats_reset: datetime | None,
    dealloc: int | None,
    read_at: datetime,
    checkpoint_interval: float,
    partition_start: datetime,
) -> tuple[str | None, list[StatementCounters]]:
    """What a snapshot stores: (why it is a checkpoint or None, the rows to write)."""
    reason = checkpoint_reason(previous, statements, stats_reset, dealloc, read_at,
                               checkpoint_interval, partition_start)
    if reason is not None or previous is None:
        return reason, list(statements)
    return None, changed(previous.state, statements)


def after(
    previous: Previous | None, snapshot_id: int, read_at: datetime,
    stats_reset: datetime | None, dealloc: int | None, checkpoint: str | None,
    statements: Sequence[StatementCounters],
) -> Previous:
    """What the next snapshot compares with, once this one is stored."""
    last_checkpoint = (read_at if checkpoint is not None or previous is None
                       else previous.last_checkpoint_at)
    return Previous(snapshot_id, read_at, stats_reset, dealloc, last_checkpoint,
                    {s.key: s for s in statements})


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
