"""`pgarchitect ask QUESTION --store DSN [--target NAME] [--json] [--learn SQL]`."""

from __future__ import annotations

import argparse
import json
import sys

from analyzer import memory
from analyzer.ask.answer import ask, learn
from pgarchitect.config import Settings
from pgarchitect.table import render_table


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    """Answer a question (or, with --learn SQL, record it as an example)."""
    with memory.connect_store(settings.require_store(),
                              settings.analyzer.connect_timeout) as conn:
        if args.learn:
            kid = learn(conn, settings, args.question, args.learn, target=args.target_name)
            print(f"learned example {kid}: {args.question}")
            return 0
        out = ask(conn, settings, args.question, target=args.target_name, asked_by="cli")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if not out["answered"]:
        if out["refused"]:
            print(f"refused: {out['refused']}", file=sys.stderr)
            return 1
        print("I don't know how to answer that. Questions I do know:")
        for e in out["examples"]:
            print(f"  - {e['question']} (similarity {e['similarity']:.2f})")
        return 1
    print(out["sql"])
    print()
    print(render_table(out["columns"], [[("" if v is None else str(v)) for v in r]
                                        for r in out["rows"]]))
    more = " (truncated)" if out["truncated"] else ""
    print(f"{out['row_count']} rows{more} in {out['seconds']:.2f} s; from: "
          + ", ".join(f"{e['question']!r} ({e['similarity']:.2f})" for e in out["examples"]))
    return 0
