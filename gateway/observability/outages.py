"""A dependency's outages as its callers see them, told in three kinds of log line.

A dependency (Redis, Keystone, the backend, the trace collector) that stops
answering is logged once when it starts failing, then at most once per
``interval`` with how many failures there were since, and once when it
answers again with how long it was down:

    Redis (rate limits) unavailable: Connection refused
    Redis (rate limits) still unavailable after 30.0s, 1234 failure(s) since the last line: ...
    Redis (rate limits) recovered after 41.2s down, 1502 failure(s)

so that an operator reading the log alone can tell when an outage began and
ended, and a dead dependency under load does not write a line per request.
``recovered()`` is called on every success: while the dependency is up it
only reads one attribute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Outage:
    def __init__(
        self,
        dependency: str,
        log: logging.Logger,
        interval: float = 10.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependency = dependency
        self.log = log
        self.interval = interval
        self.level = level
        self.clock = clock
        # When the current outage began; None while the dependency answers.
        self.since: float | None = None
        # Every failure and every outage, for the metrics; and the failures
        # of the current outage.
        self.count = 0
        self.outages = 0
        self._failures = 0
        self._unlogged = 0
        self._last_logged = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, detail: str, request_id: str | None = None) -> None:
        self.count += 1
        now = self.clock()
        extra = {"request_id": request_id} if request_id is not None else None
        if self.since is None:
            self.outages += 1
            self.since = self._last_logged = now
            self._failures, self._unlogged = 1, 0
            self.log.log(self.level, "%s unavailable: %s", self.dependency, detail, extra=extra)
            return
        self._failures += 1
        self._unlogged += 1
        if now - self._last_logged < self.interval:
            return
        self.log.log(
            self.level,
            "%s still unavailable after %.1fs, %d failure(s) since the last line: %s",
            self.dependency, now - self.since, self._unlogged, detail, extra=extra,
        )  # fmt: skip
        self._last_logged, self._unlogged = now, 0

    def recovered(self, detail: str | None = None) -> None:
        """The dependency answered; ``detail``, what the caller did about it,
        ends the outage's last line."""
        since = self.since
        if since is None:
            return
        self.since = None
        self.log.log(
            self.level,
            "%s recovered after %.1fs down, %d failure(s)%s",
            self.dependency, self.clock() - since, self._failures,
            "" if detail is None else f"; {detail}",
        )  # fmt: skip
