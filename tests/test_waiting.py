"""The tests' waiting helper: returns the accepted value, fails saying what it saw last."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.waiting import NotEventually, eventually, eventually_async


def counter(values: list[object]) -> tuple[Callable[[], object], list[int]]:
    """A probe returning `values` one per call (the last one forever), and its call count."""
    calls = [0]
    it: Iterator[object] = iter(values)
    last: list[object] = [None]

    def probe() -> object:
        calls[0] += 1
        last[0] = next(it, last[0])
        if isinstance(last[0], BaseException):
            raise last[0]
        return last[0]

    return probe, calls


def test_returns_the_first_accepted_value() -> None:
    probe, calls = counter([0, "", None, [], "ready", "later"])
    assert eventually(probe, "a value", interval=0) == "ready"
    assert calls == [5]


def test_until_decides_what_is_accepted() -> None:
    probe, _ = counter([1, 2, 3, 4])
    assert eventually(probe, "three or more", until=lambda v: v >= 3, interval=0) == 3
    zero, _ = counter([0])
    assert eventually(zero, "a falsy value accepted", until=lambda v: v == 0) == 0


def test_failure_names_the_state_and_the_last_value() -> None:
    probe, calls = counter([1, 2, 7])
    with pytest.raises(NotEventually) as info:
        eventually(probe, "the count to reach 10", until=lambda v: v >= 10,
                   within=0.05, interval=0.01, on_timeout=lambda: "server log: nothing")
    message = str(info.value)
    assert message.startswith("gave up after 0.05s (")
    assert "waiting for the count to reach 10; last value: 7\nserver log: nothing" in message
    assert f"({calls[0]} tries)" in message
    assert isinstance(info.value, AssertionError)  # pytest reports it as a failed assertion


def test_retried_exceptions_are_shown_and_others_propagate_at_once() -> None:
    probe, _ = counter([ConnectionRefusedError(111, "refused"), "up"])
    assert eventually(probe, "a server", retry_on=(OSError,), interval=0) == "up"

    down, _ = counter([ConnectionRefusedError(111, "refused")])
    with pytest.raises(NotEventually, match=r"last error: ConnectionRefusedError: \[Errno 111\]"
                                            r" refused$"):
        eventually(down, "a server", retry_on=(OSError,), within=0.02, interval=0)

    broken, calls = counter([KeyError("bug")])
    with pytest.raises(KeyError):
        eventually(broken, "anything", retry_on=(OSError,))
    assert calls == [1]  # a bug in the probe is not waited out


def test_a_value_after_an_error_replaces_it_in_the_message() -> None:
    probe, _ = counter([OSError("first"), "no"])
    with pytest.raises(NotEventually, match=r"last value: 'no'$"):
        eventually(probe, "yes", until=lambda v: v == "yes", retry_on=(OSError,),
                   within=0.02, interval=0)


def test_waits_for_another_thread() -> None:
    done = threading.Event()
    seen: list[int] = []

    def probe() -> bool:
        seen.append(1)
        if len(seen) == 3:
            threading.Thread(target=done.set).start()
        return done.is_set()

    assert eventually(probe, "the thread", interval=0.01) is True
    assert len(seen) >= 3


async def test_async_probe_lets_other_tasks_run() -> None:
    ticks: list[int] = []

    async def ticker() -> None:
        while True:
            ticks.append(1)
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        assert await eventually_async(lambda: len(ticks), "ticks", until=lambda n: n >= 5,
                                      interval=0) >= 5

        async def coro_probe() -> int:
            return len(ticks)

        before = len(ticks)
        assert await eventually_async(coro_probe, "more ticks",
                                      until=lambda n: n > before) > before
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_async_failure_message_and_retry() -> None:
    probe, _ = counter([OSError("not yet"), 1, 2])

    async def coro_probe() -> object:
        return probe()

    with pytest.raises(NotEventually, match=r"waiting for two digits; last value: 2$"):
        await eventually_async(coro_probe, "two digits", until=lambda v: v >= 10,
                               retry_on=(OSError,), within=0.05, interval=0.01)


def test_a_long_last_value_is_shortened() -> None:
    with pytest.raises(NotEventually, match=r"last value: 'xxx+\.\.\. \(10002 characters\)$"):
        eventually(lambda: "x" * 10_000, "a short string", until=lambda v: len(v) < 10,
                   within=0.01, interval=0)
