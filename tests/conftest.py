"""Shared fixtures: real servers on free ports, real Redis, real keys.

The gateway under test talks over real sockets to the stand-in store (or to
a scripted upstream for fault cases) and, for the Redis limiter, to a
redis-server on a free port (tests/support/redis_servers.py, the suite's one
way to start Redis). A missing redis-server binary is an error, never a skip.
What the fixtures are built from lives in tests/support/.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.admin.app import build_admin_app, local_sources
from gateway.app import build_app
from gateway.config import GatewayConfig, parse_config
from gateway.demo_backend.image_store import create_standin_store_app
from gateway.ratelimit.store import LimitStore
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data, read_config
from tests.support.gateway_process import GatewayFleet, GatewayProcess, stop_all
from tests.support.observed import Observed, ObservedFactory
from tests.support.ports import free_port
from tests.support.redis_servers import (
    STARTUP_DEADLINE,
    Cluster,
    RedisProcess,
    binary,
    free_cluster_port,
)
from tests.support.tokens import Keys, TokenFactory, new_keys
from tests.support.upstreams import ImageDataBackend, ScriptedUpstream
from tests.support.waiting import block_until


@pytest.fixture(scope="session")
def keys() -> Keys:
    return new_keys()


@pytest.fixture
def token(keys: Keys) -> TokenFactory:
    return TokenFactory(keys)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the whole session; each test gets it empty."""
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    yield redis_server.url
    redis.Redis.from_url(redis_server.url).flushall()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server this test owns, to kill and start again."""
    server = RedisProcess(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def store_app() -> web.Application:
    return create_standin_store_app()


@pytest.fixture
async def store_server(store_app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(store_app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedUpstream, str]]:
    upstream = ScriptedUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield upstream, str(server.make_url("")).rstrip("/")
    upstream.release.set()
    await server.close()


@pytest.fixture
async def image_backend() -> AsyncIterator[tuple[ImageDataBackend, str]]:
    backend = ImageDataBackend()
    server = TestServer(backend.app(), host="127.0.0.1")
    await server.start_server()
    yield backend, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def make_gateway(
    aiohttp_client: Callable[..., Awaitable[Client]], keys: Keys
) -> GatewayFactory:
    """Builds a gateway client in front of ``upstream_url`` with config overrides."""

    async def make(
        upstream_url: str, *, store: LimitStore | None = None, **sections: Any
    ) -> Client:
        config: GatewayConfig = parse_config(config_data(upstream_url, keys, **sections))
        return await aiohttp_client(build_app(config, store=store))

    return make


@pytest.fixture(params=["memory", "redis"])
def limiter_section(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The rate_limit section for each store, so tests run against both."""
    if request.param == "memory":
        return {"store": "memory"}
    url = request.getfixturevalue("redis_url")
    # A loaded test machine can keep Redis from answering within the shipped
    # timeout, and the limiter then fails open: these tests are not about that.
    return {"store": "redis", "redis": {"url": url, "timeout": 2}}


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, store_server: TestServer, limiter_section: dict[str, Any]
) -> Client:
    """The whole gateway in front of the stand-in store, per limiter store."""
    return await make_gateway(
        str(store_server.make_url("")).rstrip("/"), rate_limit=limiter_section
    )


@pytest.fixture
async def make_observed(
    aiohttp_client: Callable[..., Awaitable[Client]], keys: Keys
) -> ObservedFactory:
    """Builds a gateway and its admin listener in front of ``upstream_url``."""

    async def make(
        upstream_url: str, *, store: LimitStore | None = None, **sections: Any
    ) -> Observed:
        config = parse_config(config_data(upstream_url, keys, **sections))
        app = build_app(config, store=store)
        gateway = await aiohttp_client(app)
        admin = await aiohttp_client(build_admin_app(config.admin, local_sources(app)))
        return Observed(gateway, admin, app)

    return make


@pytest.fixture
def observe_standin(make_observed: ObservedFactory, store_server: TestServer) -> ObservedFactory:
    """An observed gateway in front of the stand-in store, with config overrides."""
    url = str(store_server.make_url("")).rstrip("/")

    async def make(**sections: Any) -> Observed:
        return await make_observed(url, **sections)

    return make


@pytest.fixture
async def gateway_pair(config_file: Path) -> AsyncIterator[list[str]]:
    """Two ``python -m gateway run`` processes of the test's ``config_file``, each on
    its own ports, sharing what the file shares (Redis); their URLs."""
    processes = []
    for _ in range(2):
        port = free_port()
        data = read_config(config_file)
        data["listen"] = {"host": "127.0.0.1", "port": port}
        data["admin"] = {"port": free_port()}
        processes.append(GatewayProcess.run(data, config_file.parent, f"gateway-{port}"))
    try:
        await asyncio.gather(*(process.start() for process in processes))
        yield [process.url for process in processes]
    finally:
        await stop_all(processes)


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
