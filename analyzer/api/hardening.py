"""The admin API against hostile clients: bounded connections, time limits, 4xx for bad bytes.

- **Connections per client**: at most `PER_CLIENT` open connections per peer address; one more
  is answered ``429`` (JSON) and closed at once.
- **Time limits**: a connection must deliver a complete request head within
  `HEAD_TIMEOUT` seconds of opening (or of its previous response: the keep-alive timeout),
  and a body within `BODY_TIMEOUT` (``408``). A client that trickles bytes is closed.
- **Bodies**: JSON parsed by orjson (nesting limited to 1,024 levels; invalid UTF-8 and lone
  surrogates refused), at most 64 KiB after decoding any ``Content-Encoding``; a body that
  does not decode as its encoding says is ``400``.

What was tried and what happens: docs/security.md, "The admin API against malformed requests".
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from pgarchitect.log import event

log = logging.getLogger("pgarchitect.analyzer.api")

PER_CLIENT = 32
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
MAX_BODY = 64 * 1024

_BUSY = orjson.dumps({"error": "too many connections from this client"})
TOO_MANY = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n"
            + _BUSY)


class BadBody(Exception):
    """A request body that cannot be read as JSON, with the status and message to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_json(request: web.Request) -> Any:
    """The request's JSON body (None when empty); BadBody when it cannot be read or parsed."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            raw = await request.read()
    except TimeoutError:
        raise BadBody(408, f"the body did not arrive within {BODY_TIMEOUT:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise BadBody(413, f"the body is larger than {MAX_BODY} bytes") from None
    except (RequestPayloadError, HttpProcessingError, ValueError, OSError) as exc:  # lies
        raise BadBody(400, f"the body cannot be decoded: {type(exc).__name__}") from None
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadBody(400, "the body is not valid JSON (UTF-8, at most 1,024 levels deep)"
                      ) from None


def header_bytes(value: str) -> bytes:
    """A header value as the bytes the client sent (aiohttp keeps non-UTF-8 as surrogates)."""
    return value.encode("utf-8", "surrogateescape")


class JsonErrorsHandler(RequestHandler):
    """aiohttp's protocol handler, answering requests its parser refuses with JSON too.

    A request line, header or chunk that is not HTTP never reaches the application's
    middlewares: aiohttp answers it here (400, or 413 / 431 for sizes), and logs one line.
    """

    async def start(self) -> None:
        if self._manager is None:  # refused (GuardedServer) and closed before it began
            return
        await super().start()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | HttpProcessingError | ConnectionError):
            # a body that lied about its encoding, drained after the 4xx answer: one line
            log.info(event("api.malformed_request", error=type(exc).__name__))
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already")
        what = type(exc).__name__ if exc is not None else HTTPStatus(status).phrase
        if status >= 500:
            log.error(event("api.error", error=what), exc_info=exc)
            text = "internal error"
        else:
            log.info(event("api.malformed_request", status=status, error=what))
            text = f"malformed HTTP request ({what})"
        resp = web.json_response({"error": text}, status=status)
        resp.force_close()
        return resp


class GuardedServer(web.Server):
    """aiohttp's connection manager, counting open connections per peer address."""

    def __init__(self, *args: Any, per_client: int = PER_CLIENT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_client = per_client
        self._open: dict[str, int] = {}
        self._peers: dict[RequestHandler, str] = {}
        self.refused = 0

    def __call__(self) -> RequestHandler:
        return JsonErrorsHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._open.get(address, 0) >= self.per_client:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(event("api.connections_refused", client=address,
                                  limit=self.per_client, refused=self.refused))
            transport.write(TOO_MANY)
            transport.close()
            handler.force_close()
            return
        self._open[address] = self._open.get(address, 0) + 1
        self._peers[handler] = address
        super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None
                        ) -> None:
        address = self._peers.pop(handler, None)
        if address is not None:
            left = self._open.get(address, 1) - 1
            if left > 0:
                self._open[address] = left
            else:
                self._open.pop(address, None)
        super().connection_lost(handler, exc)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a GuardedServer with the time limits above."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", HEAD_TIMEOUT)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The same handler and arguments aiohttp chose; only the connection manager differs.
        return GuardedServer(plain.request_handler, request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation,
                             loop=plain._loop, **plain._kwargs)
