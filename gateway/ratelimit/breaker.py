"""A circuit breaker in front of the store, so a dead Redis costs requests nothing.

Closed, every decision goes to the store. The first failure opens it: from
then on decisions skip the store at once (the failure mode decides), and one
background probe asks the store every ``probe_interval`` seconds; the first
answer closes the breaker again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.ratelimit.background import stop_task
from gateway.ratelimit.store import StoreUnavailable

log = logging.getLogger("gateway.ratelimit")


class CircuitBreaker:
    def __init__(self, probe: Callable[[], Awaitable[None]], probe_interval: float) -> None:
        self._probe = probe
        self._probe_interval = probe_interval
        self._prober: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.opened = 0

    @property
    def is_open(self) -> bool:
        return self._prober is not None

    def record_failure(self) -> None:
        if self._prober is None:
            self.opened += 1
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_answered())

    async def _probe_until_answered(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self._probe_interval)
            try:
                await self._probe()
            except StoreUnavailable:
                continue
            log.warning("rate-limit store answers again; using it")
            self._prober = None
            return

    async def close(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None:
            await stop_task(prober, self._stopping, self._probe_interval)
