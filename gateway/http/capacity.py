"""Which connection gives way when a worker is full, and how many unfinished
request heads one client address may hold.

A connection that is waiting for a request head (it has sent part of one,
or nothing yet, or it sits idle between requests) costs its client next to
nothing to hold: 300 half-sent heads from one host would fill a worker's
``listen.max_connections`` and lock every other client out until
``listen.header_read_timeout`` cut them. So at the cap the connection that
has waited longest for a head is closed to make room (nginx reuses idle
keep-alive connections the same way), and only when every connection is in
the middle of a request is a newcomer refused. And one address may hold at
most ``listen.max_unfinished_heads_per_client`` heads part-way sent: past
that its own oldest is closed, so one host cannot even reach the cap.

Neither costs a request anything: the eviction order is worked out only at
the cap, from state aiohttp keeps anyway (when each connection began
waiting), and a head is counted per client only when it arrives in pieces,
which a request sent in one write never does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Evictable(Protocol):
    def waiting_since(self) -> float | None:
        """Loop time it began waiting for a request head; None while in a request or closed."""

    def evict(self) -> None:
        """Close the connection to make room."""


Connection = TypeVar("Connection", bound=Evictable)


# A scan that found every connection inside a request is not repeated for
# this many seconds: a worker refusing a flood must not scan its connections
# once a refusal (some 130 us for a thousand).
RESCAN_AFTER_EMPTY = 0.01


class OldestWaiting(Generic[Connection]):
    """The connection that has waited longest for a request head.

    One scan of the open connections, sorted, serves many evictions: a
    connection that begins waiting after the scan has waited less than any
    found by it, so the sorted list stays the right order to evict in; an
    entry that has served a request since (or closed) is skipped.
    """

    def __init__(self) -> None:
        self._order: deque[tuple[float, Connection]] = deque()
        self._no_scan_until = -math.inf

    def pop(self, connections: Iterable[Connection], now: float) -> Connection | None:
        for fresh_scan in (False, True):
            if fresh_scan:
                if now < self._no_scan_until:
                    return None
                waiting = ((c.waiting_since(), c) for c in connections)
                self._order = deque(
                    sorted(((s, c) for s, c in waiting if s is not None), key=_since)
                )
                if not self._order:
                    self._no_scan_until = now + RESCAN_AFTER_EMPTY
            while self._order:
                since, connection = self._order.popleft()
                if connection.waiting_since() == since:
                    return connection
        return None


def _since(entry: tuple[float, object]) -> float:
    return entry[0]


class UnfinishedHeads(Generic[Connection]):
    """Connections part-way through a request head, by client address, oldest first."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._by_client: dict[str, dict[Connection, None]] = {}

    def add(self, client: str, connection: Connection) -> Connection | None:
        """Count ``connection``'s head; the client's oldest to close if it is now over."""
        heads = self._by_client.setdefault(client, {})
        heads[connection] = None
        if len(heads) > self.per_client:
            return next(iter(heads))
        return None

    def remove(self, client: str, connection: Connection) -> None:
        heads = self._by_client.get(client)
        if heads is not None:
            heads.pop(connection, None)
            if not heads:
                del self._by_client[client]

    def count(self, client: str) -> int:
        return len(self._by_client.get(client, ()))
