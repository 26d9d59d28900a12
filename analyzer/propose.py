"""`pgarchitect propose`: a recommendation as a migration file and a pull-request description.

The migration applies as it is with ``psql -f``: one statement (``CREATE INDEX CONCURRENTLY``
cannot run in a transaction block, so there is none), after a header comment with the
recommendation, its evidence in brief and the revert DDL. The DDL is the stored one, built
with quoted identifiers; it is checked to be exactly one statement before it is written, and
every text that goes into a comment is flattened to one line, so no identifier or statement
text can end the comment and smuggle in SQL.

With ``--git REPO`` the two files are committed on a new branch of that repository (never
pushed). pgarchitect applies nothing itself.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pglast

from analyzer.lifecycle import PENDING, StoredRecommendation
from analyzer.page.charts import recommendation_chart
from analyzer.proposal_files import (
    GIT_TIMEOUT,
    current_branch,
    git,
    identity_env,
    refuse_existing,
    restore,
    write_new,
)
from pgarchitect.config import AnalyzerSettings
from pgarchitect.errors import UserError


class ProposeRefused(UserError):
    """The recommendation cannot be proposed as a migration (one line, exit 2)."""


@dataclass(frozen=True)
class Proposal:
    """What `propose` wrote."""

    migration: Path | None
    description: Path
    branch: str | None = None
    commit: str | None = None
    chart: Path | None = None  # the before / after picture the description links


def _flat(text: object) -> str:
    """One line: no newline (or other control character) can end a SQL comment early."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f\u2028\u2029\x85]", " ", str(text)).split())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "x"


def _single_statement(ddl: str, rec_id: int) -> str:
    text = ddl.strip().rstrip(";").strip()
    try:
        stmts = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise ProposeRefused(f"recommendation {rec_id}: its DDL does not parse: {exc}") from None
    if len(stmts) != 1:
        raise ProposeRefused(f"recommendation {rec_id}: its DDL is {len(stmts)} statements, "
                             "not one")
    return text + ";"


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _statements(evidence: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    value = evidence.get("statements")
    if not isinstance(value, list):
        return []
    return [s for s in value if isinstance(s, Mapping)]


def _pick(row: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if row.get(n) is not None:
            return row[n]
    return None


def _brief(stored: StoredRecommendation) -> str:
    r = stored.recommendation
    stmts = _statements(r.evidence)
    calls = sum(int(_pick(s, "calls") or 0) for s in stmts)
    total = sum(float(_pick(s, "total_ms", "total_exec_time_ms", "total_time_ms") or 0.0)
                for s in stmts)
    parts = [f"{len(stmts) or len(r.queryids)} statement(s)"]
    if calls:
        parts.append(f"{calls} calls, {total / 1000.0:,.1f} s in all")
    if r.estimated_cost_before is not None and r.estimated_cost_after is not None:
        parts.append(f"planner cost {r.estimated_cost_before:,.1f} -> "
                     f"{r.estimated_cost_after:,.1f}")
    parts.append(f"validated by {r.validated_by}")
    return ", ".join(parts)


def migration_text(stored: StoredRecommendation) -> str:
    """The migration file: a header comment, then the one statement."""
    r = stored.recommendation
    ddl = _single_statement(r.ddl, stored.id)
    cols = ", ".join(r.columns)
    lines = [
        f"-- pgarchitect recommendation {stored.id}: {r.kind} on {r.table}"
        + (f" ({cols})" if cols else ""),
        f"-- target: {stored.target}; status: {stored.status}; confidence {r.confidence:.2f}",
        f"-- why: {r.rationale}",
        f"-- evidence: {_brief(stored)}",
    ]
    lines = [f"-- {_flat(line[3:])}" for line in lines]
    if "CONCURRENTLY" in ddl.upper():
        lines += ["-- CONCURRENTLY cannot run inside a transaction block: apply this file with",
                  "-- `psql -f FILE` as it is (not with --single-transaction)."]
    if r.revert_ddl:
        lines += ["-- revert:", f"--   {_flat(r.revert_ddl.strip().rstrip(';'))};"]
    return "\n".join([*lines, ddl, ""])


def _fence(*texts: str) -> str:
    longest = max((len(m) for t in texts for m in re.findall(r"`+", t)), default=0)
    return "`" * max(3, longest + 1)


def _code(text: str, lang: str = "") -> list[str]:
    fence = _fence(text)
    return [f"{fence}{lang}", text.rstrip("\n"), fence]


def _cell(text: object) -> str:
    return _flat(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def description_text(stored: StoredRecommendation, settings: AnalyzerSettings) -> str:
    """The pull-request description in Markdown."""
    r = stored.recommendation
    ev = r.evidence
    cols = ", ".join(r.columns)
    title = f"pgarchitect: {r.kind.replace('_', ' ')} on {r.table}" + (f" ({cols})" if cols
                                                                        else "")
    out = [f"# {_flat(title)}", "",
           f"Recommendation **{stored.id}** for target `{_cell(stored.target)}` "
           f"(status {stored.status}, confidence {r.confidence:.2f}, seen by "
           f"{stored.times_seen} audit(s), last {stored.last_seen_at:%Y-%m-%d %H:%M %Z}).", "",
           "## What and why", "", _flat(r.rationale), ""]
    if r.ddl:
        out += [*_code(r.ddl.strip(), "sql"), ""]

    stmts = _statements(ev)
    out += ["## Statements", ""]
    if stmts:
        out += _table(
            ["queryid", "calls", "total ms", "mean ms", "cost before", "cost after", "query"],
            [(_pick(s, "queryid") or "-", _fmt(_pick(s, "calls")),
              _fmt(_pick(s, "total_ms", "total_exec_time_ms", "total_time_ms")),
              _fmt(_pick(s, "mean_ms", "mean_exec_time_ms"), 3),
              _fmt(_pick(s, "cost_before")), _fmt(_pick(s, "cost_after")),
              "`" + str(_pick(s, "query") or "").replace("`", "'") + "`") for s in stmts])
    elif r.statements:
        for q in r.statements:
            out += _code(q, "sql")
    else:
        out.append("queryids: " + ", ".join(r.queryids) if r.queryids else "(none recorded)")
    out.append("")

    out += ["## Plans and costs", ""]
    if r.estimated_cost_before is not None and r.estimated_cost_after is not None:
        improvement = r.estimated_improvement or 0.0
        out.append(f"Planner cost {r.estimated_cost_before:,.2f} -> "
                   f"{r.estimated_cost_after:,.2f} ({improvement:.1%} less).")
    else:
        out.append("No planner costs were recorded.")
    plans = ev.get("plans")
    if isinstance(plans, Mapping):
        for side in ("before", "after"):
            plan = plans.get(side)
            if plan:
                text = plan if isinstance(plan, str) else json.dumps(plan, indent=2)
                out += ["", f"Plan {side}:", "", *_code(text)]
    out.append("")

    out += ["## How it was validated", ""]
    validation = ev.get("validation")
    method = {"hypopg": "a hypothetical index (hypopg) on the target",
              "sandbox": "the index built on the sandbox database, in a rolled-back transaction",
              "transaction": "the index built on the target in a rolled-back transaction",
              "none": "not validated"}.get(r.validated_by, r.validated_by)
    out.append(f"Validated with {method}; EXPLAIN of every affected statement before and after."
               if r.validated_by != "none" else "Not validated by a what-if check.")
    if validation:
        text = validation if isinstance(validation, str) else json.dumps(validation, indent=2)
        out += ["", *_code(text, "json")]
    out.append("")

    out += ["## Expected saving", ""]
    if ev.get("evidence_kind"):  # which evidence carried it, and the time it saves a day
        benefit = ev.get("benefit_ms_per_day")
        out.append(f"Evidence: {ev['evidence_kind']}" + (
            "" if benefit is None else f"; about {float(benefit):,.0f} ms of statement time "
            "saved per day (benefit_ms_per_day)") + ".")
    total = sum(float(_pick(s, "total_ms", "total_exec_time_ms", "total_time_ms") or 0.0)
                for s in stmts)
    if r.estimated_improvement is not None and total:
        out.append(f"About {r.estimated_improvement:.1%} of these statements' planner cost; "
                   f"they took {total / 1000.0:,.1f} s in the audited window, so up to "
                   f"{total * r.estimated_improvement / 1000.0:,.1f} s of it.")
    elif r.estimated_improvement is not None:
        out.append(f"About {r.estimated_improvement:.1%} of these statements' planner cost.")
    else:
        out.append("Not estimated.")
    out.append("")

    rs = settings.regression
    out += ["## How pgarchitect will verify it", "",
            "Nothing is applied by pgarchitect. Once the index is valid on the target, the next "
            "snapshot marks this recommendation `applied` at that moment. Later audits compare "
            "the per-call latency of its statements (by fingerprint, across queryids) before and "
            "after that moment: `verified` when they are at least "
            f"x{rs.min_ratio:g} and {rs.min_delta_ms:g} ms per call faster with Welch's "
            f"p <= {rs.max_p_value:g}, over at least {settings.verification.min_calls} calls "
            "after; otherwise `ineffective`, and a revert is proposed.", ""]

    out += ["## How to roll back", ""]
    out += (_code(r.revert_ddl.strip(), "sql") if r.revert_ddl else ["No revert DDL."]) + [""]

    similar = ev.get("similar_past") or []
    if similar:
        out += ["## Similar past recommendations", "",
                *_table(["id", "similarity", "status"],
                        [(s.get("id"), s.get("similarity"), s.get("status")) for s in similar
                         if isinstance(s, Mapping)]), ""]
    return "\n".join(out)


def propose(stored: StoredRecommendation, out: Path, settings: AnalyzerSettings,
            git_repo: Path | None = None, force: bool = False) -> Proposal:
    """Write the migration and the description (and commit them on a branch of `git_repo`).

    Files are created, never written through a symbolic link, and never over an existing file
    unless `force`. With `git_repo`, any failure (a hook refusing the commit) puts the
    repository back on the branch it was on, with our files neither staged nor left behind.
    """
    if stored.status not in PENDING:
        raise ProposeRefused(
            f"recommendation {stored.id} is {stored.status}: only a proposed or accepted "
            "recommendation becomes a migration")
    r = stored.recommendation
    migration = migration_text(stored) if r.ddl else None
    description = description_text(stored, settings)
    stem = f"pgarchitect_{stored.id}_{r.kind}_{_slug(r.table)}"
    branch = None
    top: Path | None = None
    start: tuple[str, bool] | None = None
    if git_repo is not None:
        top = Path(git(git_repo, "rev-parse", "--show-toplevel")).resolve()
        out = (top / out) if not out.is_absolute() else out
        if not out.resolve().is_relative_to(top):
            raise UserError(f"--out {out} is not inside the repository {top}")
        branch = f"pgarchitect/recommendation-{stored.id}"
        exists = subprocess.run(["git", "-C", str(top), "rev-parse", "--verify", "--quiet",
                                 f"refs/heads/{branch}"], capture_output=True,
                                timeout=GIT_TIMEOUT, check=False)
        if exists.returncode == 0:
            raise UserError(f"branch {branch} already exists in {top}")
    mpath = out / f"{stem}.sql" if migration is not None else None
    dpath = out / f"{stem}.md"
    chart = recommendation_chart(stored.to_json())  # the before / after, linked from the text
    cpath = out / f"{stem}.svg" if chart is not None else None
    if cpath is not None:
        description += f"\n![Before and after: planner cost per statement]({cpath.name})\n"
    outputs = [(mpath, migration), (dpath, description), (cpath, chart)]
    refuse_existing([p for p, _ in outputs if p is not None], force)
    written: list[Path] = []
    commit = None
    try:
        if top is not None and branch is not None:
            start = current_branch(top)
            git(top, "switch", "--create", branch)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --out {out}: {exc.strerror}") from None
        for path, text in outputs:
            if path is not None and text is not None:
                write_new(path, text, force)
                written.append(path)
        if top is not None:
            files = [str(p.resolve()) for p in written]
            git(top, "add", "--", *files)
            title = description.splitlines()[0].lstrip("# ")
            git(top, "commit", "--quiet", "-m", title, "-m",
                f"Recommendation {stored.id}; the description is in {dpath.name}.", "--",
                *files, env=identity_env(top))
            commit = git(top, "rev-parse", "HEAD")
    except BaseException:
        if top is not None and start is not None and branch is not None and commit is None:
            restore(top, start, branch, written)
        raise
    return Proposal(mpath, dpath, branch, commit, cpath)
