"""A Redis that stops answering for a while: the store times out, then carries on
with clean connections (no reply read by the wrong request, none left in use)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from gateway.config import RedisConfig
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import Check, StoreUnavailable

CHECK = Check("project:p1", "r", 50, 60)


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    limit_store = RedisStore(
        RedisConfig(url=redis_url, timeout=0.05, key_prefix=uuid.uuid4().hex[:8])
    )
    yield limit_store
    await limit_store.close()


async def _pause_and_time_out(store: RedisStore, sync_redis: redis.Redis) -> None:
    sync_redis.client_pause(150, all=True)  # Redis answers nobody for 150 ms
    with pytest.raises(StoreUnavailable):
        await store.acquire([CHECK])
    sync_redis.ping()  # returns once the pause is over


async def test_every_reply_after_a_timeout_answers_its_own_request(
    store: RedisStore, sync_redis: redis.Redis
) -> None:
    assert (await store.acquire([CHECK])).results[0].remaining == 49
    await _pause_and_time_out(store, sync_redis)
    verdict = await store.acquire([CHECK])
    assert verdict.allowed
    # Whether or not the timed-out request was counted, each later reply is
    # the reply to its own request: no stale answer on a reused connection.
    assert verdict.results[0].remaining in (47, 48)
    following = await store.acquire([CHECK])
    assert following.results[0].remaining == verdict.results[0].remaining - 1


async def test_timeouts_do_not_leak_pool_connections(
    store: RedisStore, sync_redis: redis.Redis
) -> None:
    pool: Any = store.client.connection_pool
    assert (await store.acquire([CHECK])).allowed
    for _ in range(2):
        await _pause_and_time_out(store, sync_redis)
        assert (await store.acquire([CHECK])).allowed
    # Nothing is in flight, so no connection may be in use.
    assert len(pool._in_use_connections) == 0
