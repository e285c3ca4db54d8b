"""Per-tenant limit overrides, kept in Redis so that every replica shares them.

One hash (``igw:overrides``, field ``rule|project``, value the limit) holds
them all. Each gateway re-reads it in the background every
``redis.overrides_refresh`` seconds and the limiter looks values up in that
copy, so a change reaches every replica within the refresh interval without
a restart and without a second round trip on the request path. Polling
rather than pub/sub: a replica that was disconnected when a change was
published would otherwise keep a stale limit until restarted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress

from gateway.config import RedisConfig
from gateway.ratelimit.background import stop_task
from gateway.ratelimit.redis_connect import REDIS_FAILURES, RedisClient

log = logging.getLogger("gateway.ratelimit")

# Rule names cannot contain it (config.RateLimitRule.name), so it separates.
_SEPARATOR = "|"

OverrideTable = Mapping[tuple[str, str], int]


class RedisOverrides:
    """Reads and writes the override hash; used by the CLI and the refresher."""

    def __init__(self, client: RedisClient, config: RedisConfig) -> None:
        self.client = client
        self.key = f"{config.key_prefix}:overrides"

    async def set(self, project: str, rule: str, value: int) -> None:
        await self.client.hset(self.key, f"{rule}{_SEPARATOR}{project}", value)

    async def clear(self, project: str, rule: str | None = None) -> int:
        table = await self.load()
        fields = [f"{r}{_SEPARATOR}{p}" for p, r in table if p == project and rule in (None, r)]
        return int(await self.client.hdel(self.key, *fields)) if fields else 0

    async def load(self) -> dict[tuple[str, str], int]:
        raw: dict[bytes | str, bytes | str] = await self.client.hgetall(self.key)
        table = {}
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            rule, _, project = name.partition(_SEPARATOR)
            table[(project, rule)] = int(value)
        return table


class OverrideRefresher:
    """Keeps a copy of the override table fresh in the background."""

    def __init__(self, source: RedisOverrides, interval: float, timeout: float) -> None:
        self.source = source
        self.interval = interval
        self.timeout = timeout
        self.table: OverrideTable = {}
        self.refreshed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.timeout):
                    self.table = await self.source.load()
                self.refreshed.set()
            except (*REDIS_FAILURES, ValueError) as exc:
                # Keep the last known table: Redis being down is the
                # limiter's failure mode to handle, not a reason to forget.
                log.debug("could not refresh limit overrides: %s", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task, self._stopping, self.timeout)
