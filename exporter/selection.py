"""Which statements get their own series: top lists with hysteresis and a hard cap (pure).

Input: the rows of `pg_stat_statements(false)` exactly as read (columns in
`COLUMNS` order: dbid, userid, queryid, then the counters), one per
(dbid, userid, queryid, toplevel). The two toplevel rows of a statement are added up into one
key; each database's top `top_n` keys by total time, calls, shared blocks read and temp blocks
written are kept, plus the keys still inside the hysteresis window (`keep_scrapes` scrapes
after they were last on top), at most `max_series` per database; everything else is summed
into one `other` row per database and user, so sums over queryid equal the view's totals.

After a scrape, `Selection.thresholds` holds per database the last value of each full top
list; the collector then asks the server only for rows above them (plus the held queryids)
and for the rest already summed per (dbid, userid) (`collectors.statements.select_candidates`), and
`choose` adds those sums into the `other` rows.

The per-row work is done with C-level builtins (map/zip/dict/heapq over the records) because
it runs over every statement of the view on every scrape.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, groupby
from operator import is_not, itemgetter, not_
from typing import Any

# The columns of a row of the view as the statements collector reads it, in order: the key,
# then the counters (summed into `other`).
COLUMNS = ("dbid", "userid", "queryid", "calls", "exec_ms", "plan_ms", "rows",
           "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied", "shared_blks_written",
           "temp_blks_written", "blk_read_ms", "blk_write_ms", "wal_bytes", "sumsq_ms2")

Key = tuple[int, int, int]
Raw = Sequence[Any]  # one row of the view (an asyncpg Record or a tuple), COLUMNS order

_KEY = itemgetter(0, 1, 2)
_DBID = itemgetter(0)
_USERID = itemgetter(1)
FIRST_COUNTER = 3  # COLUMNS[3:] are summed
_EXEC = COLUMNS.index("exec_ms")
_CALLS = COLUMNS.index("calls")
# Top lists: (column, only rows where it is positive). An I/O-heavy statement is not hidden
# by a CPU-heavy one.
RANKED = ((_EXEC, False), (_CALLS, False),
          (COLUMNS.index("shared_blks_read"), True), (COLUMNS.index("temp_blks_written"), True))


def add_up(rows: Iterable[Raw]) -> list[Any]:
    """Column sums of the counters of `rows` (the key columns of the first row kept)."""
    columns = list(zip(*rows, strict=True))
    return [columns[0][0], columns[1][0], columns[2][0],
            *(sum(c) for c in columns[FIRST_COUNTER:])]


def by_key(rows: Sequence[Raw]) -> dict[Key, Raw]:
    """key -> row, the rows of a key (top-level and nested) added up."""
    keys = list(map(_KEY, rows))
    last: dict[Key, Raw] = dict(zip(keys, rows, strict=True))
    if len(last) != len(rows):  # track = all: some statements are top-level and nested
        first: dict[Key, Raw] = {}
        list(map(first.setdefault, keys, rows))  # same key order as `last`
        # A view row is keyed on (dbid, userid, queryid, toplevel): at most two rows a key.
        for key in list(compress(last, map(is_not, last.values(), first.values()))):
            last[key] = add_up((first[key], last[key]))
    return last


def partition(rows: Iterable[Raw], key: Callable[[Raw], Any]) -> dict[Any, list[Raw]]:
    """Rows grouped by `key` (sorted and grouped in C rather than a loop per row)."""
    return {k: list(group) for k, group in groupby(sorted(rows, key=key), key)}


Thresholds = tuple[float, int, int, int]  # one per RANKED column


def top_keys(rows: Sequence[Raw], top_n: int) -> tuple[set[Key], Thresholds | None]:
    """The union of the top lists of one database's rows, and each list's last value (None
    when a list is not full: then every row of the database may enter it)."""
    out: set[Key] = set()
    bounds: list[Any] = []
    for column, positive in RANKED:
        best = heapq.nlargest(top_n, rows, key=itemgetter(column))
        if positive:
            best = [r for r in best if r[column] > 0]
        out.update(map(_KEY, best))
        bounds.append(best[-1][column] if len(best) == top_n else 0 if positive else None)
    return out, (None if None in bounds else (bounds[0], bounds[1], bounds[2], bounds[3]))


@dataclass(frozen=True)
class _Same:
    """One database's last choice with what it was made from (Selection._again)."""

    part: list[Raw]
    summed: list[Raw]
    chosen: list[tuple[Raw, bool]]
    others: list[Raw]
    bounds: Thresholds | None

    def repeatable(self, max_series: int) -> bool:
        """Every series on top (none held by the window only, which ages) and the cap not
        reached: the same rows give the same choice."""
        return len(self.chosen) < max_series and all(on_top for _, on_top in self.chosen)


@dataclass(frozen=True)
class Chosen:
    """One scrape's choice: rows with their own series (and whether on top now), `other`s."""

    rows: list[tuple[Raw, bool]]
    others: list[Raw]  # queryid None: the sums of everything else, per (dbid, userid)


class Selection:
    """Hysteresis memory of one target: key -> number of the last scrape it was on top, and
    the thresholds that let the next read skip statements that cannot be on top."""

    def __init__(self, top_n: int, keep_scrapes: int, max_series: int) -> None:
        self.top_n = top_n
        self.keep_scrapes = keep_scrapes
        self.max_series = max_series
        self.scrape_no = 0
        self.last_top: dict[Key, int] = {}
        # dbid -> the n-th largest value of each top list in the last scrape. Counters only
        # grow, so a row at or below all of them cannot enter this scrape's top lists unless
        # it is held already; a reset or an eviction of a held statement clears them.
        self.thresholds: dict[int, Thresholds] = {}
        self._calls: dict[Key, int] = {}
        self._same: dict[int, _Same] = {}

    def held(self) -> list[int]:
        """The queryids whose series are held (any database): always read one by one."""
        return sorted({k[2] for k in self.last_top})

    def choose(self, rows: Sequence[Raw], summed: Sequence[Raw] = ()) -> Chosen:
        """Pick the series of this scrape, fold the rest, remember.

        `rows`: statements of the view (queryid set; toplevel rows of a key are added up);
        `summed`: rows the server already summed per (dbid, userid) (queryid None).
        """
        self.scrape_no += 1
        merged = by_key(rows)
        # A held statement reset or evicted: its thresholds may have been too high for this
        # read, so the next one reads everything.
        lost = any(k not in merged or merged[k][_CALLS] < calls
                   for k, calls in self._calls.items() if k in self.last_top)
        chosen: list[tuple[Raw, bool]] = []
        others: list[Raw] = []
        parts = partition(merged.values(), _DBID)
        summed_by_db = partition(summed, _DBID)
        memo: dict[int, _Same] = {}
        for dbid in parts.keys() | summed_by_db.keys():
            part, summed_in = parts.get(dbid, []), summed_by_db.get(dbid, [])
            same = self._same.get(dbid)
            if same is not None and same.part == part and same.summed == summed_in:
                mine, folded = self._again(dbid, same), same.others
            else:
                mine = self._choose_in(dbid, part, merged)
                taken = {id(row) for row, _ in mine}
                rest = list(compress(part, map(not_, map(taken.__contains__, map(id, part)))))
                folded = fold_database(rest + summed_in)
                same = _Same(part, summed_in, mine, folded, self.thresholds.get(dbid))
            chosen.extend(mine)
            others.extend(folded)
            if same.repeatable(self.max_series):
                memo[dbid] = same
        self._same = memo
        now = self.scrape_no
        self.last_top = {k: n for k, n in self.last_top.items() if now - n < self.keep_scrapes}
        self._calls = {_KEY(row): row[_CALLS] for row, _ in chosen}
        if lost:
            self.thresholds = {}
        return Chosen(chosen, others)

    def _again(self, dbid: int, same: _Same) -> list[tuple[Raw, bool]]:
        """A database whose candidates and sums are those of the last scrape, and whose
        choice then had every series on top and under the cap: the same choice (the top
        lists of the same rows), its statements on top again."""
        for row, _ in same.chosen:
            self.last_top[_KEY(row)] = self.scrape_no
        if same.bounds is None:
            self.thresholds.pop(dbid, None)
        else:
            self.thresholds[dbid] = same.bounds
        return same.chosen

    def _choose_in(self, dbid: int, part: Sequence[Raw],
                   merged: dict[Key, Raw]) -> list[tuple[Raw, bool]]:
        """One database: its top lists, plus the keys still in the window, capped."""
        top, bounds = top_keys(part, self.top_n)
        if bounds is None:
            self.thresholds.pop(dbid, None)
        else:
            self.thresholds[dbid] = bounds
        kept = [k for k in self.last_top if k[0] == dbid and k in merged and k not in top]
        candidates = [(merged[k], True) for k in top] + [(merged[k], False) for k in kept]
        if len(candidates) > self.max_series:
            # On top now first (largest total time first), then the most recently on top.
            candidates.sort(key=lambda c: (not c[1], -self.last_top.get(_KEY(c[0]), 0),
                                           -c[0][_EXEC], _KEY(c[0])))
            for row, _ in candidates[self.max_series:]:
                self.last_top.pop(_KEY(row), None)
            candidates = candidates[: self.max_series]
        for row, on_top in candidates:
            if on_top:
                self.last_top[_KEY(row)] = self.scrape_no
        return candidates


def fold_database(rows: Iterable[Raw]) -> list[Raw]:
    """Sum the rows of one database into one `other` row (queryid None) per user."""
    out: list[Raw] = []
    for group in partition(rows, _USERID).values():
        summed = add_up(group)
        summed[2] = None
        out.append(summed)
    return out


class NameCache:
    """Database and role names by oid; unknown oids are asked for at once, and everything is
    asked again every `ttl` seconds so that a rename shows up."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.databases: dict[int, str] = {}
        self.roles: dict[int, str] = {}
        self._since = float("-inf")

    def missing(self, dbids: Iterable[int], userids: Iterable[int],
                now: float) -> tuple[list[int], list[int]]:
        """The (database, role) oids to look up now.

        Names are keyed by oid. An unknown oid may be a database (or role) dropped and
        created again under the name a cached oid still carries: with it every cached oid of
        its kind is asked again, so one name never labels two oids (the series would be
        duplicates); the dropped one is then shown as its number.
        """
        if now - self._since >= self.ttl:
            self.databases, self.roles, self._since = {}, {}, now
        dbs = set(dbids).difference(self.databases)
        roles = set(userids).difference(self.roles)
        return (sorted(dbs.union(self.databases) if dbs else dbs),
                sorted(roles.union(self.roles) if roles else roles))

    def put(self, dbids: Iterable[int], userids: Iterable[int],
            found: Iterable[tuple[str, int, str]]) -> None:
        """Remember the names found ((kind 'd' | 'r', oid, name)); an oid gone is its number."""
        for oid in dbids:
            self.databases[oid] = str(oid)
        for oid in userids:
            self.roles[oid] = str(oid)
        for kind, oid, name in found:
            (self.databases if kind == "d" else self.roles)[oid] = name


class TextCache:
    """Normalized query texts by queryid, least recently used evicted beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._texts: OrderedDict[int, str] = OrderedDict()

    def missing(self, queryids: Iterable[int]) -> list[int]:
        """The queryids whose text is not cached (each once)."""
        return sorted({q for q in queryids if q not in self._texts})

    def put(self, queryid: int, text: str) -> None:
        """Remember a text (an empty text marks one the server no longer has)."""
        self._texts[queryid] = text
        self._texts.move_to_end(queryid)
        while len(self._texts) > self.size:
            self._texts.popitem(last=False)

    def get(self, queryid: int) -> str | None:
        """The cached text, refreshed as recently used."""
        text = self._texts.get(queryid)
        if text is not None:
            self._texts.move_to_end(queryid)
        return text

    def __len__(self) -> int:
        return len(self._texts)
