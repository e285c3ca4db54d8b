"""Redis store: the sliding-window log in one Lua script, exact across processes.

Concurrent requests are coalesced: every request decided in one turn of the
event loop goes to Redis in one script call, so a busy process pays one
round trip and one command per batch, not per request. The script decides
the batch's requests one after another, each atomically.

Keys are hash-tagged by subject (``igw:window:{project:p1}:rule``). On a
standalone or Sentinel-managed Redis the batch is one ``EVALSHA``. On a
Redis Cluster a script may only touch one slot, so the batch's checks are
grouped by subject, one script call per group, all in one pipeline (still
one round trip); each group is atomic, and when one group refuses a request
after another admitted it, the admitted entries are taken back. Between the
two a concurrent request may see them counted, which can only refuse it
early, never admit it beyond the limit.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from functools import partial
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError

from gateway.config import RedisConfig
from gateway.ratelimit.redis_bytes import RedisByteWindows
from gateway.ratelimit.redis_scripts import ScriptRunner, lua_script, script_failure
from gateway.ratelimit.store import (
    LimitCheck,
    LimitCheckResult,
    StoreFault,
    StoreUnavailable,
    Verdict,
)
from gateway.redis_connect import (
    REDIS_FAILURES,
    RedisClient,
    connect,
    is_cluster,
    node_locator,
)
from gateway.redis_pipe import RedisPipe, RespConnection, pack_command

log = logging.getLogger("gateway.ratelimit")

SLIDING_WINDOW = lua_script("sliding_window.lua")
_US = 1_000_000
_PING = pack_command("PING")
# The script's reply for a request whose key is of the wrong type.
_FAULT = -1
# Redis runs nothing else while a script runs: a batch this large goes out
# as it stands and the next request starts another, so that a burst becomes
# several short script calls (in flight together), not one long one.
MAX_BATCH_REQUESTS = 256

# A request waiting for its batch's reply, and how many checks it has.
_Waiter = tuple[asyncio.Future[Verdict], int]
# A request waiting for a Cluster batch: its future, keys, checks and count flag.
_ClusterRequest = tuple[asyncio.Future[Verdict], list[str], Sequence[LimitCheck], bool]


class _Batch:
    """One loop turn's requests, already in the script's argument layout."""

    __slots__ = ("keys", "loop", "numbers", "waiters")

    def __init__(self) -> None:
        # The loop of the turn the batch is gathered in, known once it has a
        # request (asking for the running loop is a system call on Python 3.11).
        self.loop: asyncio.AbstractEventLoop | None = None
        self.keys: list[str] = []
        # 0 first: a standalone batch needs no members back.
        self.numbers: list[int] = [0]
        self.waiters: list[_Waiter] = []


def _packed(numbers: list[int]) -> bytes:
    """The script's ARGV[1]: every number in one argument, 64-bit little-endian."""
    return struct.pack(f"<{len(numbers)}q", *numbers)


def _fault(message: Any) -> StoreFault:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return StoreFault(f"redis: {text}")


def _expire(connection: RespConnection, reply: asyncio.Future[Any]) -> None:
    """A batch's timeout: its requests stop waiting, and the connection is not
    used again, so a late reply can reach no one (as RedisPipe does)."""
    if not reply.done():
        reply.cancel()
        connection.close()


class RedisStore:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.client: RedisClient = connect(config)
        self._by_slot = is_cluster(self.client)
        # A standalone or Sentinel-managed node is asked over the lean pipe;
        # a Cluster's slots and redirections stay redis-py's business.
        self._pipe = None if self._by_slot else RedisPipe(node_locator(config, self.client))
        # The braces are a Redis Cluster hash tag: a subject's keys share a
        # slot. "window", not the GCRA store's "rl", so that keys left by a
        # gateway of the previous version are ignored, not a WRONGTYPE error.
        self._key_head = f"{config.key_prefix}:window:{{"
        self._batch = _Batch()
        self._cluster_batch: list[_ClusterRequest] = []
        self._scripts = ScriptRunner(self.client, self._pipe)
        self.byte_windows = RedisByteWindows(config, self._scripts, by_slot=self._by_slot)
        self._flush_scheduled = False
        # Batches sent and not answered yet (their tasks or their replies).
        self._in_flight: set[asyncio.Future[Any]] = set()

    def key(self, check: LimitCheck) -> str:
        return f"{self._key_head}{check.subject}}}:{check.rule}"

    async def acquire(self, checks: Sequence[LimitCheck]) -> Verdict:
        return await self._decide(checks, count=True)

    async def peek(self, checks: Sequence[LimitCheck]) -> Verdict:
        return await self._decide(checks, count=False)

    async def _decide(self, checks: Sequence[LimitCheck], *, count: bool) -> Verdict:
        batch = self._batch
        # A batch with requests was gathered in this turn of this loop: its
        # flush, scheduled with the first of them, has not run yet.
        loop = batch.loop if batch.waiters else None
        if loop is None:
            loop = batch.loop = asyncio.get_running_loop()
        future: asyncio.Future[Verdict] = loop.create_future()
        if self._by_slot:
            self._cluster_batch.append((future, [self.key(c) for c in checks], checks, count))
        else:
            head = self._key_head
            append_key, numbers = batch.keys.append, batch.numbers
            numbers += (1 if count else 0, len(checks))
            for subject, rule, limit, period, enforced in checks:
                append_key(f"{head}{subject}}}:{rule}")
                numbers += (limit, int(period * _US), 1 if enforced else 0)
            batch.waiters.append((future, len(checks)))
            if len(batch.waiters) >= MAX_BATCH_REQUESTS:
                self._batch = _Batch()
                loop.call_soon(self._dispatch, batch)
        if not self._flush_scheduled:
            # The flush runs in the loop's next turn: every request decided
            # in this one joins the batch first.
            self._flush_scheduled = True
            if self._by_slot:
                self._spawn(self._flush_cluster(), loop)
            else:
                loop.call_soon(self._flush)
        return await future

    def _spawn(
        self, coroutine: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        task = (loop or asyncio.get_running_loop()).create_task(coroutine)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._batch = self._batch, _Batch()
        if batch.waiters:
            self._dispatch(batch)

    def _dispatch(self, batch: _Batch) -> None:
        """Send ``batch`` at once on the open connection, its reply handled by
        a callback: no task, no coroutine frames, no timeout context for the
        common case, once per loop turn. With no open connection, or when the
        reply asks for more (a stale connection, a script Redis forgot), the
        task of ``_send`` does what RedisPipe.call and the script runner would have
        done, within what is left of the same timeout."""
        assert self._pipe is not None
        assert batch.loop is not None
        loop = batch.loop
        deadline = loop.time() + self.config.timeout
        command = pack_command(
            "EVALSHA", SLIDING_WINDOW.sha, len(batch.keys), *batch.keys, _packed(batch.numbers)
        )
        sent = self._pipe.send_now(command)
        if sent is None:
            self._spawn(self._send(batch, deadline), loop)
            return
        connection, reply = sent
        timer = loop.call_at(deadline, _expire, connection, reply)
        self._in_flight.add(reply)
        reply.add_done_callback(self._in_flight.discard)
        reply.add_done_callback(partial(self._answered, batch, connection, timer, deadline))

    def _answered(
        self,
        batch: _Batch,
        connection: RespConnection,
        timer: asyncio.TimerHandle,
        deadline: float,
        reply: asyncio.Future[Any],
    ) -> None:
        timer.cancel()
        if reply.cancelled():
            # The timeout, as asyncio.timeout would have raised it.
            self._fail([f for f, _ in batch.waiters], script_failure(TimeoutError()))
            return
        error = reply.exception()
        if error is None:
            self._deliver(batch, reply.result())
        elif isinstance(error, RedisConnectionError | ReadOnlyError | NoScriptError):
            if isinstance(error, ReadOnlyError):
                # A master Sentinel demoted: the next connection asks again.
                connection.close()
            self._spawn(
                self._send(batch, deadline, load_first=isinstance(error, NoScriptError)),
                batch.loop,
            )
        elif isinstance(error, REDIS_FAILURES):
            self._fail([f for f, _ in batch.waiters], script_failure(error))
        else:
            self._fail([f for f, _ in batch.waiters], error)

    async def _send(self, batch: _Batch, deadline: float, *, load_first: bool = False) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                reply = await self._scripts.call(
                    SLIDING_WINDOW, batch.keys, [_packed(batch.numbers)], load_first=load_first
                )
        except REDIS_FAILURES as exc:
            self._fail([f for f, _ in batch.waiters], script_failure(exc))
            return
        except Exception as exc:
            # A bug, not an outage: the requests get a 500 with the traceback
            # in the log, never a hang.
            self._fail([f for f, _ in batch.waiters], exc)
            return
        self._deliver(batch, reply)

    @staticmethod
    def _deliver(batch: _Batch, reply: Any) -> None:
        # One pass over the flat reply: per request its status and wait, then
        # three numbers per check.
        at = 0
        for future, n in batch.waiters:
            status = reply[at]
            if status == _FAULT:
                if not future.done():
                    future.set_exception(_fault(reply[at + 1]))
                at += 2
                continue
            end = at + 2 + 3 * n
            if not future.done():
                results = tuple(
                    [
                        LimitCheckResult(reply[i], reply[i + 1] / _US, reply[i + 2] / _US)
                        for i in range(at + 2, end, 3)
                    ]
                )
                future.set_result(Verdict(status == 1, results, reply[at + 1] / _US))
            at = end

    @staticmethod
    def _fail(futures: list[asyncio.Future[Verdict]], error: BaseException) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(error)

    # Redis Cluster: one script per subject, all in one pipeline.

    async def _flush_cluster(self) -> None:
        self._flush_scheduled = False
        requests, self._cluster_batch = self._cluster_batch, []
        # subject -> (keys, numbers, and for each request part: request index and
        # the positions of its checks in the request)
        groups: dict[str, tuple[list[str], list[int], list[tuple[int, list[int]]]]] = {}
        for r, (_, keys, checks, count) in enumerate(requests):
            by_subject: dict[str, list[int]] = {}
            for i, check in enumerate(checks):
                by_subject.setdefault(check.subject, []).append(i)
            for subject, positions in by_subject.items():
                group = groups.get(subject)
                if group is None:
                    # 1 first: members back, to take admissions back.
                    group = groups[subject] = ([], [1], [])
                group_keys, numbers, parts = group
                numbers += (1 if count else 0, len(positions))
                for i in positions:
                    _, _, limit, period, enforced = checks[i]
                    group_keys.append(keys[i])
                    numbers += (limit, int(period * _US), 1 if enforced else 0)
                parts.append((r, positions))
        calls = list(groups.values())
        futures = [future for future, _, _, _ in requests]
        try:
            async with asyncio.timeout(self.config.timeout):
                replies = await self._scripts.run(
                    SLIDING_WINDOW, [(keys, [_packed(numbers)]) for keys, numbers, _ in calls]
                )
        except REDIS_FAILURES as exc:
            self._fail(futures, script_failure(exc))
            return
        except Exception as exc:
            self._fail(futures, exc)
            return
        outcomes = [_Outcome(len(checks)) for _, _, checks, _ in requests]
        unavailable: Exception | None = None
        for (_, _, call_parts), reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):
                failure = script_failure(reply)
                if isinstance(failure, StoreUnavailable):
                    # One round trip, one failure for the breaker.
                    failure = unavailable = unavailable or failure
                for request, _positions in call_parts:
                    outcomes[request].error = outcomes[request].error or failure
                continue
            at = 0
            for request, positions in call_parts:
                at = outcomes[request].take(reply, at, positions)
        admitted: list[tuple[str, bytes]] = []
        for (future, keys, _, _), outcome in zip(requests, outcomes, strict=True):
            taken = outcome.admitted(keys)
            admitted += taken
            if not future.done():
                if outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    future.set_result(outcome.verdict())
        if admitted:
            self._spawn(self._take_back(admitted))

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
                if self._pipe is not None:
                    await self._pipe.call(_PING)
                else:
                    await self.client.ping()
        except REDIS_FAILURES as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        # Every flush ends within the timeout; let waiting requests have
        # their answer before the connections go, but never hold shutdown.
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.config.timeout)
        if self._pipe is not None:
            await self._pipe.close()
        with suppress(*REDIS_FAILURES):
            async with asyncio.timeout(self.config.timeout):
                await self.client.aclose()


class _Outcome:
    """One request's verdict on a Cluster, assembled from its subjects' scripts."""

    __slots__ = ("allowed", "error", "members", "results", "retry_after")

    def __init__(self, n: int) -> None:
        self.allowed = True
        self.retry_after = 0
        self.results: list[tuple[int, int, int]] = [(0, 0, 0)] * n
        self.members: list[bytes] = [b""] * n
        self.error: Exception | None = None

    def take(self, reply: list[Any], at: int, positions: list[int]) -> int:
        """Read this request's part of a script's reply from ``at``; return
        where the next part starts."""
        if reply[at] == _FAULT:
            self.error = self.error or _fault(reply[at + 1])
            return at + 2
        self.allowed = self.allowed and reply[at] == 1
        self.retry_after = max(self.retry_after, reply[at + 1])
        at += 2
        for i in positions:
            self.results[i] = (reply[at], reply[at + 1], reply[at + 2])
            self.members[i] = reply[at + 3]
            at += 4
        return at

    def admitted(self, keys: list[str]) -> list[tuple[str, bytes]]:
        """What must be taken back: the admissions of a request that a
        subject's script counted while another refused it (or failed)."""
        if self.allowed and self.error is None:
            return []
        taken = [(k, m) for k, m in zip(keys, self.members, strict=True) if m]
        # A taken-back admission no longer counts against its limit.
        self.results = [
            (remaining + 1, reset, wait) if member else (remaining, reset, wait)
            for (remaining, reset, wait), member in zip(self.results, self.members, strict=True)
        ]
        return taken

    def verdict(self) -> Verdict:
        results = tuple(
            LimitCheckResult(remaining, reset / _US, wait / _US)
            for remaining, reset, wait in self.results
        )
        return Verdict(self.allowed, results, self.retry_after / _US)
