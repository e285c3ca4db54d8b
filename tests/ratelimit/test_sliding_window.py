"""The sliding-window log, the same on every store: in-process, Redis, Redis Cluster."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from gateway.config import RedisConfig
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import LimitCheck, LimitStore
from tests.ratelimit.test_memory import Clock
from tests.support.redis_servers import Cluster
from tests.support.waiting import until


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    limit_store: LimitStore
    if request.param == "memory":
        limit_store = MemoryStore()
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        limit_store = RedisStore(RedisConfig(url=url, key_prefix=prefix, timeout=1))
    else:
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        limit_store = RedisStore(
            RedisConfig(cluster_nodes=cluster.nodes, key_prefix=prefix, timeout=1)
        )
    yield limit_store
    await limit_store.close()


def check(rule: str = "r", limit: int = 5, period: float = 60, **kw: Any) -> LimitCheck:
    return LimitCheck(kw.pop("subject", "project:p1"), rule, limit, period, **kw)


async def test_admits_exactly_the_limit_of_a_concurrent_burst(store: LimitStore) -> None:
    verdicts = await asyncio.gather(*(store.acquire([check()]) for _ in range(12)))
    assert sum(v.allowed for v in verdicts) == 5
    refused = [v for v in verdicts if not v.allowed]
    # The first admission leaves the minute-long window a minute after it.
    assert all(58 < v.retry_after <= 60 for v in refused)
    assert all(v.results[0].remaining == 0 for v in refused)


async def test_burst_straddling_a_second_boundary_admits_only_the_limit(
    store: LimitStore,
) -> None:
    """5 per second: 5 just before a wall-clock second turns, 5 just after.

    A fixed window would admit all 10 (5 per calendar second); the sliding
    window admits 5 in any one-second span, wherever it starts.
    """
    rule = check(limit=5, period=1)
    # Connected (a Cluster's slots learnt, the script loaded) before the clock
    # matters: only the bursts are timed.
    await store.peek([check(subject="project:warm-up")])
    await until(lambda: 0.70 <= time.time() % 1 < 0.80, "the clock", deadline=3, interval=0.005)
    first_burst_at = time.monotonic()
    before = await asyncio.gather(*(store.acquire([rule]) for _ in range(5)))
    first_burst_done = time.monotonic()
    await until(lambda: 0.10 <= time.time() % 1 < 0.20, "the clock", deadline=3, interval=0.005)
    assert time.monotonic() - first_burst_at < 0.6, "the second burst is within the window"
    after = await asyncio.gather(*(store.acquire([rule]) for _ in range(5)))
    assert [v.allowed for v in before] == [True] * 5
    assert [v.allowed for v in after] == [False] * 5
    # Each refusal names when the window frees up: when the first burst ages out.
    assert all(0 < v.retry_after <= 1 for v in after)
    await until(
        lambda: time.monotonic() > first_burst_done + 1.02, "the clock", deadline=3, interval=0.005
    )
    again = await asyncio.gather(*(store.acquire([rule]) for _ in range(6)))
    assert sum(v.allowed for v in again) == 5


async def test_a_refused_request_counts_against_no_limit(store: LimitStore) -> None:
    tight, loose = check("tight", limit=1), check("loose", limit=5)
    assert (await store.acquire([tight, loose])).allowed
    refused = await store.acquire([tight, loose])
    assert not refused.allowed
    assert refused.results[1].retry_after == 0
    looked = await store.peek([tight, loose])
    assert [r.remaining for r in looked.results] == [0, 4]


async def test_peek_counts_nothing(store: LimitStore) -> None:
    for _ in range(3):
        verdict = await store.peek([check(limit=2)])
        assert verdict.allowed
        assert verdict.results[0].remaining == 2
        assert verdict.results[0].reset_after == 0


async def test_shadow_check_reports_but_never_refuses(store: LimitStore) -> None:
    shadow = check("shadow", limit=1, enforced=False)
    verdicts = [await store.acquire([shadow, check("real", limit=10)]) for _ in range(3)]
    assert all(v.allowed for v in verdicts)
    assert [v.results[0].retry_after > 0 for v in verdicts] == [False, True, True]
    # Enforced checks count every admitted request, shadow refusals included.
    assert [v.results[1].remaining for v in verdicts] == [9, 8, 7]


async def test_subjects_are_counted_apart(store: LimitStore) -> None:
    for _ in range(2):
        assert (await store.acquire([check(limit=2, subject="project:a")])).allowed
    assert not (await store.acquire([check(limit=2, subject="project:a")])).allowed
    assert (await store.acquire([check(limit=2, subject="project:b")])).allowed


async def test_cluster_takes_back_an_admission_another_slot_refused(
    redis_cluster: Cluster,
) -> None:
    """A user rule and a project rule live in different slots; one refusal undoes both."""
    store = RedisStore(
        RedisConfig(cluster_nodes=redis_cluster.nodes, key_prefix=uuid.uuid4().hex, timeout=1)
    )
    per_user = check("per-user", limit=1, subject="user:u1")
    per_project = [check("a", limit=5), check("b", limit=7)]
    cluster: Any = store.client
    assert cluster.keyslot(store.key(per_user)) != cluster.keyslot(store.key(per_project[0]))
    try:
        assert (await store.acquire([per_user, *per_project])).allowed
        refused = await store.acquire([per_user, *per_project])
        assert not refused.allowed
        assert [r.remaining for r in refused.results[1:]] == [4, 6]

        async def project_remaining() -> list[int]:
            return [r.remaining for r in (await store.peek(per_project)).results]

        async def taken_back() -> bool:
            return await project_remaining() == [4, 6]

        await until(taken_back, "the refused admission to be taken back", deadline=2, interval=0.01)
    finally:
        await store.close()


class AgedStore:
    """A store and a way to put admissions into a window as if made earlier.

    Redis's admissions are written with older scores (the script reads time
    from Redis, so nothing else can age them); the in-process store's are
    made with its clock set back. No test waits out a period this way.
    """

    def __init__(self, store: LimitStore, clock: Clock | None, writer: Any) -> None:
        self.store = store
        self.clock = clock
        self.writer = writer

    async def admitted(self, rule: LimitCheck, *ages: float) -> None:
        """Admissions for ``rule``'s key, each ``age`` seconds before now, oldest first."""
        if self.clock is not None:
            now = self.clock.now
            memory = self.store
            assert isinstance(memory, MemoryStore)
            for age in sorted(ages, reverse=True):
                self.clock.now = now - age
                wide_open = rule._replace(limit=1_000_000)
                assert memory.decide_now([wide_open], count=True).allowed
            self.clock.now = now
            return
        assert isinstance(self.store, RedisStore)
        seconds, micros = self.writer.time()
        now_us = seconds * 1_000_000 + micros
        scores = {f"aged-{i}": now_us - int(age * 1_000_000) for i, age in enumerate(ages)}
        self.writer.zadd(self.store.key(rule), scores)


def redis_topology(topology: str, request: pytest.FixtureRequest) -> tuple[RedisStore, Any]:
    """A store on a real redis-server or a real Cluster, and a plain client to the same."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    # These tests are about the window, not timeouts: a loaded machine may
    # keep a fresh Cluster client's first call (slots, script) past 1 s.
    timeout = 5
    if topology == "redis":
        url = request.getfixturevalue("redis_url")
        config = RedisConfig(url=url, key_prefix=prefix, timeout=timeout)
        return RedisStore(config), redis.Redis.from_url(url)
    cluster: Cluster = request.getfixturevalue("redis_cluster")
    config = RedisConfig(cluster_nodes=cluster.nodes, key_prefix=prefix, timeout=timeout)
    return RedisStore(config), RedisCluster(host="127.0.0.1", port=cluster.ports[0])


@pytest.fixture(params=["memory", "redis", "cluster"])
async def aged(request: pytest.FixtureRequest) -> AsyncIterator[AgedStore]:
    if request.param == "memory":
        clock = Clock(5000.0)
        yield AgedStore(MemoryStore(clock=clock), clock, None)
        return
    limit_store, writer = redis_topology(request.param, request)
    # Connected before a test ages anything: the tests read the time an
    # admission has left to the tenth of a second.
    await limit_store.peek([check(subject="project:warm-up")])
    yield AgedStore(limit_store, None, writer)
    await limit_store.close()
    writer.close()


async def test_admissions_older_than_half_a_period_still_count(aged: AgedStore) -> None:
    """3 per 10 s: two admissions 7 s ago fill two places until they are 10 s old."""
    rule = check(limit=3, period=10)
    await aged.admitted(rule, 7.0, 6.5)
    looked = await aged.store.peek([rule])
    assert looked.results[0].remaining == 1
    # The oldest leaves the window 10 s after it was made: about 3 s from now.
    assert 2.5 < looked.results[0].reset_after <= 3.05
    assert (await aged.store.acquire([rule])).allowed
    refused = await aged.store.acquire([rule])
    assert not refused.allowed
    assert 2.5 < refused.retry_after <= 3.05


async def test_admissions_a_full_period_old_have_left(aged: AgedStore) -> None:
    rule = check(limit=2, period=10)
    await aged.admitted(rule, 12.0, 10.5, 4.0)
    looked = await aged.store.peek([rule])
    assert looked.results[0].remaining == 1, "only the 4 s old admission is in the window"
    assert 5.5 < looked.results[0].reset_after <= 6.05
    assert (await aged.store.acquire([rule])).allowed
    assert not (await aged.store.acquire([rule])).allowed


async def test_over_a_lowered_limit_retry_after_waits_for_the_excess_to_leave(
    aged: AgedStore,
) -> None:
    """Three admissions (9, 5 and 2 s old) against a limit now of 2 per 10 s.

    One more may come only once two of them have left: when the 5 s old one
    leaves, in 5 s, not when the oldest does, in 1 s.
    """
    rule = check(limit=2, period=10)
    await aged.admitted(rule, 9.0, 5.0, 2.0)
    refused = await aged.store.acquire([rule])
    assert not refused.allowed
    assert 4.5 < refused.retry_after <= 5.05
    assert 4.5 < refused.results[0].retry_after <= 5.05
    # The window itself frees its first place when the oldest leaves.
    assert 0.5 < refused.results[0].reset_after <= 1.05
    assert refused.results[0].remaining == 0


@pytest.mark.parametrize("topology", ["redis", "cluster"])
async def test_a_key_lives_as_long_as_its_window(
    topology: str, request: pytest.FixtureRequest
) -> None:
    """The script's periods are in µs and PEXPIRE takes ms: a key expires a
    period after its newest admission, never sooner."""
    limit_store, writer = redis_topology(topology, request)
    try:
        rule = check(limit=5, period=60)
        assert (await limit_store.acquire([rule])).allowed
        assert 59_000 < writer.pttl(limit_store.key(rule)) <= 60_001
    finally:
        await limit_store.close()
        writer.close()


def test_memory_store_window_slides_with_its_clock() -> None:
    """Deterministic: 3 per minute, bursts at 59.9 s and 60.1 s of a fixed window."""
    now = [59.9]
    store = MemoryStore(clock=lambda: now[0])
    rule = check(limit=3, period=60)
    assert [store.decide_now([rule], count=True).allowed for _ in range(3)] == [True] * 3
    now[0] = 60.1
    assert not store.decide_now([rule], count=True).allowed
    now[0] = 119.9
    assert store.decide_now([rule], count=True).allowed
