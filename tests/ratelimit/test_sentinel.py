"""Redis through Sentinel: the gateway asks a real Sentinel where the master is."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import GatewayFactory, ScriptedUpstream, TokenFactory, free_port
from tests.ratelimit.conftest import COUNTED_KEY, two_deletes_at_one_per_minute
from tests.servers import STARTUP_DEADLINE, RedisProcess, binary, wait_until


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

    wait_until(knows_master, STARTUP_DEADLINE, "sentinel")
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
