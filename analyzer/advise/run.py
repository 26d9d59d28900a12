"""`pgarchitect advise`: the index each statement needs, from the audit's own engine.

The statements go through the same candidate generation, validation and thresholds as an
audit's (analyzer/recommend/engine.py), on a read-only session of the target: validated with
hypopg where the database has it (or the configured sandbox), with a rolled-back transaction
only when the operator passes `--validation transaction`; never written to. A statement's
own constants (or the parameters a log shows it ran with) are its representative parameters:
it is planned with them. There is no measured time to weigh, so `analyzer.min_benefit` does
not apply: an index is advised when its plans pass the audit's other tests, and the workload
selection runs over the statements given together. Output per statement, in input order: the
index (its DDL and the planned cost before and after) or none, with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from analyzer.advise.inputs import BadInput, FromLog, Statement, from_arguments, from_log, split
from analyzer.advise.logs import LogFormatError, read_log
from analyzer.recommend.engine import recommend
from analyzer.recommend.model import RecommendResult, StatementEvidence
from analyzer.snapshots.catalog import read_catalog
from analyzer.snapshots.source import connect_target
from pgarchitect.config import AnalyzerSettings, Settings
from pgarchitect.db import first_line
from pgarchitect.errors import ConfigError, UserError

NO_CANDIDATE = ("no index candidate: it filters, joins or sorts on nothing an index "
                "could serve")


@dataclass(frozen=True)
class Advice:
    """The answer for one statement: an index, or none and why."""

    statement: str
    index: dict[str, Any] | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {"statement": self.statement, "index": self.index, "reason": self.reason}


@dataclass(frozen=True)
class AdviceResult:
    """Every statement's advice and how the indexes were validated."""

    advice: tuple[Advice, ...]
    validated_by: str  # hypopg | sandbox | transaction | none

    def to_json(self) -> dict[str, Any]:
        """Exactly `{"statements": [...]}` (docs/analyzer.md, advise)."""
        return {"statements": [a.to_json() for a in self.advice]}

    @property
    def advised(self) -> int:
        return sum(1 for a in self.advice if a.index is not None)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)


def _answer(n: int, s: Statement, result: RecommendResult, mode: str) -> Advice:
    qid = str(n)
    best: tuple[float, dict[str, Any]] | None = None
    for rec in result.proposed:
        if rec.kind != "create_index" or qid not in rec.queryids:
            continue
        entry: dict[str, Any] = next((e for e in rec.evidence.get("statements", ())
                      if str(e.get("queryid")) == qid), {})
        before, after = entry.get("cost_before"), entry.get("cost_after")
        saved = (before or 0.0) - (after or 0.0)
        index = {"table": rec.table, "columns": list(rec.columns), "ddl": rec.ddl,
                 "cost_before": _round(before), "cost_after": _round(after)}
        if best is None or saved > best[0]:
            best = (saved, index)
    if best is not None:
        return Advice(s.text, best[1], None)
    reasons = []
    for skip in result.not_proposed:
        if skip.kind != "create_index" or qid not in skip.queryids:
            continue
        on = (f" on {skip.table}" if skip.table else "") + (
            f" ({', '.join(skip.columns)})" if skip.columns else "")
        text = f"{skip.reason}{on}" + (f": {skip.detail}" if skip.detail else "")
        if skip.reason == "not_validated" and result.method == "none" and mode == "auto":
            text = (f"not_validated{on}: hypopg is not installed in the target database and "
                    "no sandbox is configured (--validation transaction plans it in a "
                    "rolled-back transaction on the target)")
        reasons.append(text)
    return Advice(s.text, None, "; ".join(dict.fromkeys(reasons)) or NO_CANDIDATE)


def advise(conn: psycopg.Connection[Any], statements: Sequence[Statement],
           settings: AnalyzerSettings,
           logged: Mapping[str, tuple[tuple[str | None, ...], ...]] | None = None
           ) -> AdviceResult:
    """The advice for each statement, on an open (read-only) session of the target;
    `logged`: the bind parameters a server log showed them with (`parameters.logged_values`)."""
    evidence = [StatementEvidence(0, (n,), f"advise-{n}", s.text, 1, 1.0, 1.0, 1)
                for n, s in enumerate(statements, 1) if s.query]
    result = recommend(conn, evidence, read_catalog(conn), (), replace(settings, min_benefit=0.0),
                       conn.info.server_version, table_writes={}, logged_parameters=logged)
    mode = settings.validation.mode
    advice = [_answer(n, s, result, mode) if s.query else Advice(
        s.text, None, "not a query: only SELECT, INSERT, UPDATE and DELETE are advised on")
        for n, s in enumerate(statements, 1)]
    return AdviceResult(tuple(advice), result.method)


def read_statements(args: argparse.Namespace) -> FromLog:
    """The statements the command line names (arguments, --file, --log or stdin), with the
    parameters a log shows them with."""
    given = [x for x in (args.statements, args.file, args.log) if x]
    if len(given) > 1:
        raise BadInput("advise: give statements, --file or --log, not several of them")
    if args.statements:
        return FromLog(tuple(from_arguments(args.statements)), {})
    if args.log:
        text = _read(args.log, "log")
        try:
            return from_log(read_log(text))
        except LogFormatError as exc:
            raise BadInput(f"advise: {args.log} is not a PostgreSQL log: {exc}") from None
    if args.file and args.file != "-":
        return FromLog(tuple(split(_read(args.file, "file"), args.file)), {})
    if sys.stdin.isatty() and not args.file:
        raise BadInput("advise: give statements, --file F, --log F, or SQL on stdin")
    return FromLog(tuple(split(sys.stdin.read(), "stdin")), {})


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"advise: cannot read {what} {path}: {exc.strerror}") from None


def render(result: AdviceResult) -> str:
    """The human-readable answer."""
    how = result.validated_by if result.validated_by != "none" else "nothing (not validated)"
    lines = [f"{len(result.advice)} statement(s), {result.advised} index(es) advised; "
             f"validated with {how}", ""]
    for n, a in enumerate(result.advice, 1):
        lines.append(f"[{n}] {' '.join(a.statement.split())}")
        if a.index is not None:
            lines.append(f"    index: {a.index['ddl']}")
            lines.append(f"    planned cost {a.index['cost_before']:,.2f} -> "
                         f"{a.index['cost_after']:,.2f}")
        else:
            lines.append(f"    no index: {a.reason}")
    return "\n".join(lines) + "\n"


def cmd_advise(args: argparse.Namespace, settings: Settings) -> int:
    """`pgarchitect advise`: exit 0, 1 with --fail-on-advice when an index is advised."""
    if not settings.targets:
        raise ConfigError("targets", "a target is required (give --dsn DSN)")
    if len(settings.targets) > 1:
        raise ConfigError("targets", "several targets are configured; give --dsn DSN")
    given = read_statements(args)
    if not given.statements:
        raise BadInput("advise: no statement to advise on")
    target = settings.targets[0]
    try:
        with connect_target(target.dsn, f"target {target.name}", settings.analyzer) as conn:
            result = advise(conn, given.statements, settings.analyzer, given.parameters)
    except psycopg.Error as exc:
        raise UserError(f"advise: {first_line(exc)}") from None
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        print(f"pgarchitect: validated with {result.validated_by}", file=sys.stderr)
    else:
        print(render(result), end="")
    return 1 if args.fail_on_advice and result.advised else 0
