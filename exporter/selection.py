"""Which statements get their own series: top lists with hysteresis and a hard cap (pure).

The server marks each statement row `top` (in one of the top lists of its database) or not;
the exporter remembers when each key was last on top and asks the server to keep it for
`keep_scrapes` more scrapes. Whatever exceeds `max_series` per database is folded into that
database's `other` row, so cardinality is bounded by config, never by the workload.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from exporter.model import StatementRow

Key = tuple[int, int, int]
_SUMMED = [f.name for f in dataclasses.fields(StatementRow)
           if f.type in ("int", "float") and f.name not in ("dbid", "userid")]


def merge(into: StatementRow, other: StatementRow) -> StatementRow:
    """`into` with every counter of `other` added (labels of `into` kept)."""
    sums = {name: getattr(into, name) + getattr(other, name) for name in _SUMMED}
    return dataclasses.replace(into, **sums)


def fold_into_other(rows: Iterable[StatementRow]) -> dict[tuple[int, int], StatementRow]:
    """Sum rows into one `other` row (queryid None) per (dbid, userid)."""
    out: dict[tuple[int, int], StatementRow] = {}
    for row in rows:
        key = (row.dbid, row.userid)
        base = out.get(key)
        out[key] = (dataclasses.replace(row, queryid=None, top=False) if base is None
                    else merge(base, row))
    return out


class Selection:
    """Hysteresis memory of one target: key -> number of the last scrape it was on top."""

    def __init__(self, keep_scrapes: int, max_series: int) -> None:
        self.keep_scrapes = keep_scrapes
        self.max_series = max_series
        self.scrape_no = 0
        self.last_top: dict[Key, int] = {}

    def kept_keys(self) -> tuple[list[int], list[int], list[int]]:
        """The (dbid, userid, queryid) columns of the keys still inside the keep window."""
        keys = list(self.last_top)
        return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]

    def apply(self, rows: Sequence[StatementRow]) -> list[StatementRow]:
        """Cap the server's candidates per database, fold the excess into `other`, remember."""
        self.scrape_no += 1
        now = self.scrape_no
        by_db: dict[int, list[StatementRow]] = {}
        others: list[StatementRow] = []
        for row in rows:
            if row.queryid is None:
                others.append(row)
            else:
                by_db.setdefault(row.dbid, []).append(row)
        out: list[StatementRow] = []
        for candidates in by_db.values():
            # On top now first (largest total time first), then the most recently on top.
            candidates.sort(key=lambda r: (
                not r.top, -self.last_top.get(_key(r), 0), -r.exec_seconds, _key(r)))
            keep, excess = candidates[: self.max_series], candidates[self.max_series:]
            out.extend(keep)
            others.extend(excess)
            for row in keep:
                if row.top:
                    self.last_top[_key(row)] = now
            for row in excess:
                self.last_top.pop(_key(row), None)
        folded = fold_into_other(others)
        out.extend(folded.values())
        self.last_top = {k: n for k, n in self.last_top.items()
                         if now - n < self.keep_scrapes}
        return out


def _key(row: StatementRow) -> Key:
    assert row.queryid is not None
    return (row.dbid, row.userid, row.queryid)


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
