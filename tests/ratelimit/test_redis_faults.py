"""Redis killed under load, restarted, and Redis that accepts but never answers.

The Redis here is a redis-server process the test owns: it is killed with
SIGKILL mid-load and started again on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from gateway.app import GATEWAY
from tests.ratelimit.conftest import COUNTED_KEY
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.ports import free_port
from tests.support.redis_servers import RedisProcess
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import seconds_until, until

# No request may take longer than this, Redis dead or alive.
HANG = 2.0


@dataclass(frozen=True)
class Sample:
    started: float
    ended: float
    status: int


class Load:
    """Admin deletes from several concurrent clients until stopped."""

    def __init__(self, client: Client, tok: str, concurrency: int = 8) -> None:
        self.client, self.tok = client, tok
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()
        self.workers = [asyncio.create_task(self._worker()) for _ in range(concurrency)]

    async def _worker(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            async with asyncio.timeout(HANG):
                response = await self.client.delete(
                    f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": self.tok}
                )
                await response.read()
            self.samples.append(Sample(started, time.monotonic(), response.status))

    def count(self, since: float) -> int:
        return sum(1 for s in self.samples if s.started >= since)

    async def wait_for(self, n: int, since: float = 0.0) -> None:
        await until(
            lambda: self.count(since) >= n,
            f"{n} answers (the load stalled)",
            deadline=10,
            interval=0.01,
        )

    async def finish(self) -> None:
        self.stop.set()
        # A worker that timed out raises here: a hung request fails the test.
        await asyncio.gather(*self.workers)


async def _redis_counts_again(url: str) -> float:
    """Seconds until an admission shows up in the restarted Redis."""
    client = redis.Redis.from_url(url)

    async def counted() -> bool:
        return bool(client.zcard(COUNTED_KEY))

    return await seconds_until(counted, "the gateway to count in Redis again", deadline=5)


async def _gateway(
    make_gateway: GatewayFactory, upstream_url: str, server: RedisProcess, **extra: Any
) -> Client:
    rule = {"name": "deletes", "unit": "minute", "value": 100000}
    return await make_gateway(
        upstream_url,
        rate_limit={
            "store": "redis",
            "redis": {"url": server.url, "timeout": 0.2, "probe_interval": 0.1},
            "rules": [rule],
            **extra,
        },
    )


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
async def test_redis_killed_mid_load_then_restarted(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    own_redis: RedisProcess,
    token: TokenFactory,
    failure_mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.ratelimit")
    client = await _gateway(make_gateway, scripted[1], own_redis, failure_mode=failure_mode)
    load = Load(client, token(roles=["admin"]))
    await load.wait_for(20)
    own_redis.kill()
    killed_at = time.monotonic()
    await load.wait_for(40, since=killed_at)
    own_redis.start()
    restarted_at = time.monotonic()
    back_after = await _redis_counts_again(own_redis.url)
    back_at = restarted_at + back_after
    await load.wait_for(20, since=back_at)
    await load.finish()

    assert back_after < 1.0, f"limits enforced in Redis again only after {back_after:.2f}s"
    limiter = client.app[GATEWAY].limiter if client.app else None
    assert limiter is not None
    assert limiter.breaker.opened >= 1
    assert not limiter.breaker.is_open
    assert max(s.ended - s.started for s in load.samples) < 1.0
    down = {s.status for s in load.samples if s.started > killed_at and s.ended < restarted_at}
    after = {s.status for s in load.samples if s.started > back_at}
    if failure_mode == "open":
        assert {s.status for s in load.samples} == {204}
        assert limiter.fail_open_events >= 40
    else:
        assert down == {503}
        assert limiter.fail_closed_events >= 40
        assert {s.status for s in load.samples if s.ended < killed_at} == {204}
    assert after == {204}
    # The outage in the log: one line as it began, one as it ended, however
    # many requests it failed in between.
    lines = [r.getMessage() for r in caplog.records if "Redis (rate limits)" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Redis (rate limits) unavailable: ")
    assert f"failing {failure_mode}" in lines[0]
    down_for = float(lines[1].split("recovered after ")[1].split("s down")[0])
    assert 0 < down_for <= back_at - killed_at + 0.5


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A socket that accepts connections and never answers: a hung Redis."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    port = free_port()
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    yield f"redis://127.0.0.1:{port}/0"
    for writer in connections:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hung_redis_costs_a_few_timeouts_not_one_per_request(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    silent_redis: str,
    token: TokenFactory,
) -> None:
    rule = {"name": "deletes", "unit": "minute", "value": 100000}
    client = await make_gateway(
        scripted[1],
        rate_limit={
            "store": "redis",
            "redis": {"url": silent_redis, "timeout": 0.3, "breaker_failures": 3},
            "rules": [rule],
        },
    )
    tok = token(roles=["admin"])
    latencies = []
    for _ in range(15):
        started = time.monotonic()
        response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": tok})
        latencies.append(time.monotonic() - started)
        assert response.status == 204
    slow = [t for t in latencies if t >= 0.3]
    # The breaker opens after three failed round trips; then nobody waits.
    assert len(slow) == 3, f"only the first three wait for the timeout: {latencies}"
    assert latencies[0] >= 0.3
