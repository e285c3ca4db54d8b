"""Redis store: the sliding-window log in one Lua script, exact across processes.

Concurrent requests are coalesced: every check made in one turn of the event
loop goes to Redis in one pipeline, so a busy process pays one round trip
per batch, not per request.

Keys are hash-tagged by subject (``igw:window:{project:p1}:rule``). On a
standalone or Sentinel-managed Redis one script call decides all of a
request's checks atomically. On a Redis Cluster a script may only touch one
slot, so checks are grouped by subject, one script call per group (all in
the same pipeline, so still one round trip); each group is atomic, and when
one group refuses after another admitted, the admitted entries are taken
back. Between the two a concurrent request may see them counted, which can
only refuse it early, never admit it beyond the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from importlib import resources
from itertools import groupby
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from gateway.config import RedisConfig
from gateway.ratelimit.redis_connect import REDIS_FAILURES, RedisClient, connect, is_cluster
from gateway.ratelimit.store import (
    LimitCheck,
    LimitCheckResult,
    StoreFault,
    StoreUnavailable,
    Verdict,
)

log = logging.getLogger("gateway.ratelimit")

SLIDING_WINDOW_SCRIPT = (
    resources.files("gateway.ratelimit").joinpath("sliding_window.lua").read_text()
)
_SCRIPT_SHA = hashlib.sha1(SLIDING_WINDOW_SCRIPT.encode()).hexdigest()
_FIELDS_PER_CHECK = 4


@dataclass(frozen=True, slots=True)
class _Call:
    """One script call: checks of one slot."""

    keys: list[str]
    args: list[Any]


@dataclass(slots=True)
class _Pending:
    calls: list[_Call]
    future: asyncio.Future[list[Any]]


def _group_result(reply: list[Any]) -> tuple[bool, float, list[LimitCheckResult], list[bytes]]:
    results, members = [], []
    for i in range(2, len(reply), _FIELDS_PER_CHECK):
        remaining, reset, wait, member = reply[i : i + _FIELDS_PER_CHECK]
        results.append(LimitCheckResult(int(remaining), int(reset) / 1e6, int(wait) / 1e6))
        members.append(member)
    return reply[0] == 1, int(reply[1]) / 1e6, results, members


def _is_script_error(reply: Exception) -> bool:
    """Redis ran the script and it failed (a bug, or a key of the wrong type),
    as opposed to Redis being unable to run it (read-only replica, OOM, …)."""
    if isinstance(reply, NoScriptError) or not isinstance(reply, ResponseError):
        return False
    return "script" in str(reply).lower()


class RedisStore:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.client: RedisClient = connect(config)
        self._by_slot = is_cluster(self.client)
        self._pending: list[_Pending] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()

    def key(self, check: LimitCheck) -> str:
        # The braces are a Redis Cluster hash tag: a subject's keys share a
        # slot. "window", not the GCRA store's "rl", so that keys left by a
        # gateway of the previous version are ignored, not a WRONGTYPE error.
        return f"{self.config.key_prefix}:window:{{{check.subject}}}:{check.rule}"

    def _calls(self, checks: Sequence[LimitCheck], count: bool) -> list[_Call]:
        groups = (
            [
                list(g)
                for _, g in groupby(
                    sorted(checks, key=lambda c: c.subject), key=lambda c: c.subject
                )
            ]
            if self._by_slot
            else [list(checks)]
        )
        calls = []
        for group in groups:
            args: list[Any] = ["1" if count else "0"]
            for check in group:
                args += [check.limit, int(check.period * 1_000_000), int(check.enforced)]
            calls.append(_Call([self.key(c) for c in group], args))
        return calls

    async def acquire(self, checks: Sequence[LimitCheck]) -> Verdict:
        return await self._decide(checks, count=True)

    async def peek(self, checks: Sequence[LimitCheck]) -> Verdict:
        return await self._decide(checks, count=False)

    async def _decide(self, checks: Sequence[LimitCheck], *, count: bool) -> Verdict:
        calls = self._calls(checks, count)
        loop = asyncio.get_running_loop()
        pending = _Pending(calls, loop.create_future())
        self._pending.append(pending)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        replies = await pending.future
        return self._verdict(checks, calls, replies)

    def _verdict(
        self, checks: Sequence[LimitCheck], calls: list[_Call], replies: list[Any]
    ) -> Verdict:
        if len(calls) == 1:
            # One slot, one atomic script: its results are already in order.
            allowed, retry_after, results, _ = _group_result(replies[0])
            return Verdict(allowed=allowed, results=tuple(results), retry_after=retry_after)
        by_key: dict[str, LimitCheckResult] = {}
        admitted: list[tuple[str, bytes]] = []
        allowed, retry_after = True, 0.0
        for call, reply in zip(calls, replies, strict=True):
            group_allowed, group_retry, results, members = _group_result(reply)
            allowed = allowed and group_allowed
            retry_after = max(retry_after, group_retry)
            by_key.update(zip(call.keys, results, strict=True))
            admitted += [(k, m) for k, m in zip(call.keys, members, strict=True) if m]
        if not allowed and admitted:
            self._spawn(self._take_back(admitted))
            taken = {k for k, _ in admitted}
            by_key = {
                k: LimitCheckResult(r.remaining + 1, r.reset_after, r.retry_after)
                if k in taken
                else r
                for k, r in by_key.items()
            }
        ordered = tuple(by_key[self.key(c)] for c in checks)
        return Verdict(allowed=allowed, results=ordered, retry_after=retry_after)

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        self._spawn(self._flush(batch))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        calls = [call for pending in batch for call in pending.calls]
        try:
            async with asyncio.timeout(self.config.timeout):
                replies = await self._run(calls)
        except REDIS_FAILURES as exc:
            self._fail(batch, StoreUnavailable(f"redis: {type(exc).__name__}: {exc}"))
            return
        except Exception as exc:
            # A bug, not an outage: the requests get a 500 with the traceback
            # in the log, never a hang.
            self._fail(batch, exc)
            return
        at = 0
        # One round trip, one failure for the breaker, however many requests.
        unavailable: StoreUnavailable | None = None
        for pending in batch:
            mine, at = replies[at : at + len(pending.calls)], at + len(pending.calls)
            if pending.future.done():
                continue
            failure = next((r for r in mine if isinstance(r, Exception)), None)
            if failure is None:
                pending.future.set_result(mine)
            elif _is_script_error(failure):
                pending.future.set_exception(StoreFault(f"redis: {failure}"))
            else:
                unavailable = unavailable or StoreUnavailable(f"redis: {failure}")
                pending.future.set_exception(unavailable)

    @staticmethod
    def _fail(batch: list[_Pending], error: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    async def _run(self, calls: list[_Call]) -> list[Any]:
        replies = await self._pipeline(calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # A restarted or failed-over Redis has forgotten the script: load
            # it and run again only the calls that did not run.
            await self.client.script_load(SLIDING_WINDOW_SCRIPT)
            for i, reply in zip(
                missing, await self._pipeline([calls[i] for i in missing]), strict=True
            ):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        # The pipeline's context hands its connection back to the pool even
        # when the caller's timeout cancels it half-way.
        async with self.client.pipeline(transaction=False) as pipe:
            for call in calls:
                # Not pipe.evalsha: redis-py's cluster pipeline refuses that
                # method by name, though it routes the command by its keys.
                pipe.execute_command("EVALSHA", _SCRIPT_SHA, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))

    async def _take_back(self, admitted: list[tuple[str, bytes]]) -> None:
        try:
            async with asyncio.timeout(self.config.timeout):
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, member in admitted:
                        pipe.zrem(key, member)
                    await pipe.execute(raise_on_error=False)
        except REDIS_FAILURES as exc:
            # The entries expire with their window; until then they count.
            log.warning("could not take back %d admissions: %s", len(admitted), exc)

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.config.timeout):
                await self.client.ping()
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        # Every flush ends within the timeout; let waiting requests have
        # their answer before the connections go, but never hold shutdown.
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.config.timeout)
        with suppress(*REDIS_FAILURES):
            async with asyncio.timeout(self.config.timeout):
                await self.client.aclose()
