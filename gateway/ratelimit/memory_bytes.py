"""In-process byte budgets: the sliding-window log of reserved bytes. Exact for one process.

The same algorithm as ``byte_window.lua``; see ``store.py`` for what a
budget means.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.ratelimit.store import (
    ByteHold,
    ByteVerdict,
    LimitCheck,
    LimitCheckResult,
    ReserveMode,
    granule,
)
from gateway.ratelimit.window_tables import WindowTables


@dataclass(slots=True)
class _Entry:
    name: str
    at: float
    size: int


@dataclass(slots=True)
class _Budget:
    period: float
    # Oldest first; only the newest entry ever moves (a merge), to the present.
    entries: deque[_Entry] = field(default_factory=deque)
    by_name: dict[str, _Entry] = field(default_factory=dict)
    used: int = 0

    def trim(self, now: float) -> None:
        while self.entries and self.entries[0].at <= now - self.period:
            gone = self.entries.popleft()
            del self.by_name[gone.name]
            self.used -= gone.size

    def wait_for(self, need: int, limit: int, now: float) -> float:
        """Seconds until ``need`` more bytes fit: 0 now, inf never."""
        if self.used + need <= limit:
            return 0.0
        if need > limit:
            return math.inf
        excess, freed = self.used + need - limit, 0
        for entry in self.entries:
            freed += entry.size
            if freed >= excess:
                return entry.at + self.period - now
        return math.inf

    def take(self, amount: int, now: float, name: str) -> str:
        newest = self.entries[-1] if self.entries else None
        if newest is not None and now - newest.at < granule(self.period):
            newest.at = max(newest.at, now)
            newest.size += amount
        else:
            newest = _Entry(name, now, amount)
            self.entries.append(newest)
            self.by_name[name] = newest
        self.used += amount
        return newest.name

    def give_back(self, name: str, amount: int, now: float) -> int:
        entry = self.by_name.get(name)
        if entry is None or entry.at <= now - self.period:
            return 0
        back = min(entry.size, amount)
        entry.size -= back
        self.used -= back
        if entry.size == 0:
            self.entries.remove(entry)
            del self.by_name[name]
        return back

    def newest(self) -> float | None:
        return self.entries[-1].at if self.entries else None

    def reset_after(self, now: float) -> float:
        return self.entries[0].at + self.period - now if self.entries else 0.0


class MemoryByteWindows:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._budgets = WindowTables(_Budget)
        self._names = itertools.count()

    def __len__(self) -> int:
        return len(self._budgets)

    async def reserve(
        self, checks: Sequence[LimitCheck], amount: int, mode: ReserveMode
    ) -> ByteVerdict:
        return self.reserve_now(checks, amount, mode)

    async def refund(self, holds: Sequence[ByteHold]) -> int:
        return self.refund_now(holds)

    def reserve_now(
        self, checks: Sequence[LimitCheck], amount: int, mode: ReserveMode
    ) -> ByteVerdict:
        now = self._clock()
        self._budgets.expire_some(now)
        budgets = [self._budgets.window(check, now) for check in checks]
        need = min(amount, 1) if mode == "upto" else amount
        pairs = list(zip(checks, budgets, strict=True))
        waits = [budget.wait_for(need, check.limit, now) for check, budget in pairs]
        rooms = [max(check.limit - budget.used, 0) for check, budget in pairs]
        enforced = [check.enforced for check in checks]
        retry_after = max((w for w, e in zip(waits, enforced, strict=True) if e), default=0.0)
        allowed = retry_after == 0.0
        granted = 0
        if allowed and mode != "peek":
            granted = amount
            if mode == "upto":
                granted = min([amount, *(r for r, e in zip(rooms, enforced, strict=True) if e)])
        name = f"{next(self._names)}"
        results, holds = [], []
        for (check, budget), wait, room in zip(pairs, waits, rooms, strict=True):
            if granted > 0:
                # A shadow budget takes what it holds of the grant.
                held = granted if check.enforced else min(granted, room)
                if held > 0:
                    holds.append(ByteHold(check, budget.take(held, now, name), held))
            results.append(
                LimitCheckResult(
                    remaining=max(check.limit - budget.used, 0),
                    reset_after=budget.reset_after(now),
                    retry_after=wait,
                )
            )
        return ByteVerdict(allowed, granted, tuple(results), retry_after, tuple(holds))

    def refund_now(self, holds: Sequence[ByteHold]) -> int:
        now = self._clock()
        back = 0
        for check, entry, amount in holds:
            budget = self._budgets.find(check)
            if budget is not None:
                back += budget.give_back(entry, amount, now)
        return back

    def clear(self) -> None:
        self._budgets.clear()
