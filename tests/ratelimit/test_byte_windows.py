"""Byte budgets, the same on every store: in-process, Redis, Redis Cluster.

Time passes by ageing the entries: their scores in Redis are moved back (the
script reads Redis's own clock), the in-process store's clock is moved on.
No test sleeps a period.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.cluster

from gateway.config import RedisConfig
from gateway.ratelimit.memory_bytes import MemoryByteWindows
from gateway.ratelimit.redis_bytes import RedisByteWindows
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import ByteHold, ByteWindows, LimitCheck
from tests.support.redis_servers import Cluster

HOUR = 3600.0
MiB = 1 << 20


@dataclass
class Budgets:
    """A store's byte windows, how to open another process's view of them,
    and how to let time pass for them."""

    windows: ByteWindows
    # Another gateway process on the same state (the same object in process).
    another: Callable[[], ByteWindows]
    # Ages every entry of ``check`` by ``seconds``.
    age: Callable[[LimitCheck, float], None]
    # How many entries ``check``'s budget keeps.
    entries: Callable[[LimitCheck], int]


@pytest.fixture(params=["memory", "redis", "cluster"])
async def budgets(request: pytest.FixtureRequest) -> AsyncIterator[Budgets]:
    if request.param == "memory":
        now = [1000.0]
        windows = MemoryByteWindows(clock=lambda: now[0])

        def advance(check: LimitCheck, seconds: float) -> None:
            now[0] += seconds

        yield Budgets(windows, lambda: windows, advance, _memory_entries(windows))
        return
    prefix = f"b{uuid.uuid4().hex[:8]}"
    client: Any
    if request.param == "redis":
        config = RedisConfig(url=request.getfixturevalue("redis_url"), key_prefix=prefix, timeout=2)
        client = redis.Redis.from_url(config.url or "")
    else:
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        config = RedisConfig(cluster_nodes=cluster.nodes, key_prefix=prefix, timeout=2)
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    stores = [RedisStore(config)]

    def another() -> ByteWindows:
        stores.append(RedisStore(config))
        return stores[-1].byte_windows

    first = stores[0].byte_windows
    assert isinstance(first, RedisByteWindows)

    def age(check: LimitCheck, seconds: float) -> None:
        entries = first.keys(check)[0]
        for member, score in client.zrange(entries, 0, -1, withscores=True):
            client.zadd(entries, {member: score - seconds * 1_000_000}, xx=True)

    def entries(check: LimitCheck) -> int:
        return int(client.zcard(first.keys(check)[0]))

    yield Budgets(first, another, age, entries)
    for store in stores:
        await store.close()
    client.close()


def _memory_entries(windows: MemoryByteWindows) -> Callable[[LimitCheck], int]:
    def entries(check: LimitCheck) -> int:
        budget = windows._budgets.find(check)
        return 0 if budget is None else len(budget.entries)

    return entries


def budget(rule: str = "up", limit: int = 100 * MiB, period: float = HOUR, **kw: Any) -> LimitCheck:
    return LimitCheck(kw.pop("subject", "project:p1"), rule, limit, period, **kw)


async def test_concurrent_reservers_of_several_processes_never_overdraw(budgets: Budgets) -> None:
    b = budget(limit=100 * MiB)
    processes = [budgets.windows, budgets.another(), budgets.another()]
    verdicts = await asyncio.gather(
        *(processes[i % 3].reserve([b], 7 * MiB, "all") for i in range(20))
    )
    assert sum(v.granted for v in verdicts) == 14 * 7 * MiB
    assert sum(v.allowed for v in verdicts) == 14
    refused = [v for v in verdicts if not v.allowed]
    # What is left (2 MiB) does not hold 7 MiB until the first entry leaves.
    assert all(v.results[0].remaining == 2 * MiB for v in refused)
    assert all(HOUR - 60 < v.retry_after <= HOUR for v in refused)
    assert all(v.holds == () for v in refused)


async def test_reserving_up_to_an_amount_spends_the_budget_to_the_byte(budgets: Budgets) -> None:
    b = budget(limit=100 * MiB)
    processes = [budgets.windows, budgets.another()]
    verdicts = await asyncio.gather(
        *(processes[i % 2].reserve([b], 7 * MiB, "upto") for i in range(20))
    )
    assert sum(v.granted for v in verdicts) == 100 * MiB
    # Fourteen whole slices, one of the 2 MiB left, then nothing.
    assert sorted(v.granted for v in verdicts if v.granted) == [2 * MiB] + [7 * MiB] * 14
    assert sum(not v.allowed for v in verdicts) == 5


async def test_refund_gives_back_what_did_not_move(budgets: Budgets) -> None:
    b = budget(limit=100 * MiB)
    reserved = await budgets.windows.reserve([b], 60 * MiB, "all")
    assert reserved.allowed
    assert reserved.results[0].remaining == 40 * MiB
    (hold,) = reserved.holds
    # 35 MiB moved, 25 did not.
    assert await budgets.another().refund([hold._replace(amount=25 * MiB)]) == 25 * MiB
    looked = await budgets.windows.reserve([b], 0, "peek")
    assert looked.results[0].remaining == 65 * MiB
    # An entry never gives back more than it holds.
    assert await budgets.windows.refund([hold]) == 35 * MiB
    assert (await budgets.windows.reserve([b], 0, "peek")).results[0].remaining == 100 * MiB
    assert await budgets.windows.refund([hold]) == 0


async def test_a_refused_reservation_takes_nothing_from_any_budget(budgets: Budgets) -> None:
    tight, loose = budget("tight", limit=10 * MiB), budget("loose", limit=100 * MiB)
    assert (await budgets.windows.reserve([tight, loose], 8 * MiB, "all")).allowed
    refused = await budgets.windows.reserve([tight, loose], 8 * MiB, "all")
    assert not refused.allowed
    assert refused.granted == 0
    assert [r.remaining for r in refused.results] == [2 * MiB, 92 * MiB]
    assert refused.results[1].retry_after == 0


async def test_more_than_the_whole_budget_never_fits(budgets: Budgets) -> None:
    refused = await budgets.windows.reserve([budget(limit=10 * MiB)], 11 * MiB, "all")
    assert not refused.allowed
    assert refused.retry_after == math.inf
    # Up to it, it is the whole budget.
    granted = await budgets.windows.reserve([budget(limit=10 * MiB)], 11 * MiB, "upto")
    assert granted.granted == 10 * MiB


async def test_the_window_slides_entry_by_entry(budgets: Budgets) -> None:
    b = budget(limit=10 * MiB, period=HOUR)
    assert (await budgets.windows.reserve([b], 6 * MiB, "all")).allowed
    budgets.age(b, 1800)
    assert (await budgets.windows.reserve([b], 4 * MiB, "all")).allowed
    refused = await budgets.windows.reserve([b], 5 * MiB, "all")
    assert not refused.allowed
    # The first 6 MiB leave half an hour from now: then 5 MiB fit.
    assert 1800 - 60 < refused.retry_after <= 1800
    budgets.age(b, 1800)
    verdict = await budgets.windows.reserve([b], 5 * MiB, "all")
    assert verdict.allowed
    assert verdict.results[0].remaining == 1 * MiB
    # A refund of bytes whose entry has left the window gives nothing back:
    # they left the budget already.
    budgets.age(b, HOUR)
    assert await budgets.windows.refund(verdict.holds) == 0


async def test_reservations_close_together_share_one_entry(budgets: Budgets) -> None:
    b = budget(limit=1000 * MiB)
    holds: list[ByteHold] = []
    for _ in range(50):
        verdict = await budgets.windows.reserve([b], MiB, "all")
        holds += verdict.holds
    # 50 reservations within 3.6 s (a thousandth of the hour) of each other.
    assert budgets.entries(b) <= 2
    assert (await budgets.windows.reserve([b], 0, "peek")).results[0].remaining == 950 * MiB
    # Each still gets its own bytes back from the shared entry.
    assert await budgets.windows.refund(holds[:10]) == 10 * MiB
    assert (await budgets.windows.reserve([b], 0, "peek")).results[0].remaining == 960 * MiB


async def test_peek_takes_nothing(budgets: Budgets) -> None:
    for _ in range(3):
        verdict = await budgets.windows.reserve([budget(limit=MiB)], MiB, "peek")
        assert verdict.allowed
        assert verdict.granted == 0
        assert verdict.holds == ()
        assert verdict.results[0].remaining == MiB


async def test_a_shadow_budget_never_refuses_and_takes_what_it_holds(budgets: Budgets) -> None:
    shadow = budget("shadow", limit=3 * MiB, enforced=False)
    real = budget("real", limit=100 * MiB)
    verdicts = [await budgets.windows.reserve([shadow, real], 2 * MiB, "all") for _ in range(3)]
    assert all(v.allowed for v in verdicts)
    # The second would overdraw it: reported, let through, and it takes the 1 MiB left.
    assert [v.results[0].retry_after > 0 for v in verdicts] == [False, True, True]
    assert [v.results[0].remaining for v in verdicts] == [MiB, 0, 0]
    assert [sum(h.amount for h in v.holds if h.check == shadow) for v in verdicts] == [
        2 * MiB,
        MiB,
        0,
    ]
    assert [v.results[1].remaining for v in verdicts] == [98 * MiB, 96 * MiB, 94 * MiB]


async def test_subjects_have_budgets_apart(budgets: Budgets) -> None:
    a, b = budget(limit=MiB, subject="project:a"), budget(limit=MiB, subject="project:b")
    assert (await budgets.windows.reserve([a], MiB, "all")).allowed
    assert not (await budgets.windows.reserve([a], 1, "all")).allowed
    assert (await budgets.windows.reserve([b], MiB, "all")).allowed


async def test_cluster_gives_back_what_one_slot_granted_and_another_refused(
    redis_cluster: Cluster,
) -> None:
    store = RedisStore(
        RedisConfig(cluster_nodes=redis_cluster.nodes, key_prefix=uuid.uuid4().hex, timeout=2)
    )
    windows = store.byte_windows
    assert isinstance(windows, RedisByteWindows)
    per_user = budget("per-user", limit=3 * MiB, subject="user:u1")
    per_project = budget("per-project", limit=100 * MiB)
    cluster: Any = store.client
    assert cluster.keyslot(windows.keys(per_user)[0]) != cluster.keyslot(
        windows.keys(per_project)[0]
    )
    try:
        assert (await windows.reserve([per_user, per_project], 2 * MiB, "all")).allowed
        refused = await windows.reserve([per_user, per_project], 2 * MiB, "all")
        assert not refused.allowed
        assert [r.remaining for r in refused.results] == [MiB, 98 * MiB]
        # Up to: the user's slot holds 1 MiB, the project's gave 2 and keeps 1.
        partial = await windows.reserve([per_user, per_project], 2 * MiB, "upto")
        assert partial.granted == MiB
        assert sorted(h.amount for h in partial.holds) == [MiB, MiB]
        looked = await windows.reserve([per_user, per_project], 0, "peek")
        assert [r.remaining for r in looked.results] == [0, 97 * MiB]
    finally:
        await store.close()
