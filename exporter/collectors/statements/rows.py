"""The statements collector's rows: one exported series per statement (or `other`), the
values of its families, and what is kept from one scrape to the next so that a statement that
did not run costs neither a new row nor new lines in the exposition."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple, cast

from exporter.selection import NameCache, Raw

OTHER_QUERYID = "other"
STATEMENT = ("target", "user", "datname", "queryid")


class StatementRow(NamedTuple):
    """One exported statement series (queryid None: the `other` remainder of a db/user).

    A NamedTuple rather than a frozen dataclass: hundreds are made every scrape, and a frozen
    dataclass of 19 fields takes several times longer to build.
    """

    datname: str
    user: str
    dbid: int
    userid: int
    queryid: int | None
    top: bool
    calls: int
    exec_seconds: float
    plan_seconds: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    shared_blks_dirtied: int
    shared_blks_written: int
    temp_blks_written: int
    blk_read_seconds: float
    blk_write_seconds: float
    wal_bytes: float
    sum_squares: float  # sum of squared execution times (s^2): pooled stddev across rows

    @property
    def key(self) -> tuple[int, int, int | None]:
        """(dbid, userid, queryid): one series per key."""
        return (self.dbid, self.userid, self.queryid)

    @property
    def mean_seconds(self) -> float:
        """Mean execution time since the statistics were reset."""
        return self.exec_seconds / self.calls if self.calls else 0.0

    @property
    def stddev_seconds(self) -> float:
        """Population standard deviation of execution time, pooled over merged rows."""
        if not self.calls:
            return 0.0
        mean = self.mean_seconds
        return float(max(self.sum_squares / self.calls - mean * mean, 0.0) ** 0.5)


@dataclass(frozen=True)
class StatementsInfo:
    """pg_stat_statements_info (PG14+): evictions and the last reset."""

    dealloc: int
    stats_reset: float | None


Sample = tuple[tuple[str, ...], float]


class SampleMemo:
    """The samples of the last exposition's statement rows, by row: a row that is the same
    object again (the statement did not run since, `RowMemo`) gets the very sample tuples
    it had, so the exposition writer keeps its lines instead of writing them again
    (`exposition.render`). Holds only the rows of the last emit (and so keeps them alive:
    an id found is the id of that very row)."""

    def __init__(self) -> None:
        self._target = ""
        self._last: dict[int, tuple[Sample, ...]] = {}
        self._rows: Sequence[StatementRow] = ()

    def samples(self, target: str, rows: Sequence[StatementRow],
                texts: dict[int, str]) -> list[tuple[Sample, ...]]:
        """Per row: one sample per family of STATEMENT_VALUES, then its query_info (if any)."""
        if target != self._target:
            self._target, self._last = target, {}
        ids = list(map(id, rows))
        out: list[tuple[Sample, ...] | None] = list(map(self._last.get, ids))
        for i in [i for i, hit in enumerate(out) if hit is None]:
            row = rows[i]
            labels = (target, row.user, row.datname,
                      OTHER_QUERYID if row.queryid is None else str(row.queryid))
            made: tuple[Sample, ...] = tuple(
                (labels, value(row)) for _, _, value in STATEMENT_VALUES.values())
            text = None if row.queryid is None else texts.get(row.queryid)
            if text is not None:
                made += (((*labels, text), 1.0),)
            out[i] = made
        done = cast(list[tuple[Sample, ...]], out)
        self._last = dict(zip(ids, done, strict=True))
        self._rows = rows  # the ids above stay theirs while they are remembered
        return done


class RowMemo:
    """The last scrape's rows by key: a statement whose counters, place (on top or not) and
    names are what they were keeps its StatementRow object (`SampleMemo`)."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, int, int | None], tuple[Raw, bool, StatementRow]] = {}

    def rows(self, chosen: Sequence[tuple[Raw, bool]], names: NameCache) -> list[StatementRow]:
        """StatementRows of `chosen`, the unchanged ones from the last scrape."""
        last, now = self._last, {}
        out = []
        for raw, top in chosen:
            key = (raw[0], raw[1], raw[2])
            hit = last.get(key)
            if hit is not None and hit[1] == top and (hit[0] is raw or hit[0] == raw):
                row = hit[2]
                if row.datname is not names.databases[row.dbid] or (
                        row.user is not names.roles[row.userid]):
                    row = to_row(raw, top, names)
            else:
                row = to_row(raw, top, names)
            now[key] = (raw, top, row)
            out.append(row)
        self._last = now
        return out


@dataclass(frozen=True)
class Statements:
    """What the statements collector returns (`memo`: see SampleMemo)."""

    rows: tuple[StatementRow, ...]
    texts: dict[int, str]
    info: StatementsInfo | None
    texts_fetched: int = 0
    memo: SampleMemo = field(default_factory=SampleMemo, compare=False, repr=False)


# Statement families: name -> (kind, help, value of a row).
STATEMENT_VALUES: dict[str, tuple[str, str, Callable[[StatementRow], float]]] = {
    "pg_stat_statements_calls_total": (
        "counter", "Times the statement was executed.", attrgetter("calls")),
    "pg_stat_statements_seconds_total": (
        "counter", "Total execution time of the statement.", attrgetter("exec_seconds")),
    "pg_stat_statements_rows_total": (
        "counter", "Rows retrieved or affected by the statement.", attrgetter("rows")),
    "pg_stat_statements_block_read_seconds_total": (
        "counter", "Time spent reading blocks (shared and local).", attrgetter("blk_read_seconds")),
    "pg_stat_statements_block_write_seconds_total": (
        "counter", "Time spent writing blocks (shared and local).",
        attrgetter("blk_write_seconds")),
    "pg_stat_statements_plan_seconds_total": (
        "counter", "Total planning time of the statement (pg_stat_statements.track_planning).",
        attrgetter("plan_seconds")),
    "pg_stat_statements_shared_blocks_hit_total": (
        "counter", "Shared buffer hits.", attrgetter("shared_blks_hit")),
    "pg_stat_statements_shared_blocks_read_total": (
        "counter", "Shared blocks read from outside shared buffers.",
        attrgetter("shared_blks_read")),
    "pg_stat_statements_shared_blocks_dirtied_total": (
        "counter", "Shared blocks dirtied.", attrgetter("shared_blks_dirtied")),
    "pg_stat_statements_shared_blocks_written_total": (
        "counter", "Shared blocks written.", attrgetter("shared_blks_written")),
    "pg_stat_statements_temp_blocks_written_total": (
        "counter", "Temp blocks written (spills to disk).", attrgetter("temp_blks_written")),
    "pg_stat_statements_wal_bytes_total": (
        "counter", "WAL generated by the statement.", attrgetter("wal_bytes")),
    "pg_stat_statements_mean_seconds": (
        "gauge", "Mean execution time since the statistics were reset.",
        attrgetter("mean_seconds")),
    "pg_stat_statements_stddev_seconds": (
        "gauge", "Standard deviation of the execution time since the statistics were reset.",
        attrgetter("stddev_seconds")),
}


def to_row(raw: Raw, top: bool, names: NameCache) -> StatementRow:
    """A row of the view (or an `other` sum) as a StatementRow in base units, with names."""
    (dbid, userid, queryid, calls, exec_ms, plan_ms, rows, shared_blks_hit, shared_blks_read,
     shared_blks_dirtied, shared_blks_written, temp_blks_written, blk_read_ms, blk_write_ms,
     wal_bytes, sumsq_ms2) = raw  # COLUMNS order
    return StatementRow(
        datname=names.databases[dbid], user=names.roles[userid], dbid=dbid, userid=userid,
        queryid=queryid, top=top, calls=calls, exec_seconds=exec_ms / 1000.0,
        plan_seconds=plan_ms / 1000.0, rows=rows, shared_blks_hit=shared_blks_hit,
        shared_blks_read=shared_blks_read, shared_blks_dirtied=shared_blks_dirtied,
        shared_blks_written=shared_blks_written, temp_blks_written=temp_blks_written,
        blk_read_seconds=blk_read_ms / 1000.0, blk_write_seconds=blk_write_ms / 1000.0,
        wal_bytes=wal_bytes, sum_squares=sumsq_ms2 / 1e6,
    )
