"""The exporter's step of `pgarchitect demo`: serve /metrics in-process and show a few lines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from exporter.app import make_app
from pgarchitect.config import load_settings

SHOW = ("pg_up{", "pg_stat_statements_seconds_total{", "pg_exporter_collector_up{")


def pick_lines(body: str, per_prefix: int = 3) -> list[str]:
    """A few sample lines of each interesting family, highest statement times first."""
    lines = [ln for ln in body.splitlines() if not ln.startswith("#")]
    out: list[str] = []
    for prefix in SHOW:
        chosen = [ln for ln in lines if ln.startswith(prefix)]
        if prefix.startswith("pg_stat_statements"):
            chosen.sort(key=lambda ln: -float(ln.rsplit(" ", 1)[1]))
            chosen = chosen[:per_prefix]
        out.extend(chosen)
    return out


async def _serve_and_scrape(dsn: str, say: Callable[[str], None]) -> None:
    settings = load_settings(None, {"targets": [{"name": "app", "dsn": dsn}],
                                    "exporter": {"min_refresh_interval": 0}}, {})
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            body = await resp.text()
        say(f"Exporter: serving {url} while the demo runs "
            f"({sum(1 for ln in body.splitlines() if not ln.startswith('#')):,} samples); "
            "a few lines:")
        for line in pick_lines(body):
            say("  " + (line if len(line) <= 160 else line[:157] + "…"))
    finally:
        await runner.cleanup()


def demo_step(dsn: str, say: Callable[[str], None]) -> None:
    """Run the exporter against `dsn` on a free port, scrape it once and print a summary."""
    asyncio.run(_serve_and_scrape(dsn, say))
