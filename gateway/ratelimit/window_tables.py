"""The in-process stores' tables of windows: one per caller and rule, idle ones dropped.

Idle windows are dropped a few at a time on each decision, so that an
unbounded set of callers cannot grow memory without bound and no decision
pays for sweeping them all: each is dropped once, so the cost per decision
is O(1) amortized, whatever the number of windows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from gateway.ratelimit.store import LimitCheck

_EXPIRE_PER_DECISION = 4


class Window(Protocol):
    period: float

    def trim(self, now: float) -> None:
        """Drop what left the window (now - period, now]."""
        ...

    def newest(self) -> float | None:
        """When the newest entry was made; None when there is none."""
        ...


W = TypeVar("W", bound=Window)


class WindowTables(Generic[W]):
    def __init__(self, make: Callable[[float], W]) -> None:
        self._make = make
        # One table per period, least recently used first: within a period,
        # the window at the front is the first to fall idle.
        self._tables: dict[float, OrderedDict[tuple[str, str], W]] = {}

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def window(self, check: LimitCheck, now: float) -> W:
        """The check's window, trimmed to ``now``."""
        table = self._tables.get(check.period)
        if table is None:
            table = self._tables[check.period] = OrderedDict()
        key = (check.subject, check.rule)
        window = table.get(key)
        if window is None:
            window = table[key] = self._make(check.period)
        else:
            table.move_to_end(key)
        window.trim(now)
        return window

    def find(self, check: LimitCheck) -> W | None:
        """The check's window if there is one, as it stands."""
        table = self._tables.get(check.period)
        return None if table is None else table.get((check.subject, check.rule))

    def expire_some(self, now: float) -> None:
        for table in self._tables.values():
            for _ in range(_EXPIRE_PER_DECISION):
                if not table:
                    break
                key, window = next(iter(table.items()))
                newest = window.newest()
                if newest is not None and newest > now - window.period:
                    break
                del table[key]

    def clear(self) -> None:
        self._tables.clear()
