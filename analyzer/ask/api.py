"""The admin API's ask routes (registered in analyzer/api/routes.py; docs/api.md).

POST /admin/database/ask {"question", "target"?}: the answer (docs/ask.md).
GET /admin/database/questions?limit=: the logged questions, newest first.
POST /admin/database/questions/{id}/promote: an answered question made an example.

The answer runs the synchronous engine in a worker thread on its own store session.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from analyzer.api.hardening import read_json
from analyzer.ask.answer import MAX_QUESTION, ask, promote, questions
from analyzer.store.connection import connect_store
from pgarchitect.config import Settings
from pgarchitect.errors import ConnectError, UserError


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _settings(request: web.Request) -> Settings:
    from analyzer.api.routes import STATE

    return request.app[STATE].service.settings


def _answer(settings: Settings, question: str, target: str | None) -> dict[str, Any]:
    with connect_store(settings.require_store(),
                       settings.analyzer.connect_timeout) as conn:
        return ask(conn, settings, question, target=target, asked_by="api")


async def post_ask(request: web.Request) -> web.Response:
    """POST /admin/database/ask."""
    body = await read_json(request)  # BadBody: 400 / 408 / 413 (analyzer/api/hardening.py)
    if body is None:
        return _error(422, "a JSON object body is required")
    if not isinstance(body, dict):
        return _error(422, "the body must be a JSON object")
    extra = sorted(set(body) - {"question", "target"})
    if extra:
        return _error(422, f"unknown field {extra[0]!r} (expected: question, target)")
    question, target = body.get("question"), body.get("target")
    if not isinstance(question, str) or not question.strip() or len(question) > MAX_QUESTION \
            or "\x00" in question:
        return _error(422, f"question must be a non-empty string of at most {MAX_QUESTION}"
                           " characters")
    if target is not None and (not isinstance(target, str) or "\x00" in target):
        return _error(422, "target must be a string")
    try:
        question.encode()
    except UnicodeEncodeError:
        return _error(422, "question must be valid Unicode text")
    settings = _settings(request)
    if target is not None and all(t.name != target for t in settings.targets):
        return _error(404, f"no target named {target!r}")
    try:
        out = await asyncio.to_thread(_answer, settings, question, target)
    except ConnectError:
        return _error(503, "the store is unavailable")
    except UserError as exc:
        return _error(422, str(exc))
    return web.json_response(out, dumps=_dumps)


def _list(settings: Settings, limit: int) -> list[dict[str, Any]]:
    with connect_store(settings.require_store(),
                       settings.analyzer.connect_timeout) as conn:
        return questions(conn, limit)


async def list_questions(request: web.Request) -> web.Response:
    """GET /admin/database/questions."""
    text = request.query.get("limit", "100")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1000:
        return _error(422, "limit must be an integer from 1 to 1000")
    rows = await asyncio.to_thread(_list, _settings(request), int(text))
    return web.json_response(rows, dumps=_dumps)


def _promote(settings: Settings, question_id: int) -> int | None:
    with connect_store(settings.require_store(),
                       settings.analyzer.connect_timeout) as conn:
        return promote(conn, question_id)


async def promote_question(request: web.Request) -> web.Response:
    """POST /admin/database/questions/{id}/promote."""
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return _error(404, f"no question {text!r}")
    try:
        kid = await asyncio.to_thread(_promote, _settings(request), int(text))
    except UserError as exc:
        return _error(409, str(exc))
    if kid is None:
        return _error(404, f"no question {text}")
    return web.json_response({"question_id": text, "example_id": str(kid)})


def add_routes(app: web.Application) -> None:
    """Register the ask routes."""
    app.router.add_post("/admin/database/ask", post_ask)
    app.router.add_get("/admin/database/questions", list_questions)
    app.router.add_post("/admin/database/questions/{id}/promote", promote_question)
