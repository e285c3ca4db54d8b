"""In-process store: the sliding-window log over deques. Exact for one process.

The same algorithm as ``sliding_window.lua``; see ``store.py`` for what a
limit means.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.ratelimit.store import LimitCheck, LimitCheckResult, Verdict

# Idle logs are dropped a few at a time on each decision, so that an
# unbounded set of callers cannot grow memory without bound and no decision
# pays for sweeping them all: each log is dropped once, so the cost per
# decision is O(1) amortized, whatever the number of logs.
_EXPIRE_PER_DECISION = 4


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


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # One table per period, least recently used first: within a period,
        # the log at the front is the first to fall idle.
        self._logs: dict[float, OrderedDict[tuple[str, str], _Log]] = {}

    def __len__(self) -> int:
        return sum(len(logs) for logs in self._logs.values())

    async def acquire(self, checks: Sequence[LimitCheck]) -> Verdict:
        return self.decide_now(checks, count=True)

    async def peek(self, checks: Sequence[LimitCheck]) -> Verdict:
        return self.decide_now(checks, count=False)

    def decide_now(self, checks: Sequence[LimitCheck], *, count: bool) -> Verdict:
        now = self._clock()
        self._expire_some(now)
        logs = [self._log(check, now) for check in checks]
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

    def _log(self, check: LimitCheck, now: float) -> _Log:
        logs = self._logs.get(check.period)
        if logs is None:
            logs = self._logs[check.period] = OrderedDict()
        key = (check.subject, check.rule)
        log = logs.get(key)
        if log is None:
            log = logs[key] = _Log(check.period)
        else:
            logs.move_to_end(key)
        log.trim(now)
        return log

    @staticmethod
    def _wait(check: LimitCheck, log: _Log, now: float) -> float:
        excess = len(log.times) - check.limit
        if excess < 0:
            return 0.0
        # The admission whose departure brings the count below the limit.
        return check.period - (now - log.times[excess])

    def _expire_some(self, now: float) -> None:
        for logs in self._logs.values():
            for _ in range(_EXPIRE_PER_DECISION):
                if not logs:
                    break
                key, log = next(iter(logs.items()))
                if log.times and log.times[-1] > now - log.period:
                    break
                del logs[key]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._logs.clear()
