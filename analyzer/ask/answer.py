"""Answering a question: retrieve, generate, guard, run, log.

`ask(conn, settings, question, ...)` is the one entry point (the CLI, the API and the demo
call it). It returns the answer as a JSON-ready dict (docs/ask.md, "The answer"); every
question is logged in `pgarchitect.ask_question`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql as pgsql

from analyzer.ask import guard, knowledge, slots
from analyzer.ask.knowledge import TextEmbedder
from analyzer.store import ask as store
from analyzer.store.ask import Asked, Hit
from analyzer.store.connection import Conn
from pgarchitect.config import Settings
from pgarchitect.db import connect_sync, first_line
from pgarchitect.errors import UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.ask")

MAX_QUESTION = 2000
Database = Literal["store", "target"]  # where a statement runs
Outcome = Literal["answered", "unknown", "refused", "failed"]  # pgarchitect.ask_question
SUGGESTIONS = 3


@dataclass(frozen=True)
class Draft:
    """What a generator proposes: SQL (or None: it does not know), where it runs, why."""

    sql: str | None
    database: Database
    examples: tuple[tuple[str, float], ...]
    refused: str | None = None


@dataclass(frozen=True)
class Context:
    """What the generators get: the question, its vector's neighbours, the settings."""

    question: str
    target: str | None
    settings: Settings
    examples: tuple[Hit, ...]  # nearest example phrasings, nearest first
    docs: tuple[Hit, ...]  # nearest docs and schema rows
    slots: slots.Slots
    contrast: float  # similarity of the nearest question about an application's own data


Runner = Callable[[str, Database], str | None]  # runs a draft; None, or why it did not
Generator = Callable[[Context, Runner], Draft]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, uuid.UUID | bytes | memoryview):
        return value.hex() if isinstance(value, bytes | memoryview) else str(value)
    return str(value)


def example_id(hit: Hit) -> str:
    return hit.key.partition("#")[0] if hit.source == "curated" else f"{hit.scope}:{hit.key}"


def suggestions(hits: Sequence[Hit]) -> tuple[tuple[str, float], ...]:
    seen: dict[str, tuple[str, float]] = {}
    for h in hits:
        seen.setdefault(example_id(h), (h.question or "", round(h.similarity, 4)))
    return tuple(list(seen.values())[:SUGGESTIONS])


def render(example: knowledge.Example, found: slots.Slots, target: str | None,
           now: dt.datetime) -> str:
    """The example's SQL with every slot a quoted literal (the question's value, else the
    example's default)."""
    defaults = example.slots
    since = found.since
    if since is None:
        back = str(defaults.get("since", "all"))
        since = None if back == "all" else now - _duration(back)
    values: dict[str, Any] = {
        "target": found.target or target, "table": found.table,
        "since": since, "until": found.until or (now + dt.timedelta(minutes=1)),
        "status": found.status or defaults.get("status"),
        "audit_status": found.audit_status or defaults.get("audit_status"),
        "n": found.number if found.number is not None else defaults.get("n"),
    }
    literals = {k: _literal(v) for k, v in values.items()}
    literals["since"] = "'-infinity'::timestamptz" if since is None else literals["since"]
    return example.sql.format(**literals)


def _duration(text: str) -> dt.timedelta:
    units = {"h": 3600, "d": 86400, "w": 604800}
    return dt.timedelta(seconds=float(text[:-1]) * units[text[-1]])


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(max(0, min(value, 100_000)))
    return pgsql.Literal(value).as_string(None)


def retrieval(ctx: Context, _run: Runner) -> Draft:
    """The offline generator: the nearest example above the threshold, slots filled."""
    minimum = ctx.settings.analyzer.ask.min_similarity
    nearest = suggestions(ctx.examples)
    now = dt.datetime.now(ZoneInfo(ctx.settings.analyzer.timezone))
    for hit in ctx.examples:
        if hit.similarity < minimum or hit.similarity <= ctx.contrast:
            break  # too far, or more like a question about an application's own data
        used = ((hit.question or "", round(hit.similarity, 4)),)
        if hit.source == "operator":
            return Draft(hit.sql, "store" if hit.scope == "store" else "target", used)
        ex = knowledge.example(example_id(hit))
        if ex is None:
            continue
        if "table" in ex.requires and ctx.slots.table is None:
            continue  # this example needs a table the question does not name
        return Draft(render(ex, ctx.slots, ctx.target, now), "store", used)
    return Draft(None, "store", nearest)


def _hits(conn: Conn, embedder: TextEmbedder, question: str,
          target: str | None) -> tuple[tuple[Hit, ...], tuple[Hit, ...], float]:
    vector = embedder.embed_texts([question])[0]
    scopes = ["store"] + ([target] if target else [])
    examples = store.nearest(conn, vector, ["example"], scopes, 12)
    docs = store.nearest(conn, vector, ["doc", "schema"], scopes, 12)
    contrast = store.nearest(conn, vector, ["contrast"], ["store"], 1)
    return (tuple(examples), tuple(h for h in docs if not h.key.startswith("#")),
            contrast[0].similarity if contrast else -1.0)


def _without_range(question: str, found: slots.Slots) -> str:
    """The question without the words of its time range: the range fills a slot, and
    its words (numbers, weekdays) only blur which example the question is like."""
    if not found.range_text:
        return question
    lowered = " ".join(question.lower().split())
    return lowered.replace(found.range_text, " ").strip() or question


def _target_connection(settings: Settings, target: str) -> psycopg.Connection[Any]:
    t = settings.target(target)
    conn = connect_sync(t.dsn, f"target {target}", application_name="pgarchitect-analyzer",
                        connect_timeout=settings.analyzer.connect_timeout)
    conn.autocommit = True
    return conn


def ask(conn: Conn, settings: Settings, question: str, *, target: str | None = None,
        asked_by: str = "cli", embedder: TextEmbedder | None = None,
        generator: str | None = None) -> dict[str, Any]:
    """Answer one question over the store (or `target`), guarded; log it; the answer JSON."""
    from analyzer.ask import openai

    started = time.perf_counter()
    question = " ".join(question.split())
    if not question:
        raise UserError("ask: the question is empty")
    if len(question) > MAX_QUESTION or "\x00" in question:
        raise UserError(f"ask: the question must be at most {MAX_QUESTION} characters of text")
    if target is not None:
        settings.target(target)  # a ConfigError naming the known ones
    embedder = embedder or knowledge.text_embedder()
    knowledge.sync(conn, embedder)
    name = generator or settings.analyzer.ask.generator
    targets, tables = store.names(conn)
    now = dt.datetime.now(ZoneInfo(settings.analyzer.timezone))
    found = slots.extract(question, now, targets=targets, tables=tables)
    examples, docs, near_contrast = _hits(conn, embedder, _without_range(question, found),
                                          target)
    ctx = Context(question, target, settings, examples, docs, found, near_contrast)
    generate: Generator = retrieval if name == "retrieval" else openai.generate
    limits = guard.Limits(settings.analyzer.ask.max_rows, settings.analyzer.ask.max_cost,
                          settings.analyzer.ask.statement_timeout)
    result: guard.Result | None = None
    target_conn: psycopg.Connection[Any] | None = None

    def check_and_run(sql: str, database: Database) -> str | None:
        """Run a draft; None when it ran, else the one-line reason (for a repair round)."""
        nonlocal result, target_conn
        try:
            if database == "target":
                if target is None:
                    return "it queries a target's own data, and no target was given (--target)"
                guard.check(sql)
                if target_conn is None:
                    target_conn = _target_connection(settings, target)
                result = guard.run(target_conn, sql, limits, role=None)
            else:
                result = guard.run(conn, sql, limits)
        except guard.Refused as exc:
            return str(exc)
        return None

    reason: str | None = None
    try:
        if target is not None and name == "openai":
            target_conn = _target_connection(settings, target)
            knowledge.describe_target(conn, target, target_conn, embedder)
            ctx = Context(question, target, settings, examples,
                          _hits(conn, embedder, question, target)[1], found, near_contrast)
        draft = generate(ctx, check_and_run)
        if draft.sql is not None and result is None and draft.refused is None:
            reason = check_and_run(draft.sql, draft.database)
        else:
            reason = draft.refused
    except UserError as exc:  # the model endpoint or the target did not answer
        failed: dict[str, Any] = {
            "question": question, "generator": name, "sql": None, "row_count": 0,
            "truncated": False, "examples": [], "refused": str(exc),
            "seconds": round(time.perf_counter() - started, 4)}
        _log(conn, failed, target, "store", "failed", asked_by)
        raise
    finally:
        if target_conn is not None:
            target_conn.close()
    seconds = round(time.perf_counter() - started, 4)
    answered = result is not None and reason is None
    rows = [[_jsonable(v) for v in r] for r in result.rows] if answered and result else []
    out = {
        "question": question, "generator": name, "sql": draft.sql or None,
        "columns": list(result.columns) if answered and result else [],
        "rows": rows, "row_count": len(rows),
        "truncated": bool(result.truncated) if answered and result else False,
        "examples": [{"question": q, "similarity": s} for q, s in draft.examples],
        "refused": reason if draft.sql or draft.refused else None,
        "answered": answered, "seconds": seconds,
    }
    outcome: Outcome = "answered" if answered else "refused" if out["refused"] else "unknown"
    _log(conn, out, target, draft.database, outcome, asked_by)
    log.info(event("ask.answered", generator=name, outcome=outcome, seconds=seconds,
                   rows=len(rows)))
    return out


def _log(conn: Conn, out: dict[str, Any], target: str | None, database: Database,
         outcome: Outcome, asked_by: str) -> None:
    try:
        store.log_question(conn, Asked(
            asked_by, out["question"], target, database, out["generator"], out["sql"], outcome,
            out["refused"], out["row_count"], out["truncated"], out["examples"],
            out["seconds"]))
    except psycopg.Error as exc:
        log.warning(event("ask.log_failed", error=first_line(exc)))


def learn(conn: Conn, settings: Settings, question: str, sql: str, *,
          target: str | None = None, embedder: TextEmbedder | None = None) -> int:
    """Record an operator's question->SQL example (checked by the guard first)."""
    question = " ".join(question.split())
    if not question or len(question) > MAX_QUESTION:
        raise UserError(f"ask --learn: the question must be 1 to {MAX_QUESTION} characters")
    try:
        guard.check(sql)
    except guard.Refused as exc:
        raise UserError(f"ask --learn: the SQL is refused: {exc}") from None
    if target is not None:
        settings.target(target)
    embedder = embedder or knowledge.text_embedder()
    knowledge.sync(conn, embedder)
    return knowledge.learn(conn, question, guard.check(sql), target or "store", embedder)


def note(conn: Conn, settings: Settings, text: str, *, target: str | None = None,
         embedder: TextEmbedder | None = None) -> int:
    """Record an operator's documentation note (the openai generator's context)."""
    text = " ".join(text.split())
    if not text or len(text) > MAX_QUESTION:
        raise UserError(f"ask --note: the note must be 1 to {MAX_QUESTION} characters")
    if target is not None:
        settings.target(target)
    embedder = embedder or knowledge.text_embedder()
    knowledge.sync(conn, embedder)
    return knowledge.note(conn, text, target or "store", embedder)


def promote(conn: Conn, question_id: int, embedder: TextEmbedder | None = None) -> int | None:
    """A logged, answered question made an example; its knowledge id (None: no such one)."""
    asked = store.logged_question(conn, question_id)
    if asked is None:
        return None
    if asked.outcome != "answered" or asked.sql is None:
        raise UserError(f"question {question_id} was not answered; only answers are promoted")
    embedder = embedder or knowledge.text_embedder()
    knowledge.sync(conn, embedder)
    kid = knowledge.learn(conn, asked.question, asked.sql,
                          asked.target if asked.database == "target" and asked.target
                          else "store", embedder)
    store.mark_promoted(conn, question_id, kid)
    return kid


def questions(conn: Conn, limit: int = 100) -> list[dict[str, Any]]:
    """The logged questions, newest first."""
    return [{k: (str(v) if k in ("id", "promoted_id") and v is not None else _jsonable(v))
             for k, v in row._asdict().items()} for row in store.logged(conn, limit)]
