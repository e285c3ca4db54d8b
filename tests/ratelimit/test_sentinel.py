"""Redis through Sentinel: the gateway asks a real Sentinel where the master is,
and asks again when Sentinel has promoted another."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.config import RedisConfig
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import LimitCheck
from tests.ratelimit.conftest import COUNTED_KEY, two_deletes_at_one_per_minute
from tests.support.gateway_app import GatewayFactory
from tests.support.ports import free_port
from tests.support.redis_servers import STARTUP_DEADLINE, RedisProcess, binary
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import block_until


@pytest.fixture
def replica(own_redis: RedisProcess, tmp_path: Path) -> Iterator[RedisProcess]:
    workdir = tmp_path / "replica"
    workdir.mkdir()
    server = RedisProcess(free_port(), workdir, ("--replicaof", "127.0.0.1", str(own_redis.port)))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sentinel_port(own_redis: RedisProcess, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    # Sentinel rewrites its own configuration file, so it gets a fresh one.
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor main 127.0.0.1 {own_redis.port} 1\n"
    )
    process = subprocess.Popen(
        [binary("redis-server"), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def knows_master() -> bool:
        try:
            sentinel = redis.Redis(port=port, socket_timeout=0.2)
            return (
                sentinel.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "get-master-addr-by-name", "main"
                )
                is not None
            )
        except redis.RedisError:
            return False

    block_until(knows_master, "sentinel", STARTUP_DEADLINE)
    yield port
    process.terminate()
    process.wait()


async def test_limits_through_sentinel_land_on_the_master(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    own_redis: RedisProcess,
    sentinel_port: int,
    token: TokenFactory,
) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/main"
    assert await two_deletes_at_one_per_minute(make_gateway, scripted[1], url, token) == (204, 413)
    master = redis.Redis.from_url(own_redis.url)
    assert master.zcard(COUNTED_KEY) == 1


def _master_port(sentinel: redis.Redis) -> int:
    # SENTINEL MASTERS, which redis-py's Sentinel reads, names the new master
    # only once the failover has ended (get-master-addr-by-name does earlier).
    master = sentinel.sentinel_master("main")
    assert isinstance(master, dict)
    return int(master["port"])


async def test_after_a_failover_limits_land_on_the_new_master(
    own_redis: RedisProcess, replica: RedisProcess, sentinel_port: int
) -> None:
    sentinel = redis.Redis(port=sentinel_port)

    def replica_ready() -> bool:
        # A replica Sentinel can promote: seen, linked to its master, and
        # reporting it (flags without "disconnected" or "s_down").
        replicas = sentinel.execute_command("SENTINEL", "replicas", "main")  # type: ignore[no-untyped-call]
        return any(r[b"flags"] == b"slave" and r[b"master-link-status"] == b"ok" for r in replicas)

    block_until(replica_ready, "sentinel to know the replica", STARTUP_DEADLINE)
    store = RedisStore(RedisConfig(url=f"redis+sentinel://127.0.0.1:{sentinel_port}/main"))
    check = LimitCheck(subject="project:p1", rule="deletes", limit=5, period=3600.0)
    try:
        assert (await store.acquire([check])).results[0].remaining == 4
        sentinel.execute_command("SENTINEL", "failover", "main")  # type: ignore[no-untyped-call]
        block_until(
            lambda: _master_port(sentinel) == replica.port, "the failover", STARTUP_DEADLINE
        )
        # What Sentinel does to the old master when it next looks at it (up to
        # ten seconds on), done now.
        redis.Redis(port=own_redis.port).replicaof("127.0.0.1", replica.port)
        # The kept connection is to the demoted master, which refuses the
        # script; the store finds the new master without failing the request.
        verdict = await store.acquire([check])
        assert verdict.allowed
        assert verdict.results[0].remaining == 3
        # Both admissions are on the new master: the first one replicated, the
        # second written there.
        assert redis.Redis(port=replica.port).zcard("igw:window:{project:p1}:deletes") == 2
    finally:
        await store.close()
