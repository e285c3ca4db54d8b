"""The interface between the limiter and where counters live.

Every store runs the same sliding-window log: a limit of ``limit`` per
``period`` admits a request when fewer than ``limit`` requests were admitted
in the ``period`` seconds before it. It is exact (never more than ``limit``
in any window of that length, wherever the window starts), so there is no
window edge to burst across; it keeps one timestamp per admitted request
still inside the window, so memory is O(limit) per caller and rule.

A request's checks are decided together: all pass and all are counted, or
none is counted. A refused request costs the caller nothing. A check that is
not ``enforced`` (a shadow rule) is decided and reported but never refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

# Tuples, not dataclasses: a few are made for every request, and a frozen
# dataclass costs about twice as much to build.


class LimitCheck(NamedTuple):
    # Who is counted ("project:p1", "global") and by which rule; the store
    # makes the key.
    subject: str
    rule: str
    limit: int
    period: float
    enforced: bool = True


class LimitCheckResult(NamedTuple):
    remaining: int
    # Seconds until the oldest counted request leaves the window, that is
    # until ``remaining`` next grows; 0 when nothing is counted.
    reset_after: float
    # Seconds until this check would admit; 0 when it admits now.
    retry_after: float = 0.0


class Verdict(NamedTuple):
    allowed: bool
    results: tuple[LimitCheckResult, ...]
    # Seconds until every refusing enforced check would admit; 0 when allowed.
    retry_after: float


class StoreUnavailable(Exception):
    """The store could not decide (connection refused, timeout, …)."""


class StoreFault(Exception):
    """The store answered with an error: a bug or a corrupt key, not an outage."""


class LimitStore(Protocol):
    async def acquire(self, checks: Sequence[LimitCheck]) -> Verdict:
        """Decide and, when allowed, count the request against every check."""
        ...

    async def peek(self, checks: Sequence[LimitCheck]) -> Verdict:
        """Decide as ``acquire`` would, counting nothing."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise StoreUnavailable otherwise."""
        ...

    async def close(self) -> None: ...
