"""Redis store: GCRA in one Lua script, exact across every gateway process.

Concurrent requests are coalesced: every check made in one turn of the event
loop goes to Redis in one pipeline, so a busy process pays one round trip
per batch, not per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.config import RedisConfig
from gateway.ratelimit.store import (
    Check,
    CheckResult,
    StoreUnavailable,
    Verdict,
    cell_micros,
)

GCRA_SCRIPT = resources.files("gateway.ratelimit").joinpath("gcra.lua").read_text()

_Pending = tuple[Sequence[Check], "asyncio.Future[Verdict]"]


def _verdict(reply: list[int], checks: Sequence[Check]) -> Verdict:
    results = tuple(
        CheckResult(remaining=int(reply[2 + 2 * i]), reset_after=int(reply[3 + 2 * i]) / 1e6)
        for i in range(len(checks))
    )
    return Verdict(allowed=reply[0] == 1, results=results, retry_after=int(reply[1]) / 1e6)


class RedisStore:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.client: aioredis.Redis = aioredis.from_url(
            config.url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
        )
        self._script = self.client.register_script(GCRA_SCRIPT)
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()

    def key(self, check: Check) -> str:
        # The braces are a Redis Cluster hash tag: a caller's keys share a slot.
        return f"{self.config.key_prefix}:rl:{{{check.subject}}}:{check.rule}"

    async def acquire(self, checks: Sequence[Check]) -> Verdict:
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._pending.append((checks, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            # The pipeline's context returns its connection to the pool even
            # when the timeout cancels it half-way.
            async with (
                asyncio.timeout(self.config.timeout),
                self.client.pipeline(transaction=False) as pipe,
            ):
                for checks, _ in batch:
                    args: list[Any] = []
                    for check in checks:
                        args += cell_micros(check)
                    await self._script(keys=[self.key(c) for c in checks], args=args, client=pipe)
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, TimeoutError) as exc:
            error = StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (checks, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(StoreUnavailable(f"redis: {reply}"))
            else:
                future.set_result(_verdict(reply, checks))

    async def close(self) -> None:
        await self.client.aclose()
