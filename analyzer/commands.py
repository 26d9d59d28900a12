"""The `pgarchitect snapshot` and `pgarchitect audit` commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import psycopg

from analyzer.analysis.windows import SnapshotRef, WindowRequest, parse_ref
from analyzer.audit import run_audit, snapshot_and_observe
from analyzer.lifecycle import StoredRecommendation
from analyzer.report import render
from analyzer.snapshots.source import connect_target
from analyzer.store import recommendations
from analyzer.store.connection import connect_store
from analyzer.vocabulary import Actor
from pgarchitect.config import Settings, Target
from pgarchitect.db import first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import ConfigError, UserError
from pgarchitect.table import render_table


class SnapshotFailed(UserError):
    """A snapshot could not be read or written (nothing was stored)."""

    exit_code = 1


def _target_and_store(settings: Settings) -> tuple[Target, Dsn]:
    if not settings.targets:
        raise ConfigError("targets", "a target is required (give --target DSN)")
    if len(settings.targets) > 1:
        raise ConfigError("targets", "several targets are configured; give --target NAME=DSN")
    return settings.targets[0], settings.require_store()


def _span(text: str | None) -> tuple[SnapshotRef | None, SnapshotRef | None]:
    """FROM..TO (either side may be empty) of snapshot ids or ISO times; ids also as FROM:TO."""
    if not text:
        return None, None
    if ".." in text:
        a, _, b = text.partition("..")
    elif text.replace(":", "").isdigit():
        a, _, b = text.partition(":")
    else:
        a, b = text, ""
    return (parse_ref(a) if a else None), (parse_ref(b) if b else None)


def window_request(args: argparse.Namespace) -> WindowRequest | None:
    """--baseline / --current flags as a WindowRequest (None when neither is given)."""
    baseline = getattr(args, "baseline", None)
    current = getattr(args, "current", None)
    if not baseline and not current:
        return None
    bf, bt = _span(baseline)
    cf, ct = _span(current)
    return WindowRequest(bf, bt, cf, ct)


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    """Take one snapshot of the target into the store."""
    target, store_dsn = _target_and_store(settings)
    a = settings.analyzer
    try:
        with connect_target(target.dsn, f"target {target.name}", a) as tconn, \
                connect_store(store_dsn, a.connect_timeout) as store:
            observed = snapshot_and_observe(tconn, store, target.name, a)
    except psycopg.Error as exc:
        raise SnapshotFailed(f"snapshot of {target.name} failed: {first_line(exc)}") from None
    result = observed.snapshot
    if result.skipped:
        print(f"snapshot of {target.name} not stored: snapshot {result.snapshot.id}, read "
              "later, was stored while this one was read")
        return 0
    stored = (f"all stored: checkpoint ({result.checkpoint})" if result.checkpoint
              else f"{result.stored} changed stored")
    print(f"snapshot {result.snapshot.id} of {target.name}: {result.statements} statements "
          f"({stored}; {result.new_texts} new texts, {result.own_skipped} of pgarchitect's own "
          f"left out, {result.pruned} expired partitions dropped) "
          f"in {result.duration_seconds:.2f}s")
    for change in observed.changes:
        print(f"recommendation {change.recommendation_id} is {change.to_status} "
              "(seen in this snapshot's catalog)")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Run one audit now and print the report (text, or JSON as in docs/report.md)."""
    target, store_dsn = _target_and_store(settings)
    result = run_audit(settings.analyzer, target, store_dsn, window_request(args))
    if getattr(args, "json", False):
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result))
    if getattr(args, "html", None):
        from analyzer.page import write_audit_page

        path = write_audit_page(store_dsn, result.audit_id, Path(args.html),
                                settings.analyzer.connect_timeout)
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _rec_id(text: str) -> int:
    if not text.isdigit():
        raise UserError(f"recommendation id must be a number, not {text!r}")
    return int(text)


def _outcome(rec: StoredRecommendation) -> str:
    m = rec.measured_change or {}
    ratio = m.get("ratio")
    if ratio:
        return f"{1 / ratio:.1f}x faster" if ratio < 1 else f"x{ratio:.2f}"
    if m.get("note"):
        return str(m.get("status", "pending"))
    return "-"


def cmd_recommendations(args: argparse.Namespace, settings: Settings) -> int:
    """List recommendations (table or JSON), or record a person's decision (set-status)."""

    with connect_store(settings.require_store(), settings.analyzer.connect_timeout) as store:
        if getattr(args, "action", None) == "set-status":
            rec_id = _rec_id(args.id)
            change = recommendations.set_status(store, rec_id, args.status, Actor.CLI, args.note)
            print(f"recommendation {rec_id}: {change.from_status} -> {change.to_status}")
            return 0
        recs = recommendations.list_recommendations(store, getattr(args, "target_name", None),
                                              getattr(args, "status", None))
        if getattr(args, "json", False):
            full = [r.to_json() for r in recommendations.with_history(store, recs)]
            print(json.dumps({"recommendations": full}, indent=2))
            return 0
    if not recs:
        print("no recommendations")
        return 0
    print(render_table(
        ["id", "target", "status", "kind", "table", "columns", "confidence", "seen",
         "outcome", "last seen"],
        [(r.id, r.target, r.status, r.recommendation.kind, r.recommendation.table,
          ", ".join(r.recommendation.columns), round(r.recommendation.confidence, 2),
          r.times_seen, _outcome(r), f"{r.last_seen_at:%Y-%m-%d %H:%M}") for r in recs],
    ))
    return 0


def cmd_propose(args: argparse.Namespace, settings: Settings) -> int:
    """Write the migration and pull-request description of one recommendation."""
    from analyzer.propose import propose

    rec_id = _rec_id(args.id)
    with connect_store(settings.require_store(), settings.analyzer.connect_timeout) as store:
        stored = recommendations.get(store, rec_id)
    git = Path(args.git) if getattr(args, "git", None) else None
    result = propose(stored, Path(args.out), settings.analyzer, git,
                     force=bool(getattr(args, "force", False)))
    for path in (result.migration, result.description, result.chart):
        if path is not None:
            print(f"wrote {path}")
    if result.commit:
        print(f"committed {result.commit[:12]} on branch {result.branch}")
    return 0
