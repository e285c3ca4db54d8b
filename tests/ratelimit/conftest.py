"""Real Redis topologies and real gateway processes for the rate-limit tests.

Every server here is a real ``redis-server`` process on a free port (a
cluster of three, a Sentinel, one that a test kills and restarts), and the
gateways in the multi-process tests are ``python -m gateway run``
subprocesses. A missing binary fails the test, it never skips it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.conftest import GatewayFactory, TokenFactory, free_port
from tests.servers import STARTUP_DEADLINE, RedisProcess, binary, wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Cluster:
    ports: list[int]

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]


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
        [binary("redis-cli"), "--cluster", "create", *cluster.nodes,
         "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=STARTUP_DEADLINE,
    )  # fmt: skip

    def ready() -> bool:
        # redis-py parses CLUSTER INFO into a dict.
        infos = [redis.Redis(port=p).cluster("INFO") for p in cluster.ports]
        return all(info.get("cluster_state") == "ok" for info in infos)

    wait_until(ready, STARTUP_DEADLINE, "cluster_state:ok")
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


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def gateway_processes(tmp_path: Path) -> Iterator[Callable[[dict[str, Any], int], list[str]]]:
    """Starts ``n`` ``python -m gateway run`` processes, each on its own port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any], n: int) -> list[str]:
        ports = []
        for i in range(n):
            port = free_port()
            listen = {"host": "127.0.0.1", "port": port, "shutdown_timeout": 2}
            data = {**config, "listen": listen, "admin": {"enabled": False}}
            path = write_config(tmp_path / f"gateway-{i}.yaml", data)
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway", "run", "--config", str(path)], cwd=ROOT
                )
            )
            ports.append(port)
        for port, process in zip(ports, started[-n:], strict=True):
            wait_until(
                lambda p=port, proc=process: proc.poll() is None and _listening(p),  # type: ignore[misc]
                STARTUP_DEADLINE,
                f"gateway on {port}",
            )
        return [f"http://127.0.0.1:{port}" for port in ports]

    yield start
    for process in started:
        process.terminate()
    hung = []
    for process in started:
        try:
            process.wait(timeout=STARTUP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            hung.append(process.args)
    assert not hung, f"gateways ignored SIGTERM: {hung}"
