"""The reference application's aiohttp app: the behavior_logs API and its own `/metrics`.

Routes (``path`` query parameter: force ``orm``, ``thin`` or ``analytics`` for one request):

- ``GET  /users/{user_id}/logs?limit=N``       the user's newest N logs (CRUD: thin)
- ``POST /users/{user_id}/logs``               body ``{"logs": [{"action": …, "payload": {…},
  "created_at": ISO-8601 (optional)}]}``, batch insert (CRUD: thin)
- ``GET  /users/{user_id}/activity?days=N``    per-day action counts (aggregate: analytics)
- ``GET  /metrics``, ``GET /healthz``

Bodies are encoded with orjson: the thin path's `RawJson` payloads are embedded verbatim, never
decoded and encoded again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.instrument import OrmMetrics
from pgarchitect.db import first_line
from pgarchitect.demo.refapp.service import (
    OPERATIONS,
    PATH_NAMES,
    DatabaseService,
    LogRow,
    NewLog,
    PathName,
)
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.demo.refapp")

MAX_LIMIT = 10_000
MAX_BATCH = 10_000
MAX_DAYS = 3660


@dataclass(frozen=True)
class RefAppOptions:
    """How the reference app runs."""

    dsn: str
    route_all_orm: bool = False
    pool_size: int = 4


SERVICE = web.AppKey("service", DatabaseService)
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS = web.AppKey("metrics", OrmMetrics)


class BadRequest(Exception):
    """The request is invalid; the message says why."""


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _user_id(request: web.Request) -> int:
    raw = request.match_info["user_id"]
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"user_id must be an integer, got {raw!r}") from None


def _path(request: web.Request) -> PathName | None:
    raw = request.query.get("path")
    if raw is None:
        return None
    if raw not in PATH_NAMES:
        raise BadRequest(f"path must be one of {', '.join(PATH_NAMES)}, got {raw!r}")
    return raw


def _new_logs(user_id: int, body: Any) -> list[NewLog]:
    items = body.get("logs") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise BadRequest(f'body must be {{"logs": [...]}} with 1 to {MAX_BATCH} entries')
    now = datetime.now(UTC)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("action"), str):
            raise BadRequest(f"logs[{i}]: expected an object with a string action")
        payload = item.get("payload", {})
        if not isinstance(payload, dict):
            raise BadRequest(f"logs[{i}].payload: expected an object")
        created = item.get("created_at")
        try:
            at = datetime.fromisoformat(created) if isinstance(created, str) else now
        except ValueError:
            raise BadRequest(f"logs[{i}].created_at: expected ISO 8601") from None
        out.append(NewLog(user_id, item["action"], at if at.tzinfo else at.replace(tzinfo=UTC),
                          payload))
    return out


def logs_body(rows: Iterable[LogRow]) -> bytes:
    """The JSON body of a logs response (timestamps RFC 3339; `RawJson` payloads verbatim)."""
    body = {"logs": [
        {"id": r[0], "user_id": r[1], "action": r[2], "created_at": r[3], "payload": r[4]}
        for r in rows
    ]}
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        # A decoded payload with an integer beyond 64 bits (jsonb holds any numeric); a raw
        # payload never fails, so the standard library can take the decoded rows.
        return json.dumps(body, default=datetime.isoformat).encode()


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def latest_logs(request: web.Request) -> web.Response:
    """GET /users/{user_id}/logs."""
    rows = await request.app[SERVICE].latest_logs(
        _user_id(request), _int_param(request, "limit", 50, 1, MAX_LIMIT), _path(request))
    return _json(logs_body(rows))


async def insert_logs(request: web.Request) -> web.Response:
    """POST /users/{user_id}/logs."""
    user_id, path = _user_id(request), _path(request)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadRequest("body must be JSON") from None
    n = await request.app[SERVICE].insert_logs(_new_logs(user_id, body), path)
    return web.json_response({"inserted": n}, status=201)


async def daily_activity(request: web.Request) -> web.Response:
    """GET /users/{user_id}/activity."""
    days = _int_param(request, "days", 7, 1, MAX_DAYS)
    since = datetime.now(UTC) - timedelta(days=days)
    rows = await request.app[SERVICE].daily_activity(_user_id(request), since, _path(request))
    return _json(orjson.dumps({"activity": rows}))  # dataclasses and dates: orjson natively


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the app's own registry (text format or OpenMetrics by Accept)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[REGISTRY])
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is alive."""
    return web.json_response({"status": "ok"})


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Bad input is a 400 with one line; a database failure a 503, logged once."""
    try:
        return cast(web.StreamResponse, await handler(request))
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.warning(event("refapp.request_failed", path=request.path,
                          error=f"{type(exc).__name__}: {first_line(exc)}"))
        return web.json_response({"error": "database unavailable"}, status=503)


def make_app(options: RefAppOptions, registry: CollectorRegistry | None = None) -> web.Application:
    """The aiohttp application; pools open in cleanup_ctx, inside the running loop."""
    app = web.Application(middlewares=[errors])
    app[REGISTRY] = registry if registry is not None else CollectorRegistry()
    app[METRICS] = OrmMetrics(app[REGISTRY], OPERATIONS)

    async def service_ctx(app: web.Application) -> AsyncIterator[None]:
        service = DatabaseService(options.dsn, app[METRICS], options.route_all_orm,
                                  options.pool_size)
        await service.start()
        app[SERVICE] = service
        log.info(event("refapp.started", datname=service.datname,
                       route_all_orm=options.route_all_orm))
        try:
            yield
        finally:
            await service.close()

    app.cleanup_ctx.append(service_ctx)
    app.router.add_get("/users/{user_id}/logs", latest_logs)
    app.router.add_post("/users/{user_id}/logs", insert_logs)
    app.router.add_get("/users/{user_id}/activity", daily_activity)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
