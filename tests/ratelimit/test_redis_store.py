"""RedisStore against a real redis-server (tests/support/redis_servers.py): exact across processes.

Time is Redis's own (the script reads TIME), so the limits here use periods of
an hour or a day: no admission leaves its window while a test runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.config import RedisConfig
from gateway.ratelimit.memory import MemoryStore
from gateway.ratelimit.redis_store import MAX_BATCH_REQUESTS, RedisStore
from gateway.ratelimit.store import LimitCheck, StoreFault, StoreUnavailable, Verdict
from gateway.redis_pipe import CLIENT_NAME
from tests.support.ports import free_port
from tests.support.redis_servers import Cluster, RedisProcess

HOUR = 3600.0
DAY = 86400.0

StoreFactory = Callable[..., RedisStore]


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[StoreFactory]:
    """RedisStores on the test's redis (or ``url``), each closed at the end."""
    stores: list[RedisStore] = []

    def make(url: str | None = None, **options: Any) -> RedisStore:
        store = RedisStore(RedisConfig(url=url or redis_url, **options))
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def check(
    subject: str = "project:p1", rule: str = "deletes", limit: int = 5, period: float = HOUR
) -> LimitCheck:
    return LimitCheck(subject=subject, rule=rule, limit=limit, period=period)


def command_calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, dict[str, Any]] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def limiter_connections(client: redis.Redis) -> list[int]:
    """The ids of the connections the limiter has open, by their client name."""
    return [int(c["id"]) for c in client.client_list() if c["name"] == CLIENT_NAME]


def connections_received(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("stats")
    return int(stats["total_connections_received"])


async def test_exact_burst_then_refused_with_retry_after(make_store: StoreFactory) -> None:
    store = make_store()
    c = check(limit=5, period=60.0)
    for used in range(1, 6):
        verdict = await store.acquire([c])
        assert verdict.allowed, f"request {used} refused"
        assert verdict.retry_after == 0.0
        assert verdict.results[0].remaining == 5 - used
        # the oldest admission leaves the window a period after it was made
        assert verdict.results[0].reset_after == pytest.approx(60.0, abs=0.5)
    refused = await store.acquire([c])
    assert not refused.allowed
    assert refused.results[0].remaining == 0
    assert refused.retry_after == pytest.approx(60.0, abs=0.5)
    assert refused.retry_after <= 60.0


async def test_refusal_is_free_and_repeatable(make_store: StoreFactory) -> None:
    store = make_store()
    c = check(limit=2)
    assert all([(await store.acquire([c])).allowed for _ in range(2)])
    refusals = [await store.acquire([c]) for _ in range(5)]
    assert not any(v.allowed for v in refusals)
    # a refused request does not push the next admission further away
    waits = [v.retry_after for v in refusals]
    assert max(waits) - min(waits) < 1.0
    assert min(waits) == pytest.approx(HOUR, abs=1.0)


async def test_all_or_nothing_across_two_checks(make_store: StoreFactory) -> None:
    store = make_store()
    small = check(rule="small", limit=2)
    large = check(rule="large", limit=10)
    assert (await store.acquire([small, large])).allowed
    assert (await store.acquire([small, large])).allowed
    refused = await store.acquire([small, large])
    assert not refused.allowed
    assert [r.remaining for r in refused.results] == [0, 8]
    # the large bucket was not charged for the refused request
    after = await store.acquire([large])
    assert after.allowed
    assert after.results[0].remaining == 7


async def test_two_processes_share_one_exact_limit(make_store: StoreFactory) -> None:
    first, second = make_store(), make_store()
    c = check(subject="project:shared", limit=50, period=DAY)
    calls = [(first if i % 2 else second).acquire([c]) for i in range(200)]
    verdicts = await asyncio.gather(*calls)
    allowed = [v for v in verdicts if v.allowed]
    assert len(allowed) == 50
    # every admission saw its own count: each remaining value exactly once
    assert sorted(v.results[0].remaining for v in allowed) == list(range(50))
    assert all(v.results[0].remaining == 0 for v in verdicts if not v.allowed)
    # the limit is spent for both gateways
    assert not (await first.acquire([c])).allowed
    assert not (await second.acquire([c])).allowed


async def test_a_second_process_sees_the_first_ones_count(make_store: StoreFactory) -> None:
    first, second = make_store(), make_store()
    c = check(subject="project:shared", limit=50, period=DAY)
    assert all([(await first.acquire([c])).allowed for _ in range(30)])
    verdict = await second.acquire([c])
    assert verdict.allowed
    assert verdict.results[0].remaining == 19
    admitted = sum([(await second.acquire([c])).allowed for _ in range(40)])
    assert admitted == 19


async def test_keys_carry_the_hash_tag_and_a_ttl(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store()
    period_ms = HOUR * 1000
    assert (await store.acquire([check(subject="project:p1", rule="rule", limit=5)])).allowed
    key = "igw:window:{project:p1}:rule"
    assert sync_redis.keys("igw:*") == [key.encode()]
    # the key lives as long as its newest admission is in the window
    pttl = int(sync_redis.pttl(key))
    assert period_ms - 1000 < pttl <= period_ms + 2
    await store.acquire([check(subject="project:p1", rule="rule", limit=5)])
    assert int(sync_redis.zcard(key)) == 2
    assert period_ms - 1000 < int(sync_redis.pttl(key)) <= period_ms + 2


async def test_key_prefix_and_subject_kinds(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store(key_prefix="edge")
    await store.acquire(
        [check(subject="user:alice", rule="r1"), check(subject="ip:10.0.0.1", rule="r2")]
    )
    assert sorted(sync_redis.keys("*")) == [
        b"edge:window:{ip:10.0.0.1}:r2",
        b"edge:window:{user:alice}:r1",
    ]


async def test_refused_acquire_writes_nothing(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store()
    exhausted = check(rule="small", limit=1)
    assert (await store.acquire([exhausted])).allowed
    assert not (await store.acquire([exhausted, check(rule="fresh")])).allowed
    assert sync_redis.exists("igw:window:{project:p1}:small") == 1
    assert sync_redis.exists("igw:window:{project:p1}:fresh") == 0


async def burst_of(
    store: RedisStore, c: LimitCheck, requests: int, sync_redis: redis.Redis
) -> list[Verdict]:
    """``requests`` acquires of ``c`` in one loop turn, Redis's command counts
    reset just before (the store connected and its script loaded first)."""
    assert (await store.acquire([c])).allowed
    sync_redis.config_resetstat()
    return await asyncio.gather(*(store.acquire([c]) for _ in range(requests)))


async def test_concurrent_acquires_are_coalesced(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    connections_before = connections_received(sync_redis)
    c = check(subject="project:busy", limit=60, period=DAY)

    verdicts = await burst_of(make_store(), c, 100, sync_redis)

    # correct per request: 59 left, each remaining value seen once, the rest refused
    allowed = [v.results[0].remaining for v in verdicts if v.allowed]
    assert sorted(allowed) == list(range(59))
    assert sum(not v.allowed for v in verdicts) == 41
    # and batched: the 100 requests of one loop turn reach Redis as one
    # EVALSHA over one connection, not 100
    assert command_calls(sync_redis, "evalsha") == 1
    assert connections_received(sync_redis) - connections_before <= 1


async def test_a_burst_past_the_batch_cap_goes_as_several_script_calls(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    c = check(subject="project:burst", limit=1000, period=DAY)
    burst = 2 * MAX_BATCH_REQUESTS + 10

    verdicts = await burst_of(make_store(), c, burst, sync_redis)

    # One loop turn, yet three calls: two full batches and the rest.
    assert command_calls(sync_redis, "evalsha") == 3
    # Still exact: every admission counted once, in some order.
    remaining = sorted(v.results[0].remaining for v in verdicts)
    assert remaining == list(range(999 - burst, 999))
    assert sync_redis.zcard("igw:window:{project:burst}:deletes") == burst + 1


async def test_one_command_per_loop_turn_and_each_request_atomic(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store()
    tight, loose = check(rule="tight", limit=1), check(rule="loose", limit=10)
    other = check(subject="project:p2", rule="loose", limit=10)
    assert (await store.acquire([tight])).allowed  # tight is now spent
    sync_redis.config_resetstat()

    refused, first, looked, second, elsewhere = await asyncio.gather(
        store.acquire([tight, loose]),
        store.acquire([loose]),
        store.peek([loose]),
        store.acquire([loose]),
        store.acquire([other]),
    )

    assert command_calls(sync_redis, "evalsha") == 1
    # The refused request counted against neither of its limits: the next
    # request in the same script call sees all ten of loose's left.
    assert not refused.allowed
    assert [r.remaining for r in refused.results] == [0, 10]
    assert refused.results[1].retry_after == 0
    assert (first.allowed, first.results[0].remaining) == (True, 9)
    # A look in between sees the first admission and counts nothing.
    assert (looked.allowed, looked.results[0].remaining) == (True, 9)
    assert (second.allowed, second.results[0].remaining) == (True, 8)
    assert (elsewhere.allowed, elsewhere.results[0].remaining) == (True, 9)
    assert int(sync_redis.zcard("igw:window:{project:p1}:loose")) == 2
    assert int(sync_redis.zcard("igw:window:{project:p1}:tight")) == 1
    # Two admissions at one Redis instant are still two distinct entries.
    assert len(set(sync_redis.zrange("igw:window:{project:p1}:loose", 0, -1))) == 2


async def test_a_corrupt_key_fails_only_its_own_request_in_a_batch(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store()
    assert (await store.acquire([check(subject="project:fine")])).allowed
    sync_redis.set("igw:window:{project:bad}:deletes", "corrupt")
    sync_redis.config_resetstat()

    bad, fine = await asyncio.gather(
        store.acquire([check(subject="project:fine", rule="other"), check(subject="project:bad")]),
        store.acquire([check(subject="project:fine")]),
        return_exceptions=True,
    )

    assert command_calls(sync_redis, "evalsha") == 1
    assert isinstance(bad, StoreFault)
    assert "WRONGTYPE" in str(bad)
    assert isinstance(fine, Verdict)
    assert (fine.allowed, fine.results[0].remaining) == (True, 3)
    # The failed request counted nowhere, not even on its sound key.
    assert sync_redis.exists("igw:window:{project:fine}:other") == 0


async def test_a_forgotten_script_is_loaded_again(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store()
    c = check(limit=5)
    assert (await store.acquire([c])).results[0].remaining == 4
    sync_redis.script_flush()
    verdicts = await asyncio.gather(*(store.acquire([c]) for _ in range(3)))
    assert sorted(v.results[0].remaining for v in verdicts) == [1, 2, 3]
    assert int(sync_redis.zcard("igw:window:{project:p1}:deletes")) == 4


async def test_unreachable_redis_raises_within_the_timeout(make_store: StoreFactory) -> None:
    store = make_store(url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="redis"):
        await asyncio.wait_for(store.acquire([check()]), timeout=5)
    assert time.monotonic() - started < 1.0


async def test_silent_redis_raises_within_the_timeout(make_store: StoreFactory) -> None:
    """A server that accepts and never answers: the timeout, not a hang."""
    connected = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        store = make_store(url=f"redis://127.0.0.1:{port}/0", timeout=0.2)
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(store.acquire([check()]) for _ in range(20)), return_exceptions=True),
            timeout=5,
        )
        elapsed = time.monotonic() - started
        assert connected.is_set()
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert 0.15 < elapsed < 1.0
    finally:
        server.close()


async def test_store_recovers_after_a_slow_redis(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store(timeout=0.05)
    c = check(limit=5)
    assert (await store.acquire([c])).results[0].remaining == 4
    sync_redis.client_pause(150, all=True)  # Redis answers nobody for 150 ms
    with pytest.raises(StoreUnavailable):
        await store.acquire([c])
    sync_redis.ping()  # returns once the pause is over
    verdict = await store.acquire([c])
    assert verdict.allowed
    # whether or not the timed-out request was counted, every later reply is the
    # reply to its own request: no stale answer left on a reused connection
    assert verdict.results[0].remaining in (2, 3)
    following = await store.acquire([c])
    assert following.results[0].remaining == verdict.results[0].remaining - 1


async def test_a_timed_out_connection_is_closed_not_reused(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store(timeout=0.05)
    c = check(limit=50)
    assert (await store.acquire([c])).allowed
    first = limiter_connections(sync_redis)
    for _ in range(2):
        sync_redis.client_pause(150, all=True)
        with pytest.raises(StoreUnavailable):
            await store.acquire([c])
        sync_redis.ping()
        assert (await store.acquire([c])).allowed
    # Each timeout cost its connection (its late reply could otherwise reach
    # the next caller); none is left open behind the one in use.
    now = limiter_connections(sync_redis)
    assert len(now) == 1
    assert now[0] not in first


async def test_closing_lets_a_batch_in_flight_have_its_answer(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    store = make_store()
    c = check(subject="project:closing", limit=10)
    assert (await store.acquire([c])).allowed  # the connection is open
    received = connections_received(sync_redis)
    # Redis holds the next reply back for a moment: the batch is in flight
    # (sent, unanswered) when the store closes.
    sync_redis.client_pause(100, all=True)
    deciding = asyncio.ensure_future(store.acquire([c]))
    for _ in range(3):
        await asyncio.sleep(0)  # loop turns: the request joins a batch, the batch is sent
    await store.close()
    verdict = await deciding
    assert verdict.allowed
    assert verdict.results[0].remaining == 8
    # Answered on the connection it was sent on, closed after: none opened again.
    assert connections_received(sync_redis) == received


async def test_one_connection_carries_batches_in_flight_together(
    make_store: StoreFactory, sync_redis: redis.Redis
) -> None:
    c = check(subject="project:burst", limit=1000, period=DAY)

    await burst_of(make_store(), c, 2 * MAX_BATCH_REQUESTS + 10, sync_redis)

    # Three script calls were in flight at once, pipelined on the connection
    # the store already had: Redis was asked for no other.
    assert command_calls(sync_redis, "evalsha") == 3
    assert connections_received(sync_redis) == 0
    assert len(limiter_connections(sync_redis)) == 1


async def test_credentials_and_database_from_the_url(tmp_path: Path) -> None:
    server = RedisProcess(free_port(), tmp_path, password="s3cret")
    server.start()
    try:
        right = RedisStore(RedisConfig(url=f"redis://:s3cret@127.0.0.1:{server.port}/3"))
        wrong = RedisStore(RedisConfig(url=f"redis://:nope@127.0.0.1:{server.port}/3"))
        try:
            assert (await right.acquire([check()])).results[0].remaining == 4
            with pytest.raises(StoreUnavailable, match="credentials"):
                await wrong.acquire([check()])
        finally:
            await right.close()
            await wrong.close()
        in_db_3 = redis.Redis(port=server.port, password="s3cret", db=3)
        assert in_db_3.zcard("igw:window:{project:p1}:deletes") == 1
        # The refused login wrote nothing.
        assert redis.Redis(port=server.port, password="s3cret", db=0).dbsize() == 0
    finally:
        server.stop()


async def test_reset_after_never_exceeds_the_period(make_store: StoreFactory) -> None:
    store = make_store()
    limit, period = 2, 0.4  # a cell every 200 ms of Redis time
    c = check(subject="project:fast", limit=limit, period=period)
    assert all([(await store.acquire([c])).allowed for _ in range(limit)])
    refused = await store.acquire([c])
    assert not refused.allowed
    # Ask until the next cell is given (refusals are free): Redis's clock decides.
    deadline = time.monotonic() + 5
    while not (verdict := await store.acquire([c])).allowed:
        assert time.monotonic() < deadline
    # the oldest admission leaves within one period
    assert verdict.results[0].reset_after <= period + 0.002


SEQUENCE: Sequence[Sequence[LimitCheck]] = [
    [check(rule="a", limit=3)],
    [check(rule="a", limit=3), check(rule="b", limit=5, period=DAY)],
    [check(rule="b", limit=5, period=DAY)],
    [check(rule="a", limit=3), check(rule="b", limit=5, period=DAY)],
    [check(rule="a", limit=3), check(rule="b", limit=5, period=DAY)],  # a is exhausted
    [check(rule="b", limit=5, period=DAY)],
    [check(subject="user:u", rule="a", limit=3)],
    [check(rule="b", limit=5, period=DAY)],
    [check(rule="b", limit=5, period=DAY)],  # b is exhausted
    [check(rule="a", limit=3), check(subject="user:u", rule="a", limit=3)],
]


async def test_memory_and_redis_stores_agree(make_store: StoreFactory) -> None:
    memory = MemoryStore(clock=lambda: 5000.0)
    store = make_store()
    mine: list[Verdict] = [memory.decide_now(checks, count=True) for checks in SEQUENCE]
    theirs: list[Verdict] = [await store.acquire(checks) for checks in SEQUENCE]
    assert [v.allowed for v in theirs] == [v.allowed for v in mine]
    assert [[r.remaining for r in v.results] for v in theirs] == [
        [r.remaining for r in v.results] for v in mine
    ]
    assert [v.allowed for v in mine] == [True] * 4 + [False] + [True] * 3 + [False] * 2
    for m, t in zip(mine, theirs, strict=True):
        assert t.retry_after == pytest.approx(m.retry_after, abs=1.0)
        for mr, tr in zip(m.results, t.results, strict=True):
            assert tr.reset_after == pytest.approx(mr.reset_after, abs=1.0)


async def test_cluster_batch_is_one_script_per_subject(redis_cluster: Cluster) -> None:
    store = RedisStore(RedisConfig(cluster_nodes=redis_cluster.nodes, key_prefix="batch"))
    nodes = [redis.Redis(port=port) for port in redis_cluster.ports]
    a, b = check(subject="project:a", limit=3), check(subject="user:b", limit=3)
    cluster: Any = store.client
    assert cluster.keyslot(store.key(a)) != cluster.keyslot(store.key(b))
    try:
        assert (await store.acquire([a, b])).allowed  # connect and load the script
        for node in nodes:
            node.config_resetstat()
        verdicts = await asyncio.gather(*(store.acquire([a, b]) for _ in range(4)))
        # Eight checks of four requests over two subjects: two scripts.
        assert sum(command_calls(node, "evalsha") for node in nodes) == 2
        assert [v.allowed for v in verdicts] == [True, True, False, False]
        assert [[r.remaining for r in v.results] for v in verdicts[:2]] == [[1, 1], [0, 0]]
    finally:
        await store.close()
        for node in nodes:
            node.close()
