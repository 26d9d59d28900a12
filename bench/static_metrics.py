"""`python -m bench.static_metrics FILE PORT`: serve FILE's bytes at /metrics with aiohttp.

The exporter benchmark's floor: what answering GET /metrics with a body of the exporter's
size costs in the HTTP server the exporter uses, with no work behind it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# What the exporter answers a scraper that does not ask for OpenMetrics (no Accept).
CONTENT_TYPE = CONTENT_TYPE_LATEST


def main() -> None:
    body, port = Path(sys.argv[1]).read_bytes(), int(sys.argv[2])

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
