"""A circuit breaker in front of the store, so a dead Redis costs requests nothing.

Closed, every decision goes to the store. It opens after ``failures``
consecutive failed round trips within ``window`` seconds, not on the first:
one slow reply, or the stale pooled connections a restarted Redis leaves
behind, must not take every tenant off the store. A round trip is one
failure however many requests shared it. Open, decisions skip the store at
once (the failure mode decides), and one background probe asks the store
every ``probe_interval`` seconds; the first answer closes the breaker again.

A call to the store goes inside ``with breaker:``, which refuses it at once
while the breaker is open and records how it went. (A plain context
manager, not a coroutine wrapping the call: it is on every decision's path.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.ratelimit.background import stop_task
from gateway.ratelimit.store import StoreFault, StoreUnavailable

log = logging.getLogger("gateway.ratelimit")


class CircuitBreaker:
    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        probe_interval: float,
        *,
        failures: int = 1,
        window: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._probe_interval = probe_interval
        self._failures_to_open = failures
        self._window = window
        self._clock = clock
        self._prober: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # The current run of failures: how many, since when, and the last
        # one (requests that shared a round trip share its exception).
        self._streak = 0
        self._streak_started = 0.0
        self._last_failure: BaseException | None = None
        self.opened = 0

    @property
    def is_open(self) -> bool:
        return self._prober is not None

    def __enter__(self) -> None:
        if self._prober is not None:
            raise StoreUnavailable("circuit open after a failure; probing")

    def __exit__(
        self, kind: type[BaseException] | None, failure: BaseException | None, _: object
    ) -> None:
        if kind is None:
            self.record_success()
        elif isinstance(failure, StoreUnavailable):
            self.record_failure(failure)
        elif isinstance(failure, StoreFault):
            # The store answered: an error in the script or a bad key is a
            # bug (a 500 for this request, logged with its traceback), not an
            # outage that should take every tenant off the store.
            self.record_success()

    def record_success(self) -> None:
        self._streak = 0
        self._last_failure = None

    def record_failure(self, failure: BaseException) -> None:
        if self._prober is not None or failure is self._last_failure:
            return
        self._last_failure = failure
        now = self._clock()
        if self._streak == 0 or now - self._streak_started > self._window:
            self._streak, self._streak_started = 0, now
        self._streak += 1
        if self._streak >= self._failures_to_open:
            self.opened += 1
            self._streak = 0
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_answered())

    async def _probe_until_answered(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self._probe_interval)
            try:
                await self._probe()
            except StoreUnavailable:
                continue
            # The probe's owner logs the recovery (the limiter's outage).
            self._prober = None
            self.record_success()
            return

    async def close(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None:
            await stop_task(prober, self._stopping, self._probe_interval)
