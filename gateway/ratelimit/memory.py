"""In-process store: the sliding-window log over deques. Exact for one process.

The same algorithm as ``sliding_window.lua``; see ``store.py`` for what a
limit means.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.ratelimit.memory_bytes import MemoryByteWindows
from gateway.ratelimit.store import LimitCheck, LimitCheckResult, Verdict
from gateway.ratelimit.window_tables import WindowTables


@dataclass(slots=True)
class _Log:
    period: float
    # Admission times inside the window, oldest first.
    times: deque[float] = field(default_factory=deque)

    def trim(self, now: float) -> None:
        # The window is (now - period, now]: an admission exactly one period
        # old has left it.
        while self.times and self.times[0] <= now - self.period:
            self.times.popleft()

    def newest(self) -> float | None:
        return self.times[-1] if self.times else None


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs = WindowTables(_Log)
        self.byte_windows = MemoryByteWindows(clock)

    def __len__(self) -> int:
        return len(self._logs)

    async def acquire(self, checks: Sequence[LimitCheck]) -> Verdict:
        return self.decide_now(checks, count=True)

    async def peek(self, checks: Sequence[LimitCheck]) -> Verdict:
        return self.decide_now(checks, count=False)

    def decide_now(self, checks: Sequence[LimitCheck], *, count: bool) -> Verdict:
        now = self._clock()
        self._logs.expire_some(now)
        logs = [self._logs.window(check, now) for check in checks]
        waits = [self._wait(check, log, now) for check, log in zip(checks, logs, strict=True)]
        retry_after = max(
            (w for c, w in zip(checks, waits, strict=True) if c.enforced), default=0.0
        )
        allowed = retry_after == 0.0
        results = []
        for check, log, wait in zip(checks, logs, waits, strict=True):
            if allowed and count and wait == 0.0:
                log.times.append(now)
            # period - age, not time + period - now: the latter's float
            # rounding makes a fresh window's reset a hair over the period.
            reset = check.period - (now - log.times[0]) if log.times else 0.0
            remaining = max(0, check.limit - len(log.times))
            results.append(
                LimitCheckResult(remaining=remaining, reset_after=reset, retry_after=wait)
            )
        return Verdict(allowed=allowed, results=tuple(results), retry_after=retry_after)

    @staticmethod
    def _wait(check: LimitCheck, log: _Log, now: float) -> float:
        excess = len(log.times) - check.limit
        if excess < 0:
            return 0.0
        # The admission whose departure brings the count below the limit.
        return check.period - (now - log.times[excess])

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._logs.clear()
        self.byte_windows.clear()
