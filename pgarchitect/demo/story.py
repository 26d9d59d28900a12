"""`pgarchitect demo`: the whole loop on an embedded PostgreSQL 18, one progress line a step.

healthy traffic on three ORM paths → an index dropped → p95 over target (and the burn-rate
alert, where Prometheus and Alertmanager are installed) → an audit through the running
analyzer service → `propose` → the migration applied → traffic → the next audit verifies the
recommendation. The steps are `pgarchitect.demo.steps.STEPS`, numbered from that list. Logs
go to a file in the demo's directory; every server is stopped at the end, on an error and on
Ctrl-C, and dies with the demo when it is killed (`pgarchitect.demo.processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from pgarchitect.demo.scene import DemoOptions, Run, Step, Story
from pgarchitect.demo.steps import STEPS, urls
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.demo.story")

__all__ = ["DemoOptions", "run_demo", "tell"]


def _say(text: str = "") -> None:
    print(text, flush=True)


async def tell(run: Run, steps: Sequence[Step]) -> Story:
    """Run `steps` in order, each on the story the one before returned; one line each."""
    story = Story()
    for number, step in enumerate(steps, 1):
        t0 = time.monotonic()
        log.info(event("demo.step_started", step=number, function=step.__name__))
        told = await step(run, story)
        seconds = time.monotonic() - t0
        line = f"[{number:>2}/{len(steps)} {seconds:5.1f}s] {told.title}"
        _say(line + (": " + "; ".join(told.results) if told.results else ""))
        for text in told.details:
            _say(text)
        log.info(event("demo.step_finished", step=number, seconds=round(seconds, 2)))
        story = told.story
    return story


def _setup_logging(directory: Path, verbose: bool) -> Path:
    """Log lines go to demo.log; to the console as well only with --verbose."""
    path = directory / "demo.log"
    handler = logging.FileHandler(path)
    root = logging.getLogger()
    console = [h for h in root.handlers if not isinstance(h, logging.FileHandler)]
    if console:
        handler.setFormatter(console[0].formatter)
    root.handlers[:] = [handler, *(console if verbose else [])]
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return path


async def _run(options: DemoOptions, directory: Path) -> None:
    async with contextlib.AsyncExitStack() as servers, aiohttp.ClientSession() as session:
        run = Run(options, directory, servers, session, secrets.token_urlsafe(24))
        story = await tell(run, STEPS)
        if options.keep_running:
            _say("")
            _say("Everything keeps running:")
            _say(urls(run, story))
            _say("Ctrl-C stops it all.")
            await asyncio.Event().wait()


def run_demo(options: DemoOptions) -> int:
    """Run the demo end to end; returns the exit code."""
    directory = Path(tempfile.mkdtemp(prefix="pgarchitect-demo-"))
    log_path = _setup_logging(directory, options.verbose)
    _say(f"pgarchitect demo — logs in {log_path} (console log lines with --verbose)")
    started = time.monotonic()
    try:
        asyncio.run(_run(options, directory))
    except RuntimeError as exc:
        log.error(event("demo.failed", error=str(exc)))
        print(f"pgarchitect: demo failed: {exc} (logs in {log_path})", file=sys.stderr)
        return 1
    _say(f"Done in {time.monotonic() - started:.0f}s; every server is stopped. "
         f"Logs, the proposal and the audit page are in {directory}")
    return 0
