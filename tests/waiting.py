"""Wait for a state, not for a time: poll a probe until it holds, with a deadline.

A test that sleeps and then asserts is flaky on a busy machine and slow on a quiet one. These
helpers call a probe until its value is accepted and return that value; the deadline is only
there to turn "never" into a failure that says what was awaited and what was seen last (the
last value, or the last exception the caller chose to retry on). It is not a performance bar:
keep it generous.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

WAIT = 60.0  # seconds: a deadline for something to happen, not a performance bar
INTERVAL = 0.05  # seconds between two calls of the probe
SHOWN = 2000  # characters of the last value kept in a failure message (a whole exposition is long)


class NotEventually(AssertionError):
    """The awaited state did not come before the deadline."""


def _truthy(value: object) -> bool:
    return bool(value)


def _shorten(text: str) -> str:
    return text if len(text) <= SHOWN else text[:SHOWN] + f"... ({len(text)} characters)"


def _failure(what: str, within: float, calls: int, last: object, error: BaseException | None,
             detail: str) -> NotEventually:
    seen = (f"last error: {type(error).__name__}: {error}" if error is not None
            else f"last value: {_shorten(repr(last))}")
    message = f"gave up after {within:g}s ({calls} tries) waiting for {what}; {seen}"
    return NotEventually(message + (f"\n{detail}" if detail else ""))


def eventually(
    probe: Callable[[], T],
    what: str,
    *,
    until: Callable[[T], bool] = _truthy,
    retry_on: tuple[type[BaseException], ...] = (),
    within: float = WAIT,
    interval: float = INTERVAL,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until `until(value)` holds and return that value, or fail naming `what`.

    Exceptions listed in `retry_on` count as "not yet" (the last one is in the failure
    message); any other exception propagates at once. `on_timeout` adds detail (a log tail).
    """
    deadline = time.monotonic() + within
    calls, last, error = 0, None, None
    while True:
        calls += 1
        try:
            value = probe()
        except retry_on as exc:
            error = exc
        else:
            if until(value):
                return value
            last, error = value, None
        if time.monotonic() >= deadline:
            raise _failure(what, within, calls, last, error, on_timeout() if on_timeout else "")
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    what: str,
    *,
    until: Callable[[T], bool] = _truthy,
    retry_on: tuple[type[BaseException], ...] = (),
    within: float = WAIT,
    interval: float = INTERVAL,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """`eventually` inside a running loop: `probe` may be a coroutine function or a plain one.

    Between calls it awaits, so the tasks being waited for (a tailer, a server) make progress.
    """
    deadline = time.monotonic() + within
    calls, last, error = 0, None, None
    while True:
        calls += 1
        try:
            result: Any = probe()
            value: T = await result if inspect.isawaitable(result) else result
        except retry_on as exc:
            error = exc
        else:
            if until(value):
                return value
            last, error = value, None
        if time.monotonic() >= deadline:
            raise _failure(what, within, calls, last, error, on_timeout() if on_timeout else "")
        await asyncio.sleep(interval)
