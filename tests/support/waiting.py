"""Waiting for a state the system reaches on its own: polling, with a deadline.

Never a fixed sleep: each wait ends as soon as its condition holds, and
fails the test, naming what it waited for, once the deadline has passed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import pytest

T = TypeVar("T")

# Long enough for a process to start on a loaded two-core machine.
DEADLINE = 30.0
INTERVAL = 0.05


@overload
async def until(
    condition: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    deadline: float = DEADLINE,
    interval: float = INTERVAL,
) -> T: ...


@overload
async def until(
    condition: Callable[[], T | None],
    what: str,
    *,
    deadline: float = DEADLINE,
    interval: float = INTERVAL,
) -> T: ...


async def until(
    condition: Callable[[], Any],
    what: str,
    *,
    deadline: float = DEADLINE,
    interval: float = INTERVAL,
) -> Any:
    """Poll ``condition`` (plain or async) until it returns something truthy, and return that."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(interval)


async def seconds_until(
    condition: Callable[[], Awaitable[bool]], what: str, deadline: float, interval: float = 0.01
) -> float:
    """Seconds until ``condition`` held; the test fails past ``deadline``.

    For a wait whose length is what the test promises (a revocation reaches
    every process within a second), so it polls finely.
    """
    started = time.monotonic()
    await until(
        condition, f"{what} (not within {deadline} s)", deadline=deadline, interval=interval
    )
    return time.monotonic() - started


def block_until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """``until`` for synchronous code (fixtures that start servers): blocks while it polls."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
