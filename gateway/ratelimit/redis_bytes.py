"""Redis byte budgets: ``byte_window.lua``, exact across every gateway process.

A reservation is one script call: on a standalone or Sentinel-managed Redis
over the limiter's own connection, whatever its budgets' subjects. A
budget's two keys share a hash tag (``igw:bytes:{project:p1}:rule`` and
``...:rule:sizes``), so on a Redis Cluster the budgets are grouped by
subject, one script per group in one pipeline (one round trip), and when
one group refuses what another granted, the granted bytes are given back
(as the request windows take back an admission). Reserving "up to" an
amount across groups keeps the smallest grant and gives the rest back.

Reservations are not batched across requests as request decisions are: a
streamed body makes one per slice (megabytes), not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any

from gateway.config import RedisConfig
from gateway.ratelimit.redis_scripts import ScriptCall, ScriptRunner, lua_script, script_failure
from gateway.ratelimit.store import (
    ByteHold,
    ByteVerdict,
    LimitCheck,
    LimitCheckResult,
    ReserveMode,
    granule,
)
from gateway.redis_connect import REDIS_FAILURES

log = logging.getLogger("gateway.ratelimit")

BYTE_WINDOW = lua_script("byte_window.lua")
_US = 1_000_000
# The script's retry_after for an amount no wait makes room for.
_NEVER = -1
# Per budget in a reservation's reply: remaining, reset, wait, member, held.
_PER_BUDGET = 5


def _seconds(us: int) -> float:
    return math.inf if us == _NEVER else us / _US


def _text(member: Any) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)


class _Part:
    """One script call's share of a reservation: its budgets' positions and reply."""

    __slots__ = ("positions", "reply")

    def __init__(self, positions: list[int], reply: list[Any]) -> None:
        self.positions = positions
        self.reply = reply


class RedisByteWindows:
    def __init__(self, config: RedisConfig, scripts: ScriptRunner, *, by_slot: bool) -> None:
        self.config = config
        self._scripts = scripts
        self._by_slot = by_slot
        self._head = f"{config.key_prefix}:bytes:{{"

    def keys(self, check: LimitCheck) -> list[str]:
        """The budget's sorted set of entries and hash of their sizes."""
        entries = f"{self._head}{check.subject}}}:{check.rule}"
        return [entries, f"{entries}:sizes"]

    async def reserve(
        self, checks: Sequence[LimitCheck], amount: int, mode: ReserveMode
    ) -> ByteVerdict:
        groups = self._groups(checks)
        calls: list[ScriptCall] = []
        for positions in groups:
            keys: list[str] = []
            args: list[str | int | bytes] = ["reserve", amount, mode]
            for i in positions:
                check = checks[i]
                keys += self.keys(check)
                args += (
                    check.limit,
                    int(check.period * _US),
                    int(granule(check.period) * _US),
                    1 if check.enforced else 0,
                )
            calls.append((keys, args))
        replies = await self._ask(calls)
        parts = [
            _Part(positions, reply)
            for positions, reply in zip(groups, replies, strict=True)
            if not isinstance(reply, Exception)
        ]
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            await self._take_back([hold for _, hold in self._holds(checks, parts)])
            raise script_failure(failed)
        return await self._verdict(checks, parts, amount, mode)

    async def refund(self, holds: Sequence[ByteHold]) -> int:
        groups = self._groups([hold.check for hold in holds])
        calls: list[ScriptCall] = []
        for positions in groups:
            keys: list[str] = []
            args: list[str | int | bytes] = ["refund"]
            for i in positions:
                check, entry, amount = holds[i]
                keys += self.keys(check)
                args += (entry, amount, int(check.period * _US))
            calls.append((keys, args))
        replies = await self._ask(calls)
        for reply in replies:
            if isinstance(reply, Exception):
                raise script_failure(reply)
        return sum(sum(reply) for reply in replies)

    def _groups(self, checks: Sequence[LimitCheck]) -> list[list[int]]:
        """Positions of the checks each script call takes: all in one, or one
        call per subject (a Cluster slot)."""
        if not self._by_slot:
            return [list(range(len(checks)))]
        by_subject: dict[str, list[int]] = {}
        for i, check in enumerate(checks):
            by_subject.setdefault(check.subject, []).append(i)
        return list(by_subject.values())

    async def _ask(self, calls: list[ScriptCall]) -> list[Any]:
        """Each call's reply, or its error (only a Cluster's calls fail apart)."""
        try:
            async with asyncio.timeout(self.config.timeout):
                if self._by_slot:
                    return await self._scripts.run(BYTE_WINDOW, calls)
                return [await self._scripts.call(BYTE_WINDOW, *calls[0])]
        except REDIS_FAILURES as exc:
            raise script_failure(exc) from None

    async def _verdict(
        self, checks: Sequence[LimitCheck], parts: list[_Part], amount: int, mode: ReserveMode
    ) -> ByteVerdict:
        allowed = all(part.reply[0] == 1 for part in parts)
        waits = [_seconds(part.reply[2]) for part in parts]
        retry_after = 0.0 if allowed else max(waits)
        granted = min([part.reply[1] for part in parts]) if allowed else 0
        results: list[LimitCheckResult] = [LimitCheckResult(0, 0.0)] * len(checks)
        for part in parts:
            for n, i in enumerate(part.positions):
                at = 3 + n * _PER_BUDGET
                remaining, reset, wait = part.reply[at : at + 3]
                results[i] = LimitCheckResult(remaining, reset / _US, _seconds(wait))
        holds: list[ByteHold] = []
        excess: list[ByteHold] = []
        for i, hold in self._holds(checks, parts):
            # What one group took beyond what the reservation as a whole got
            # (a Cluster's groups decide apart): given back.
            if hold.amount > granted:
                excess.append(hold._replace(amount=hold.amount - granted))
                results[i] = results[i]._replace(remaining=results[i].remaining + excess[-1].amount)
                hold = hold._replace(amount=granted)
            if hold.amount:
                holds.append(hold)
        await self._take_back(excess)
        return ByteVerdict(allowed, granted, tuple(results), retry_after, tuple(holds))

    @staticmethod
    def _holds(checks: Sequence[LimitCheck], parts: list[_Part]) -> list[tuple[int, ByteHold]]:
        """Each budget's hold, by the position of its check."""
        holds = []
        for part in parts:
            for n, i in enumerate(part.positions):
                at = 3 + n * _PER_BUDGET
                member, held = part.reply[at + 3], part.reply[at + 4]
                if held:
                    holds.append((i, ByteHold(checks[i], _text(member), held)))
        return holds

    async def _take_back(self, holds: list[ByteHold]) -> None:
        if not holds:
            return
        try:
            await self.refund(holds)
        except Exception as exc:
            # The entries leave with their window; until then they count.
            log.warning("could not give back %d byte reservations: %s", len(holds), exc)
