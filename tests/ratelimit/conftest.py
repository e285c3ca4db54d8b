"""Real Redis topologies and real gateway processes for the rate-limit tests.

Every server here is a real ``redis-server`` process on a free port (a
cluster of three, a Sentinel, one that a test kills and restarts), and the
gateways in the multi-process tests are ``python -m gateway run``
subprocesses. A missing binary fails the test, it never skips it.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.gateway_app import GatewayFactory
from tests.support.gateway_process import GatewayProcess, stop_all
from tests.support.ports import free_port
from tests.support.redis_servers import (
    STARTUP_DEADLINE,
    Cluster,
    RedisProcess,
    binary,
    free_cluster_port,
)
from tests.support.tokens import TokenFactory
from tests.support.waiting import block_until

# gateway_processes(config, n) -> the URLs of n gateways of that configuration
GatewayFleet = Callable[[dict[str, Any], int], Awaitable[list[str]]]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters, no replicas, every slot covered."""
    servers = []
    for _ in range(3):
        port = free_cluster_port()
        workdir = tmp_path_factory.mktemp(f"cluster-{port}")
        server = RedisProcess(
            port,
            workdir,
            ("--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf")),
        )
        server.start()
        servers.append(server)
    cluster = Cluster([s.port for s in servers])
    subprocess.run(
        [
            binary("redis-cli"),
            "--cluster",
            "create",
            *cluster.nodes,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
        timeout=STARTUP_DEADLINE,
    )

    def ready() -> bool:
        # redis-py parses CLUSTER INFO into a dict.
        infos = [redis.Redis(port=p).cluster("INFO") for p in cluster.ports]
        return all(info.get("cluster_state") == "ok" for info in infos)

    block_until(ready, "cluster_state:ok", STARTUP_DEADLINE)
    yield cluster
    for server in servers:
        server.stop()


COUNTED_KEY = "igw:window:{project:project-a}:deletes"


async def two_deletes_at_one_per_minute(
    make_gateway: GatewayFactory, upstream_url: str, redis_url: str, token: TokenFactory
) -> tuple[int, int]:
    """Statuses of two deletes by one project through a gateway on this Redis URL."""
    client = await make_gateway(
        upstream_url,
        rate_limit={
            "store": "redis",
            "redis": {"url": redis_url, "timeout": 1},
            "rules": [{"name": "deletes", "unit": "minute", "value": 1}],
        },
    )
    tok = token(roles=["admin"])
    statuses = []
    for _ in range(2):
        response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": tok})
        statuses.append(response.status)
    return statuses[0], statuses[1]


@pytest.fixture
async def gateway_processes(tmp_path: Path) -> AsyncIterator[GatewayFleet]:
    """Starts ``n`` ``python -m gateway run`` processes, each on its own port."""
    started: list[GatewayProcess] = []

    async def start(config: dict[str, Any], n: int) -> list[str]:
        fleet = []
        for i in range(n):
            listen = {"host": "127.0.0.1", "port": free_port(), "shutdown_timeout": 2}
            data = {**config, "listen": listen, "admin": {"enabled": False}}
            fleet.append(GatewayProcess.run(data, tmp_path, f"gateway-{len(started) + i}"))
        started.extend(fleet)
        await asyncio.gather(*(process.start() for process in fleet))
        return [process.url for process in fleet]

    yield start
    await stop_all(started)
