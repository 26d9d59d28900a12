"""`pgarchitect ask QUESTION --store DSN [--target NAME] [--json] [--learn SQL]`, and the
printing the demo shares (`ask_and_print`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from analyzer.ask.answer import ask, learn, note
from analyzer.store.connection import connect_store
from pgarchitect.config import Settings, load_settings
from pgarchitect.dsn import Dsn
from pgarchitect.table import render_table

# What `make demo` asks at the end, about the audit it just ran.
DEMO_QUESTIONS = ("why did things get slower, what caused the regressions?",
                  "which recommendations are still waiting for a decision?")
_CELL = 60  # characters of a cell shown in the terminal


def render_answer(out: dict[str, Any]) -> str:
    """An answer for the terminal: the SQL, the rows, where it came from; or why not."""
    if not out["answered"]:
        if out["refused"]:
            return f"refused: {out['refused']}\n"
        known = "".join(f"  - {e['question']} (similarity {e['similarity']:.2f})\n"
                        for e in out["examples"])
        return f"I don't know how to answer that. Questions I do know:\n{known}"

    def cell(v: object) -> str:
        text = "" if v is None else " ".join(str(v).split())
        return text if len(text) <= _CELL else text[:_CELL - 1] + "…"

    table = render_table(out["columns"], [[cell(v) for v in r] for r in out["rows"]])
    more = " (truncated)" if out["truncated"] else ""
    used = ", ".join(f"{e['question']!r} ({e['similarity']:.2f})" for e in out["examples"])
    return (f"{out['sql']}\n\n{table}\n{out['row_count']} rows{more} in {out['seconds']:.2f} s;"
            f" from: {used}\n")


def ask_and_print(store: Dsn, questions: Sequence[str] = DEMO_QUESTIONS, *,
                  settings: Settings | None = None, out: TextIO | None = None,
                  asked_by: str = "demo") -> list[dict[str, Any]]:
    """Ask each question over the store, print question and answer; the answers."""
    settings = settings or load_settings(None, {"store": {"dsn": store.value}})
    stream = out or sys.stdout
    answers = []
    with connect_store(store, settings.analyzer.connect_timeout) as conn:
        for q in questions:
            answer = ask(conn, settings, q, asked_by=asked_by)
            print(f"? {q}\n{render_answer(answer)}", file=stream, flush=True)
            answers.append(answer)
    return answers


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    """Answer a question (or, with --learn SQL, record it as an example)."""
    with connect_store(settings.require_store(),
                       settings.analyzer.connect_timeout) as conn:
        if args.note:
            kid = note(conn, settings, args.question, target=args.target_name)
            print(f"noted {kid}: {args.question}")
            return 0
        if args.learn:
            kid = learn(conn, settings, args.question, args.learn, target=args.target_name)
            print(f"learned example {kid}: {args.question}")
            return 0
        out = ask(conn, settings, args.question, target=args.target_name, asked_by="cli")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    text = render_answer(out)
    print(text, end="")
    return 0 if out["answered"] else 1
