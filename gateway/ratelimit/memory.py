"""In-process store: GCRA over a dict. Exact for one process, shared by none."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.ratelimit.store import Check, CheckResult, Verdict, cell_micros

# Sweep expired keys once the table passes this size, so an unbounded set of
# callers cannot grow memory without bound.
_SWEEP_AT = 100_000


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (subject, rule) -> theoretical arrival time, whole microseconds
        self._tat: dict[tuple[str, str], int] = {}

    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        return self.acquire_now(checks)

    def acquire_now(self, checks: Sequence[Check]) -> Verdict:
        now = round(self._clock() * 1_000_000)
        if len(self._tat) > _SWEEP_AT:
            self._sweep(now)
        tats = [max(self._tat.get((c.subject, c.rule), now), now) for c in checks]
        cells = [cell_micros(c) for c in checks]
        retry = 0
        for tat, (interval, capacity) in zip(tats, cells, strict=True):
            retry = max(retry, tat + interval - now - capacity)
        allowed = retry <= 0
        results = []
        for check, tat, (interval, capacity) in zip(checks, tats, cells, strict=True):
            if allowed:
                tat += interval
                self._tat[(check.subject, check.rule)] = tat
            results.append(
                CheckResult(
                    remaining=max(0, (capacity - (tat - now)) // interval),
                    reset_after=(tat - now) / 1e6,
                )
            )
        return Verdict(allowed=allowed, results=tuple(results), retry_after=max(0, retry) / 1e6)

    def _sweep(self, now: int) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}

    async def close(self) -> None:
        self._tat.clear()
