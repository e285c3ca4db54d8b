"""Exactness across processes: four gateways on one Redis admit exactly the limit.

Four ``python -m gateway run`` processes, each on its own port, share one
Redis (standalone, then a three-node Cluster); 200 concurrent clients of one
project, spread over the four, meet a limit of 100 per minute.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.demo_backend.image_store import IMAGES, add_image
from tests.ratelimit.conftest import GatewayFleet
from tests.support.gateway_config import config_data
from tests.support.redis_servers import Cluster
from tests.support.tokens import Keys, TokenFactory

CLIENTS = 200
LIMIT = 100
GATEWAYS = 4


async def _stampede(
    start: GatewayFleet,
    store_server: TestServer,
    store_app: web.Application,
    keys: Keys,
    token: TokenFactory,
    redis_section: dict[str, Any],
) -> None:
    rule = {
        "name": "deletes",
        "path": "^/(v2/)?images/",
        "methods": ["DELETE"],
        "unit": "minute",
        "value": LIMIT,
    }
    config = config_data(
        str(store_server.make_url("")).rstrip("/"),
        keys,
        rate_limit={"store": "redis", "redis": {"timeout": 2, **redis_section}, "rules": [rule]},
    )
    urls = await start(config, GATEWAYS)
    images = [add_image(store_app, owner="project-a") for _ in range(CLIENTS)]
    tokens = [token("project-a", f"user-{i}") for i in range(CLIENTS)]
    start_line = asyncio.Event()

    async def client(i: int, session: aiohttp.ClientSession) -> tuple[str, int]:
        await start_line.wait()
        url = f"{urls[i % GATEWAYS]}/v2/images/{images[i].id}"
        async with session.delete(url, headers={"X-Auth-Token": tokens[i]}) as response:
            return urls[i % GATEWAYS], response.status

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [asyncio.create_task(client(i, session)) for i in range(CLIENTS)]
        start_line.set()
        async with asyncio.timeout(60):
            results = await asyncio.gather(*clients)
    statuses = Counter(status for _, status in results)
    # Each process sees 50 requests, under the limit of 100: only a shared
    # count refuses any of them.
    assert statuses == {204: LIMIT, 413: CLIENTS - LIMIT}
    assert len(store_app[IMAGES]) == CLIENTS - LIMIT
    assert {url for url, _ in results} == set(urls)


async def test_four_processes_on_one_redis_admit_exactly_the_limit(
    gateway_processes: GatewayFleet,
    store_server: TestServer,
    store_app: web.Application,
    keys: Keys,
    token: TokenFactory,
    redis_url: str,
) -> None:
    await _stampede(gateway_processes, store_server, store_app, keys, token, {"url": redis_url})


async def test_four_processes_on_a_redis_cluster_admit_exactly_the_limit(
    gateway_processes: GatewayFleet,
    store_server: TestServer,
    store_app: web.Application,
    keys: Keys,
    token: TokenFactory,
    redis_cluster: Cluster,
) -> None:
    await _stampede(
        gateway_processes,
        store_server,
        store_app,
        keys,
        token,
        {"cluster_nodes": redis_cluster.nodes, "key_prefix": "exactness"},
    )
