"""Stopping the limiter's background loops (override refresh, breaker probe)."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task[None], stopping: asyncio.Event, grace: float) -> None:
    """End a background loop that also watches ``stopping``.

    Cancelling alone is not enough on Python 3.11: a cancel that lands as
    an ``asyncio.timeout`` expires can surface as TimeoutError, which the
    loop treats as an outage and carries on.
    """
    stopping.set()
    task.cancel()
    await asyncio.wait({task}, timeout=grace)
