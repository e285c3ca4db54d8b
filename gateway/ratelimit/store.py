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

A byte budget (``ByteWindows``) is the same log over bytes: a reservation of
``n`` bytes is admitted when the bytes reserved in the ``period`` before it,
plus ``n``, are at most ``limit``. Bytes are reserved before they move and
what did not move is refunded (taken out of its entry), so the budget counts
what moved. Reservations within a granule (a thousandth of the period) of
the newest entry join it and leave the window with the latest of them:
never early, at most a granule late, and a budget holds about a thousand
entries however small the bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

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


class ByteHold(NamedTuple):
    """Bytes one reservation holds in one budget: what a refund names."""

    check: LimitCheck
    # The store's name for the entry holding them.
    entry: str
    amount: int


class ByteVerdict(NamedTuple):
    allowed: bool
    # Bytes reserved: the amount, or (reserving "up to" it) as much of it as
    # every enforced budget holds; 0 when refused or only looked at.
    granted: int
    results: tuple[LimitCheckResult, ...]
    # Seconds until every enforced budget holds the amount; inf when one
    # never will (the amount is more than its whole budget); 0 when allowed.
    retry_after: float
    holds: tuple[ByteHold, ...]


# How a reservation takes its amount: all of it, as much of it as there is
# (at least a byte), or none (only look).
ReserveMode = Literal["all", "upto", "peek"]
# A budget's entries are merged within this fraction of its period.
GRANULES_PER_PERIOD = 1000


def granule(period: float) -> float:
    return period / GRANULES_PER_PERIOD


class ByteWindows(Protocol):
    async def reserve(
        self, checks: Sequence[LimitCheck], amount: int, mode: ReserveMode
    ) -> ByteVerdict:
        """Take ``amount`` bytes (as ``mode`` says) from every budget, or none."""
        ...

    async def refund(self, holds: Sequence[ByteHold]) -> int:
        """Give back each hold's ``amount`` (at most what its entry holds);
        the bytes given back."""
        ...


class StoreUnavailable(Exception):
    """The store could not decide (connection refused, timeout, …)."""


class StoreFault(Exception):
    """The store answered with an error: a bug or a corrupt key, not an outage."""


class LimitStore(Protocol):
    @property
    def byte_windows(self) -> ByteWindows:
        """The byte budgets, kept where the request windows are."""
        ...

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
