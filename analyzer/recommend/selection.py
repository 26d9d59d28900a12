"""Workload-level selection: which of the good candidates to propose, together (pure).

Each candidate was judged alone; together they may serve the same statements (a merged index
and the recreated dropped one, an index and a prefix of it). A set is judged against all the
costly statements of its table at once — `evaluate(set)` plans each statement with every index
of the set present (hypopg holds several hypothetical indexes at once) — and its gain is the
statement time it saves per day less its members' write cost. Per table (an index changes the
plans of its own table's statements), indexes are added greedily by marginal gain per byte
until the next adds no more than `min_benefit`; with at most EXACT_LIMIT candidates every
subset is tried and the best one whose every member adds more than `min_benefit` wins. So a
candidate whose statements another proposal already serves is not proposed
(`served_by_another_proposal`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from analyzer.recommend.evidence import Saving, per_day

EXACT_LIMIT = 3


@dataclass(frozen=True)
class Option:
    """One candidate that passed on its own."""

    key: int
    table: str
    write_ms_per_day: float
    bytes: int


@dataclass(frozen=True)
class Selection:
    """The chosen candidates, and for the others the chosen ones that serve them instead."""

    chosen: tuple[int, ...]
    served_by: dict[int, tuple[int, ...]]
    savings: tuple[Saving, ...]  # per statement, with the chosen set present
    write_ms_per_day: float


Evaluate = Callable[[frozenset[int]], Sequence[Saving]]


def select(options: Sequence[Option], evaluate: Evaluate, window_seconds: float | None,
           min_benefit: float) -> Selection:
    """The set to propose; `evaluate(keys)` gives each statement's saving with them all."""
    by_key = {o.key: o for o in options}
    cache: dict[frozenset[int], tuple[float, Sequence[Saving]]] = {}

    def gain(keys: frozenset[int]) -> float:
        if not keys:
            return 0.0
        if keys not in cache:
            found = evaluate(keys)
            saved = sum(per_day(x.statement, window_seconds) * x.fraction for x in found)
            cache[keys] = (saved - sum(by_key[k].write_ms_per_day for k in keys), found)
        return cache[keys][0]

    tables: dict[str, list[Option]] = defaultdict(list)
    for o in options:
        tables[o.table].append(o)
    chosen: list[int] = []
    for table in sorted(tables):
        group = tables[table]
        picked = _exact(group, gain, min_benefit) if len(group) <= EXACT_LIMIT else \
            _greedy(group, gain, min_benefit)
        chosen += sorted(picked)
    served_by: dict[int, tuple[int, ...]] = {}
    final = frozenset(chosen)
    for o in options:
        if o.key not in final:
            served_by[o.key] = tuple(k for k in chosen if by_key[k].table == o.table)
    savings: list[Saving] = []
    for table in sorted(tables):
        members = frozenset(k for k in chosen if by_key[k].table == table)
        if members:
            gain(members)
            savings += cache[members][1]
    return Selection(tuple(chosen), served_by, tuple(savings),
                     sum(by_key[k].write_ms_per_day for k in chosen))


def _greedy(group: Sequence[Option], gain: Callable[[frozenset[int]], float],
            min_benefit: float) -> frozenset[int]:
    current: frozenset[int] = frozenset()
    left = {o.key: o for o in group}
    while left:
        base = gain(current)
        scored = [((gain(current | {k}) - base) / max(o.bytes, 1), gain(current | {k}) - base, k)
                  for k, o in left.items()]
        scored = [s for s in scored if s[1] > min_benefit]
        if not scored:
            break
        _, _, best = max(scored, key=lambda s: (s[0], s[1], -s[2]))
        current = current | {best}
        del left[best]
    return current


def _exact(group: Sequence[Option], gain: Callable[[frozenset[int]], float],
           min_benefit: float) -> frozenset[int]:
    best: tuple[float, int, frozenset[int]] = (0.0, 0, frozenset())
    for n in range(1, len(group) + 1):
        for combo in itertools.combinations(group, n):
            keys = frozenset(o.key for o in combo)
            total = gain(keys)
            if any(total - gain(keys - {k}) <= min_benefit for k in keys):
                continue  # a member that adds too little: the smaller set is the better one
            size = sum(o.bytes for o in combo)
            if total > best[0] or (total == best[0] and keys and size < best[1]):
                best = (total, size, keys)
    return best[2]
