"""Per-tenant limit overrides, kept in Redis so that every replica shares them.

One hash (``igw:overrides``, field ``rule|project``, value the limit: a
number of requests, or of bytes for a byte rule) holds them all. Each
gateway re-reads it in the background every ``redis.overrides_refresh``
seconds and the limiter looks values up in that
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

from gateway.config import MAX_BYTES, MAX_LIMIT, RedisConfig
from gateway.ratelimit.background import stop_task
from gateway.redis_connect import REDIS_FAILURES, RedisClient

log = logging.getLogger("gateway.ratelimit")

# Rule names cannot contain it (config.RateLimitRule.name), so it separates.
_SEPARATOR = "|"

OverrideTable = Mapping[tuple[str, str], int]


class RedisOverrides:
    """Reads and writes the override hash; used by the CLI and the refresher."""

    def __init__(
        self, client: RedisClient, config: RedisConfig, byte_rules: frozenset[str] = frozenset()
    ) -> None:
        self.client = client
        self.key = f"{config.key_prefix}:overrides"
        # Rules whose limit is bytes: their values are held to MAX_BYTES.
        self.byte_rules = byte_rules
        # Entries the last load left out, with (the start of) their value.
        self.refused: dict[tuple[str, str], str] = {}

    async def set(self, project: str, rule: str, value: int) -> None:
        await self.client.hset(self.key, f"{rule}{_SEPARATOR}{project}", value)

    async def clear(self, project: str, rule: str | None = None) -> int:
        # Every field of the project, refused values included.
        fields = [
            f"{r}{_SEPARATOR}{p}"
            for (p, r), _ in await self._entries()
            if p == project and rule in (None, r)
        ]
        return int(await self.client.hdel(self.key, *fields)) if fields else 0

    async def load(self) -> dict[tuple[str, str], int]:
        """The overrides whose value is a limit (1 to MAX_LIMIT requests, or to
        MAX_BYTES for a byte rule); the others are left out and recorded in
        ``refused`` (anything can write to Redis)."""
        table, refused = {}, {}
        for (project, rule), text in await self._entries():
            value = _limit(text, MAX_BYTES if rule in self.byte_rules else MAX_LIMIT)
            if value is None:
                refused[(project, rule)] = text[:32]
            else:
                table[(project, rule)] = value
        self.refused = refused
        return table

    async def _entries(self) -> list[tuple[tuple[str, str], str]]:
        raw: dict[bytes | str, bytes | str] = await self.client.hgetall(self.key)
        entries = []
        for field, value in raw.items():
            name = field.decode("utf-8", "replace") if isinstance(field, bytes) else field
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            rule, _, project = name.partition(_SEPARATOR)
            entries.append(((project, rule), text))
        return entries


def _limit(text: str, most: int) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value <= most else None


class OverrideRefresher:
    """Keeps a copy of the override table fresh in the background."""

    def __init__(self, source: RedisOverrides, interval: float, timeout: float) -> None:
        self.source = source
        self.interval = interval
        self.timeout = timeout
        self.table: OverrideTable = {}
        self.refreshed = asyncio.Event()
        # Bad entries seen (each counted and logged once while it stays) and
        # refreshes that failed for any other reason than Redis being down.
        self.refused_entries = 0
        self.unexpected_failures = 0
        self._known_refused: dict[tuple[str, str], str] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.timeout):
                    self.table = await self.source.load()
                self._note_refused(self.source.refused)
                self.refreshed.set()
            except REDIS_FAILURES as exc:
                # Keep the last known table: Redis being down is the
                # limiter's failure mode to handle, not a reason to forget.
                log.debug("could not refresh limit overrides: %s", exc)
            except Exception:
                # The loop outlives any surprise; the table stays as it was.
                self.unexpected_failures += 1
                log.exception("refreshing limit overrides failed; keeping the last table")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def _note_refused(self, refused: dict[tuple[str, str], str]) -> None:
        for (project, rule), value in refused.items():
            if self._known_refused.get((project, rule)) != value:
                self.refused_entries += 1
                most = MAX_BYTES if rule in self.source.byte_rules else MAX_LIMIT
                log.warning(
                    "ignoring the override of rule %s for project %s: %r is not a limit"
                    " from 1 to %d",
                    rule[:64],
                    project[:64],
                    value,
                    most,
                )
        self._known_refused = dict(refused)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task, self._stopping, self.timeout)
