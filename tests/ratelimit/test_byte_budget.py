"""One request's byte account: slices reserved as bytes move, what did not move given back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from gateway.authn.identity import Identity
from gateway.config import RateLimitConfig
from gateway.ratelimit.byte_budget import BudgetRefused, ByteBudget
from gateway.ratelimit.limiter import RateLimiter
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import LimitStore
from tests.support.waiting import until

KiB = 1 << 10
ALICE = Identity("p1", "alice", frozenset())
RULE = {"name": "upload-bytes", "count": "bytes", "unit": "hour", "value": "1MiB"}


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    section: dict[str, Any] = {"rules": [RULE], "byte_slice": "64KiB"}
    store: LimitStore = MemoryStore()
    if request.param == "redis":
        section |= {"store": "redis", "redis": {"url": request.getfixturevalue("redis_url")}}
    config = RateLimitConfig.model_validate(section)
    if config.redis is not None:
        store = RedisStore(config.redis)
    limiter = RateLimiter(config, store)
    yield limiter
    await limiter.close()


def budget_of(limiter: RateLimiter) -> ByteBudget:
    rules = limiter.byte_rules["upload_image"]
    checks = limiter.byte_checks(rules, ALICE, "192.0.2.1")
    return ByteBudget(limiter, rules, checks, "req-1", limiter.config.byte_slice)


async def used(limiter: RateLimiter) -> int:
    _, budgets = await limiter.standing(ALICE, "192.0.2.1", "req-2")
    assert budgets is not None
    (limit,) = budgets.limits
    return limit.limit - limit.result.remaining


async def settled(limiter: RateLimiter, expected: int) -> None:
    """Refunds run in the background: wait for them."""

    async def settled_there() -> bool:
        return await used(limiter) == expected

    await until(settled_there, f"{expected} bytes used", deadline=5, interval=0.01)


async def test_slices_cover_what_moves_and_the_rest_is_given_back(limiter: RateLimiter) -> None:
    budget = budget_of(limiter)
    await budget.cover(100 * KiB)
    assert budget.reserved == 128 * KiB  # two slices
    budget.moved = 100 * KiB
    await budget.cover(150 * KiB)
    assert budget.reserved == 192 * KiB
    budget.moved = 150 * KiB
    budget.settle()
    await settled(limiter, 150 * KiB)
    # What the record shows: the budget after the refund.
    ((check, result),) = budget.standing()
    assert check.limit - result.remaining == 150 * KiB


async def test_the_last_slice_is_what_is_left_then_nothing(limiter: RateLimiter) -> None:
    budget = budget_of(limiter)
    await budget.reserve(1000 * KiB)
    await budget.cover(1000 * KiB + 1)
    assert budget.reserved == 1024 * KiB  # 24 KiB of a 64 KiB slice: all there was
    with pytest.raises(BudgetRefused) as refused:
        await budget.cover(1024 * KiB + 1)
    assert refused.value.decision.refused[0].name == "upload-bytes"
    assert 3590 < refused.value.decision.verdict.retry_after <= 3600


async def test_a_forgiven_upload_gives_back_what_moved_too(limiter: RateLimiter) -> None:
    budget = budget_of(limiter)
    await budget.reserve(300 * KiB)
    budget.moved = 300 * KiB
    budget.forgive()
    budget.settle()
    await settled(limiter, 0)


async def test_settling_twice_gives_back_once(limiter: RateLimiter) -> None:
    budget = budget_of(limiter)
    await budget.reserve(300 * KiB)
    other = budget_of(limiter)
    await other.reserve(200 * KiB)
    other.moved = 200 * KiB
    budget.settle()
    budget.settle()
    other.settle()
    await settled(limiter, 200 * KiB)


async def test_one_store_call_per_slice(redis_url: str) -> None:
    config = RateLimitConfig.model_validate(
        {"store": "redis", "redis": {"url": redis_url}, "rules": [RULE], "byte_slice": "64KiB"}
    )
    assert config.redis is not None
    limiter = RateLimiter(config, RedisStore(config.redis))
    stats = redis.Redis.from_url(redis_url)
    try:
        budget = budget_of(limiter)
        await budget.cover(1)  # the script loaded, the connection open
        stats.config_resetstat()
        # 5 slices more, moved in 4 KiB chunks as a client sends them.
        for moved in range(4 * KiB, 6 * 64 * KiB + 1, 4 * KiB):
            if moved > budget.reserved:
                await budget.cover(moved)
            budget.moved = moved
        calls = stats.info("commandstats")["cmdstat_evalsha"]["calls"]
        assert calls == 5
    finally:
        await limiter.close()
        stats.close()
