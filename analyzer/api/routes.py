"""The analyzer service's HTTP side: admin API handlers, /metrics, /healthz, /readyz.

Handlers are thin: parse and check the request, call one store query (analyzer/api/queries.py)
or the job engine (analyzer/jobs.py), answer JSON. Every error is JSON: 400 body not JSON,
401 token, 404 unknown, 405 method, 409 conflict, 422 not as documented, 503 store down.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import procrastinate
import psycopg
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool

from analyzer import jobs
from analyzer.api import page, queries
from analyzer.api.hardening import MAX_BODY, BadBody, header_bytes, read_json
from analyzer.api.openapi import AUDIT_STATUSES, MAX_LIMIT, RECOMMENDATION_STATUSES, document
from analyzer.api.status import PERSON_STATUSES
from analyzer.ask import api as ask_api
from pgarchitect.db import first_line
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.api")

STORE_TIMEOUT = 3.0  # seconds to wait for a store session before answering 503
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(eq=False)  # registered as a collector: hashed by identity
class StoreView:
    """The store-derived part of /metrics, refreshed before each exposition."""

    targets: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=lambda: {
        "checks": [], "recommendations": [], "last_success": 0.0})
    up: bool = False
    loaded: bool = False

    def collect(self) -> Iterator[Metric]:
        """Gauges from the last store read (never touches the database itself)."""
        regs = GaugeMetricFamily("pgarchitect_regressions",
                                 "Regressions found by the latest check of a target.",
                                 labels=["target"])
        clus = GaugeMetricFamily("pgarchitect_regression_clusters",
                                 "Regression clusters found by the latest check of a target.",
                                 labels=["target"])
        checks = {t: (r, c) for t, r, c in self.data["checks"]}
        for t in sorted(set(self.targets) | set(checks)):
            r, c = checks.get(t, (0, 0))
            regs.add_metric([t], r)
            clus.add_metric([t], c)
        recs = GaugeMetricFamily("pgarchitect_recommendations",
                                 "Recommendations in the store by target, kind and status.",
                                 labels=["target", "kind", "status"])
        seen = set()
        for t, k, s, n in self.data["recommendations"]:
            recs.add_metric([t, k, s], n)
            seen.add(t)
        for t in self.targets:  # a target without any yet still shows (as 0 proposed)
            if t not in seen:
                recs.add_metric([t, "create_index", "proposed"], 0)
        last = GaugeMetricFamily("pgarchitect_audit_last_success_timestamp_seconds",
                                 "Finish time of the last successful audit (0: never).")
        last.add_metric([], self.data["last_success"])
        up = GaugeMetricFamily("pgarchitect_store_up", "Whether the store answered (1/0).")
        up.add_metric([], 1.0 if self.up else 0.0)
        yield from (regs, clus, recs, last, up)


@dataclass
class ApiState:
    """What the handlers share (one per service, under an AppKey)."""

    service: jobs.Service
    jobs_app: procrastinate.App
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]
    registry: CollectorRegistry
    view: StoreView
    token: str | None
    worker_running: Callable[[], bool]


STATE = web.AppKey("state", ApiState)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response (orjson: reports can be large, and reads are the hot path)."""
    return web.json_response(value, status=status, headers=headers, dumps=_dumps)


def json_error(status: int, message: str, **headers: str) -> web.Response:
    """A JSON error response."""
    return _json({"error": message}, status=status, headers=headers or None)


class ApiError(Exception):
    """A request that cannot be served, with its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as JSON; store trouble as 503; never a traceback to the client."""
    try:
        return await handler(request)
    except (ApiError, BadBody) as exc:
        return json_error(exc.status, exc.message)
    except UnicodeError:  # bytes that are not UTF-8, a lone surrogate: nothing to look up
        return json_error(400, "the request contains text that is not valid UTF-8")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return json_error(exc.status, exc.reason, **headers)
    except psycopg.DataError:  # a value PostgreSQL cannot take (a NUL character, …)
        return json_error(422, "a value in the request cannot be stored or searched for")
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        log.warning(event("api.store_unavailable", path=request.path, error=first_line(exc)))
        return json_error(503, "the store is unavailable")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(event("api.error", path=request.path))
        return json_error(500, "internal error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every /admin/ route but the OpenAPI document, compared in constant time."""
    token = request.app[STATE].token
    if (token is not None and request.path.startswith("/admin/")
            and request.path != "/admin/openapi.json"):
        given = header_bytes(request.headers.get("Authorization", ""))
        scheme, _, value = given.partition(b" ")
        if (scheme.lower() != b"bearer" or not hmac.compare_digest(
                value.strip(), token.encode())) and not page.signed(request, token):
            return json_error(401, "missing or wrong bearer token",
                              **{"WWW-Authenticate": 'Bearer realm="pgarchitect"'})
    return await handler(request)


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and "\x00" in value:
        raise ApiError(422, f"{name} must not contain a NUL character")
    return value


def _limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return 100
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(422, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


def _choice(request: web.Request, name: str, allowed: list[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise ApiError(422, f"{name} must be one of: {', '.join(allowed)}")
    return value


def _id(request: web.Request, what: str) -> int:
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(404, f"no {what} {text!r}")
    return int(text)


async def _body(request: web.Request, required: bool) -> dict[str, Any]:
    body = await read_json(request)  # BadBody: 400 / 408 / 413 (analyzer/api/hardening.py)
    if body is None:
        if required:
            raise ApiError(422, "a JSON object body is required")
        return {}
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    return body


async def run_audit(request: web.Request) -> web.Response:
    """POST /admin/database/run-audit: queue an audit now (202), 409 while one is open."""
    state = request.app[STATE]
    body = await _body(request, required=False)
    extra = sorted(set(body) - {"target"})
    if extra:
        raise ApiError(422, f"unknown field {extra[0]!r} (expected: target)")
    targets = state.service.settings.targets
    name = body.get("target")
    if name is None:
        if len(targets) != 1:
            raise ApiError(422, "several targets are configured: give {\"target\": NAME}")
        name = targets[0].name
    if not isinstance(name, str):
        raise ApiError(422, "target must be a string")
    if state.service.target(name) is None:
        raise ApiError(404, f"no target named {name!r}")
    async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
        try:
            audit_id = await jobs.request_audit(state.jobs_app, conn, name)
        except jobs.AlreadyQueued:
            raise ApiError(409, f"an audit of {name!r} is already queued or running") from None
    log.info(event("api.audit_requested", target=name, audit_id=audit_id))
    return _json({"audit_id": str(audit_id), "target": name, "status": "queued"},
                             status=202)


async def list_audits(request: web.Request) -> web.Response:
    """GET /admin/database/audits."""
    state = request.app[STATE]
    limit = _limit(request)
    status = _choice(request, "status", AUDIT_STATUSES)
    async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
        rows = await queries.list_audits(conn, _text(request, "target"), status, limit)
    return _json(rows)


async def get_audit(request: web.Request) -> web.Response:
    """GET /admin/database/audits/{id}: the stored report (or the summary until it is done)."""
    state = request.app[STATE]
    audit_id = _id(request, "audit")
    if page.wants_html(request.headers.get("Accept", "")) or "signature" in request.query:
        return await page.serve(state.service.settings.require_store(), audit_id, STORE_TIMEOUT)
    async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
        found = await queries.get_audit(conn, audit_id)
    if found is None:
        raise ApiError(404, f"no audit {audit_id}")
    return _json(found)


async def list_recommendations(request: web.Request) -> web.Response:
    """GET /admin/database/recommendations?status=&target=."""
    state = request.app[STATE]
    limit = _limit(request)
    status = _choice(request, "status", RECOMMENDATION_STATUSES)
    async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
        rows = await queries.list_recommendations(conn, _text(request, "target"), status,
                                                  limit)
    return _json(rows)


async def get_recommendation(request: web.Request) -> web.Response:
    """GET /admin/database/recommendations/{id}: evidence and history."""
    state = request.app[STATE]
    rec_id = _id(request, "recommendation")
    async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
        found = await queries.get_recommendation(conn, rec_id)
    if found is None:
        raise ApiError(404, f"no recommendation {rec_id}")
    return _json(found)


async def set_status(request: web.Request) -> web.Response:
    """POST /admin/database/recommendations/{id}/status: a person's decision."""
    state = request.app[STATE]
    rec_id = _id(request, "recommendation")
    body = await _body(request, required=True)
    extra = sorted(set(body) - {"status", "note"})
    if extra:
        raise ApiError(422, f"unknown field {extra[0]!r} (expected: status, note)")
    new = body.get("status")
    note = body.get("note")
    if new not in PERSON_STATUSES:
        raise ApiError(422, f"status must be one of: {', '.join(PERSON_STATUSES)}")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        raise ApiError(422, "note must be a string of at most 2000 characters")
    async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
        try:
            found = await queries.set_status(conn, rec_id, str(new), note)
        except queries.TransitionRefused as exc:
            raise ApiError(409, str(exc)) from None
        if not found:
            raise ApiError(404, f"no recommendation {rec_id}")
        rec = await queries.get_recommendation(conn, rec_id)
    log.info(event("api.status_changed", recommendation=rec_id, status=new))
    return _json(rec)


async def openapi(request: web.Request) -> web.Response:
    """GET /admin/openapi.json."""
    return _json(document())


async def refresh_view(state: ApiState) -> None:
    """Read the store-derived gauges; on failure keep the last values and mark the store down."""
    try:
        async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
            state.view.data = await queries.store_view(conn)
        state.view.up = state.view.loaded = True
    except psycopg.Error as exc:
        if state.view.up:
            log.warning(event("metrics.store_unavailable", error=first_line(exc)))
        state.view.up = False


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the store is read first, then everything is rendered."""
    state = request.app[STATE]
    await refresh_view(state)
    body = generate_latest(state.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is alive."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: the store answers and the job worker runs (503 otherwise).

    Failing snapshot and audit jobs are listed under "failing", and the status is then
    "degraded": the service still serves its API (a target being down is no reason to take a
    replica out of a load balancer), but it says that jobs fail.
    """
    state = request.app[STATE]
    try:
        async with state.pool.connection(timeout=STORE_TIMEOUT) as conn:
            await conn.execute("/* pgarchitect */ SELECT 1")
    except psycopg.Error as exc:
        return json_error(503, f"the store is unavailable: {first_line(exc)}")
    if not state.worker_running():
        return json_error(503, "the job worker is not running")
    failing = state.service.health.failing()
    listed = [{"task": f.task, "target": f.target, "reason": f.reason, "failures": f.count,
               "since": datetime.fromtimestamp(f.since, UTC).isoformat()} for f in failing]
    return _json({"status": "degraded" if listed else "ready", "failing": listed})


def make_web_app(state: ApiState) -> web.Application:
    """The aiohttp application of the service."""
    app = web.Application(middlewares=[errors_middleware, auth_middleware],
                          client_max_size=MAX_BODY)
    app[STATE] = state
    state.registry.register(state.view)
    app.router.add_post("/admin/database/run-audit", run_audit)
    app.router.add_get("/admin/database/audits", list_audits)
    app.router.add_get("/admin/database/audits/{id}", get_audit)
    app.router.add_get("/admin/database/recommendations", list_recommendations)
    app.router.add_get("/admin/database/recommendations/{id}", get_recommendation)
    app.router.add_post("/admin/database/recommendations/{id}/status", set_status)
    ask_api.add_routes(app)
    app.router.add_get("/admin/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
