"""In-process store: GCRA over a dict. Exact for one process, shared by none."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from gateway.ratelimit.store import Check, CheckResult, Verdict

# Sweep expired keys once the table passes this size, so an unbounded set of
# callers cannot grow memory without bound.
_SWEEP_AT = 100_000


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> theoretical arrival time (seconds on self._clock)
        self._tat: dict[tuple[str, str], float] = {}

    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        return self.acquire_now(checks)

    def acquire_now(self, checks: Sequence[Check]) -> Verdict:
        now = self._clock()
        if len(self._tat) > _SWEEP_AT:
            self._sweep(now)
        new_tats: list[float] = []
        retry_after = 0.0
        for check in checks:
            interval = check.period / check.limit
            new_tat = max(self._tat.get((check.subject, check.rule), now), now) + interval
            overshoot = new_tat - now - check.period
            # Admissions come in whole intervals, so half an interval of
            # tolerance keeps a burst at exactly ``limit`` despite rounding.
            if overshoot > interval / 2:
                retry_after = max(retry_after, overshoot)
            new_tats.append(new_tat)
        allowed = retry_after == 0.0
        results = []
        for check, new_tat in zip(checks, new_tats, strict=True):
            tat = new_tat if allowed else max(self._tat.get((check.subject, check.rule), now), now)
            if allowed:
                self._tat[(check.subject, check.rule)] = new_tat
            interval = check.period / check.limit
            remaining = max(0, math.floor((check.period - (tat - now)) / interval + 0.5))
            results.append(CheckResult(remaining=remaining, reset_after=max(0.0, tat - now)))
        return Verdict(allowed=allowed, results=tuple(results), retry_after=retry_after)

    def _sweep(self, now: float) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}

    async def close(self) -> None:
        self._tat.clear()
