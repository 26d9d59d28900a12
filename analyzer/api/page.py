"""`GET /admin/database/audits/{id}` with `Accept: text/html`: the audit's page
(analyzer/page/), behind the same bearer token as every /admin/ route, or a short-lived
signed link to that one page (analyzer/page/link.py) for a browser."""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from analyzer import page
from analyzer.page import link
from analyzer.page.html import CSP
from pgarchitect.dsn import Dsn
from pgarchitect.errors import UserError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.api")


def _quality(part: str) -> tuple[str, float]:
    kind, *params = (p.strip() for p in part.split(";"))
    q = 1.0
    for p in params:
        name, _, value = p.partition("=")
        if name.strip() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return kind.lower(), q


def wants_html(accept: str) -> bool:
    """True when the client prefers text/html to JSON (a browser does; `*/*` alone does not)."""
    ranked = dict(_quality(p) for p in accept.split(",") if p.strip())
    html = ranked.get("text/html", 0.0)
    return html > 0 and html > ranked.get("application/json", 0.0)


async def serve(store: Dsn, audit_id: int, connect_timeout: float) -> web.Response:
    """The page of a succeeded audit; 404 when it has none; 503 when the store is down."""
    try:
        text = await asyncio.to_thread(page.page_from_store, store, audit_id,
                                        connect_timeout)
    except page.NoReport as exc:
        raise web.HTTPNotFound(reason=str(exc)) from None
    except UserError as exc:
        log.warning(event("api.store_unavailable", path="audit page", error=str(exc)))
        raise web.HTTPServiceUnavailable(reason="the store is unavailable") from None
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers={
        "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store"})


_PAGE = re.compile(r"/admin/database/audits/([0-9]{1,18})")


def signed(request: web.Request, token: str) -> bool:
    """A GET of an audit's page with a valid signed link (analyzer/page/link.py)."""
    m = _PAGE.fullmatch(request.path)
    return (request.method == "GET" and m is not None and "signature" in request.query
            and link.valid(token, int(m.group(1)), request.query.get("expires"),
                           request.query.get("signature")))
