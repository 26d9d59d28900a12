"""Recommendations read from counters rather than plans: unused and duplicate indexes, stale
statistics, dead tuples, N+1 loops, sorts that spill to disk, predicates that hide a column
from its index (pure).

Each rule gives a confidence from how far the evidence is past its threshold; the caller keeps
those at or above `min_confidence`. None needs a what-if check: the counters are the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from analyzer.analysis.features import parse_statement
from analyzer.recommend import ddl
from analyzer.recommend.candidates import MIN_TABLE_ROWS, normalize, too_small
from analyzer.recommend.model import NotProposed, Recommendation, StatementEvidence
from analyzer.recommend.predicates import Access
from analyzer.snapshots.catalog import Catalog, IndexInfo

Finding = Recommendation | NotProposed

# Stale statistics: rows changed since the last ANALYZE against the table's size. Autovacuum
# analyses at 10 % (+50 rows) by default; twice that means it is not keeping up.
STALE_FRACTION = 0.2
# Dead tuples against live ones: autovacuum vacuums at 20 % (+50) by default; past 25 % it
# is behind (or switched off for the table).
DEAD_FRACTION = 0.25
MIN_DEAD = 10_000
# N+1: at least this many calls in the window, about one row each, and this share of the time.
N_PLUS_ONE_CALLS = 1000
N_PLUS_ONE_SHARE = 0.01
# work_mem: a statement that writes temp files each call, at least this much per call.
MIN_SPILL_BYTES = 512 * 1024
MAX_WORK_MEM = 1024 ** 3
BLOCK = 8192
# rewrite: a wrapped column's statement must take at least this share of the time.
REWRITE_SHARE = 0.01


def _confidence(excess: float) -> float:
    """0.8 at the threshold (excess 1), rising towards 0.99 as the evidence grows."""
    return min(0.99, 1.0 - 0.2 / max(excess, 1e-9))


def _index_rec(i: IndexInfo, why: str, rationale: str, confidence: float,
               evidence: Mapping[str, object]) -> Recommendation:
    return Recommendation(
        "drop_index", i.qualified_table, i.columns, ddl.drop_index(i.schema, i.name),
        ddl.concurrent(i.definition) if ddl.is_create_index(i.definition) else i.definition,
        rationale, confidence=confidence,
        evidence={"index": i.qualified_name, "definition": i.definition, "why": why,
                  "scans": i.scans, "size_bytes": i.size_bytes, **evidence})


def drop_indexes(catalog: Catalog, now: datetime, observed_since: datetime | None,
                 min_age: float) -> list[Finding]:
    """Unused indexes (for at least `min_age` seconds of statistics) and duplicate prefixes."""
    out: list[Finding] = []
    since = catalog.stats_reset or observed_since
    age = (now - since).total_seconds() if since is not None else None
    duplicates: set[str] = set()
    keepers: set[str] = set()  # indexes that take over a duplicate's lookups
    for i in catalog.indexes:
        if i.primary or i.unique or i.constraint or not i.valid:
            continue
        for other in catalog.indexes_on(i.qualified_table):
            if other.name == i.name or not other.valid or other.method != i.method:
                continue
            if other.predicate != i.predicate or len(other.columns) < len(i.columns):
                continue
            a = [normalize(c) for c in i.columns]
            b = [normalize(c) for c in other.columns]
            if b[: len(a)] != a or not set(i.include) <= set(other.columns) | set(other.include):
                continue
            # Two identical plain indexes: keep the first by name, drop the other.
            if len(a) == len(b) and not (other.unique or other.constraint) and (
                    other.name > i.name or other.name in duplicates):
                continue
            duplicates.add(i.name)
            keepers.add(other.qualified_name)
            out.append(_index_rec(
                i, "duplicate",
                f"Index {i.name} is redundant: {other.name} on the same table starts with the "
                f"same key columns ({', '.join(i.columns)}) and serves every lookup it does.",
                0.95, {"covered_by": other.qualified_name,
                       "covered_by_definition": other.definition}))
            break
    for i in catalog.indexes:
        if not i.valid and not (i.primary or i.unique or i.constraint):
            # A failed CREATE INDEX CONCURRENTLY: never used for reads, still kept up to date.
            out.append(_index_rec(
                i, "invalid",
                f"Index {i.name} is invalid (a concurrent build that failed): no query can use "
                f"it, yet every write to {i.qualified_table} still maintains it.", 0.95, {}))
            continue
        if i.primary or i.unique or i.constraint or not i.valid or i.scans > 0:
            continue
        if i.name in duplicates or i.qualified_name in keepers:
            continue
        if age is None or age < min_age:
            seen = "an unknown time" if age is None else f"{age / 86400:.1f} days"
            out.append(NotProposed("drop_index", i.qualified_table, i.columns, "too_young",
                                   f"{i.qualified_name} unused over {seen}; needs "
                                   f"{min_age / 86400:g} days"))
            continue
        days = age / 86400
        out.append(_index_rec(
            i, "unused",
            f"Index {i.name} has not been used once in {days:.0f} days of statistics and costs "
            f"{_size(i.size_bytes)} plus write overhead on every change to "
            f"{i.qualified_table}.", _confidence(age / min_age if min_age > 0 else 1.0),
            {"observed_days": round(days, 1)}))
    return out


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("kB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def statistics(catalog: Catalog, touched: set[str] | None = None) -> list[Finding]:
    """ANALYZE for stale statistics and VACUUM for dead tuples (on `touched` tables only, when
    given)."""
    out: list[Finding] = []
    for t in catalog.tables:
        if touched and t.qualified not in touched:
            continue
        rows = max(t.reltuples, float(t.live_tuples), 0.0)
        name = ddl.qualified(t.qualified)
        if too_small(t) and rows < MIN_TABLE_ROWS:
            continue
        never = t.last_analyzed is None and t.reltuples < 0
        threshold = max(STALE_FRACTION * rows, float(MIN_TABLE_ROWS))
        if never or t.mod_since_analyze >= threshold:
            excess = 2.0 if never else t.mod_since_analyze / threshold
            when = "never been analysed" if never else (
                f"had {t.mod_since_analyze:,} rows changed since its last ANALYZE "
                f"({t.mod_since_analyze / max(rows, 1):.0%} of about {int(rows):,})")
            out.append(Recommendation(
                "analyze", t.qualified, (), f"ANALYZE {name}", "",
                f"Table {t.qualified} has {when}, so the planner estimates its filters from "
                f"stale statistics.", confidence=_confidence(excess),
                evidence={"mod_since_analyze": t.mod_since_analyze, "reltuples": t.reltuples,
                          "last_analyzed": None if t.last_analyzed is None
                          else t.last_analyzed.isoformat()}))
        dead_threshold = max(DEAD_FRACTION * t.live_tuples, float(MIN_DEAD))
        if t.dead_tuples >= dead_threshold:
            share = t.dead_tuples / max(t.live_tuples + t.dead_tuples, 1)
            last = max((v for v in (t.last_vacuum, t.last_autovacuum) if v is not None),
                       default=None)
            out.append(Recommendation(
                "vacuum", t.qualified, (), f"VACUUM (ANALYZE) {name}", "",
                f"Table {t.qualified} carries {t.dead_tuples:,} dead rows ({share:.0%} of its "
                f"rows) that every scan still reads; autovacuum is not keeping up.",
                confidence=_confidence(t.dead_tuples / dead_threshold),
                evidence={"dead_tuples": t.dead_tuples, "live_tuples": t.live_tuples,
                          "last_vacuum": None if last is None else last.isoformat()}))
    return out


def n_plus_one(statements: Sequence[StatementEvidence], accesses: Mapping[str, Access]
               ) -> list[Finding]:
    """Statements run very often for about one row each: an application loop, one per row."""
    total = sum(s.total_ms for s in statements) or 1.0
    out: list[Finding] = []
    for s in statements:
        acc = accesses.get(s.fingerprint)
        if s.calls < N_PLUS_ONE_CALLS or acc is None or not acc.parsed:
            continue
        if parse_statement(s.query).kind != "select" or s.rows > 1.5 * s.calls:
            continue
        keys = [t for t in acc.terms if t.role in ("equality", "in")]
        if not keys or len(acc.tables) != 1:
            continue
        share = s.total_ms / total
        key = keys[0]
        rationale = (f"This lookup of {acc.tables[0]} by {key.text} ran {s.calls:,} times for "
                     f"about {s.rows / s.calls:.1f} row each: an application loop issuing one "
                     f"query per row; fetch them in one query with {key.text} = ANY($1).")
        confidence = _confidence(share / N_PLUS_ONE_SHARE) if share >= N_PLUS_ONE_SHARE else (
            0.8 * share / N_PLUS_ONE_SHARE)
        out.append(Recommendation(
            "n_plus_one", acc.tables[0], (key.text,), "", "", rationale,
            queryids=tuple(s.queryid_texts), statements=(s.query,), confidence=confidence,
            evidence={"calls": s.calls, "rows": s.rows, "total_ms": round(s.total_ms, 3),
                      "share_of_time": round(share, 4), "query": s.query}))
    return out


def _mb(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1.0) / (1024 * 1024))))


def _work_mem_ddl(value: str, database: str | None) -> tuple[str, str, str]:
    """(DDL, revert, its scope in words): a setting that outlives the session applying it.

    A bare `SET` ends with the session that ran the migration; `ALTER DATABASE … SET` holds
    for every new session on the statements' database, `ALTER ROLE ALL SET` (when the
    database is not known) for every new session on the server.
    """
    if database:
        target = f"DATABASE {ddl.quote_ident(database)}"
        scope = (f"ALTER DATABASE applies to every new session on {database} (sessions open "
                 "now keep their value until they reconnect; a role's own setting for the "
                 "database wins); for one role only, use ALTER ROLE name IN DATABASE "
                 f"{ddl.quote_ident(database)} SET work_mem, or SET LOCAL it for this "
                 "statement alone.")
    else:
        target = "ROLE ALL"
        scope = ("ALTER ROLE ALL applies to every new session of every role on the server "
                 "(sessions open now keep their value until they reconnect); narrow it with "
                 "ALTER ROLE name [IN DATABASE db] SET work_mem, or SET LOCAL it for this "
                 "statement alone.")
    return f"ALTER {target} SET work_mem = '{value}'", f"ALTER {target} RESET work_mem", scope


def work_mem(statements: Sequence[StatementEvidence], current: str | None,
             database: str | None = None) -> list[Finding]:
    """A statement whose sorts or hashes spill to temp files every call (`database`: the
    statements' database, where the statement evidence does not name it)."""
    cur = _bytes(current)
    out: list[Finding] = []
    for s in statements:
        if s.calls <= 0 or s.temp_blks_written <= 0:
            continue
        spill = s.temp_blks_written * BLOCK / s.calls
        if spill < MIN_SPILL_BYTES:
            continue
        # An in-memory sort needs more than its on-disk runs: twice the spill, in whole MB.
        want = max(_mb(2 * spill), _mb(2 * cur) if cur else 1)
        if want * 1024 * 1024 > MAX_WORK_MEM:
            out.append(NotProposed("work_mem", None, (), "saving_below_threshold",
                                   f"spills {_size(int(spill))} per call: more than a sane "
                                   f"work_mem; rewrite or index the sort instead",
                                   tuple(s.queryid_texts)))
            continue
        value = f"{want}MB"
        stmt, revert, scope = _work_mem_ddl(value, s.datname or database)
        out.append(Recommendation(
            "work_mem", "", (), stmt, revert,
            f"This statement writes {_size(int(spill))} of temp files per call because its "
            f"sort or hash does not fit in work_mem ({current or 'unknown'}); {value} keeps "
            f"it in memory. {scope}",
            statements=(s.query,),
            queryids=tuple(s.queryid_texts),
            confidence=_confidence(spill / MIN_SPILL_BYTES),
            evidence={"temp_blks_written": s.temp_blks_written, "calls": s.calls,
                      "spill_bytes_per_call": int(spill), "work_mem": current,
                      "query": s.query}))
    return out


def _bytes(setting: str | None) -> int:
    """pg_settings' `4096kB` (setting || unit) as bytes."""
    if not setting:
        return 0
    units = {"kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "8kB": 8192, "B": 1}
    digits = "".join(ch for ch in setting if ch.isdigit())
    unit = setting[len(digits):]
    return int(digits or 0) * units.get(unit, 1024)


def rewrites(statements: Sequence[StatementEvidence], accesses: Mapping[str, Access],
             catalog: Catalog) -> list[Finding]:
    """A column an index leads, compared through a cast, arithmetic or a function."""
    total = sum(s.total_ms for s in statements) or 1.0
    out: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for s in statements:
        acc = accesses.get(s.fingerprint)
        if acc is None:
            continue
        for w in acc.wrapped:
            lead = next((i for i in catalog.indexes_on(w.table)
                         if i.valid and i.columns and normalize(i.columns[0])
                         == normalize(ddl.quote_ident(w.column))), None)
            if lead is None or (s.fingerprint, w.table, w.column) in seen:
                continue
            seen.add((s.fingerprint, w.table, w.column))
            share = s.total_ms / total
            col = ddl.quote_ident(w.column)
            how = {"cast": "a cast", "arithmetic": "arithmetic",
                   "function": "a function call"}[w.how]
            out.append(Recommendation(
                "rewrite", w.table, (col,), "", "",
                f"The predicate wraps {col} in {how}, so index {lead.name} on it cannot be "
                f"used; compare the bare column with a transformed value instead "
                f"(for a date: {col} >= $1 AND {col} < $1 + 1).",
                queryids=tuple(s.queryid_texts), statements=(s.query,),
                confidence=_confidence(share / REWRITE_SHARE) if share >= REWRITE_SHARE
                else 0.8 * share / REWRITE_SHARE,
                evidence={"index": lead.qualified_name, "wrapped_by": w.how,
                          "total_ms": round(s.total_ms, 3), "share_of_time": round(share, 4),
                          "query": s.query}))
    return out
