"""The interface between the limiter and where counters live.

Every store runs GCRA (the generic cell rate algorithm): a limit of ``limit``
per ``period`` is a bucket of ``limit`` that refills one every
``period/limit``. It has no window edge, so no double burst across one, and
keeps one number (the theoretical arrival time) per key.

Time is counted in whole microseconds and the emission interval rounded up
to one, so the arithmetic is exact in both stores (Lua numbers are doubles):
a burst is exactly ``limit``, and the long-run rate errs, by under a
microsecond a cell, on the slow side.

A request's checks are decided together: all pass and all are counted, or
none is counted. A refused request costs the caller nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Check:
    # Who is counted ("project:p1") and by which rule; the store makes the key.
    subject: str
    rule: str
    limit: int
    period: float


def cell_micros(check: Check) -> tuple[int, int]:
    """The emission interval and the burst capacity, in microseconds."""
    interval = -(-round(check.period * 1_000_000) // check.limit)
    return interval, interval * check.limit


@dataclass(frozen=True, slots=True)
class CheckResult:
    remaining: int
    # Seconds until the bucket is full again.
    reset_after: float


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    results: tuple[CheckResult, ...]
    # Seconds until every refusing check would admit; 0 when allowed.
    retry_after: float


class StoreUnavailable(Exception):
    """The store could not decide (connection refused, timeout, …)."""


class LimitStore(Protocol):
    async def acquire(self, checks: Sequence[Check]) -> Verdict: ...

    async def close(self) -> None: ...
