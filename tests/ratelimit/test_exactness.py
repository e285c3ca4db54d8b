"""Exactness across processes: four gateways on one Redis admit exactly the limit.

Four ``python -m gateway run`` processes, each on its own port, share one
Redis (standalone, then a three-node Cluster); 200 concurrent clients of one
project, spread over the four, meet a limit of 100 per minute; eight
uploaders of one project, spread over the four, meet one byte budget.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.demo_backend.image_store import IMAGES, add_image
from tests.support.byte_use import settled_use
from tests.support.gateway_config import config_data
from tests.support.gateway_process import GatewayFleet
from tests.support.redis_servers import Cluster
from tests.support.tokens import Keys, TokenFactory
from tests.support.upstreams import ImageDataBackend

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


# Byte budgets: eight uploaders of one project through the four gateways.

KiB, MiB = 1 << 10, 1 << 20
BUDGET = 8 * MiB
SLICE = 256 * KiB
UPLOADERS = 8
# Each uploads twice its share: the budget cannot hold them all, and since
# they go at once, each is cut part-way (none knows its length ahead).
UPLOAD = 2 * MiB


async def _blocks(count: int) -> Any:
    for _ in range(count):
        yield b"\x5a" * (32 * KiB)


async def _uploads_meet_one_budget(
    start: GatewayFleet,
    backend: ImageDataBackend,
    backend_url: str,
    keys: Keys,
    token: TokenFactory,
    redis_section: dict[str, Any],
) -> None:
    rule = {"name": "upload-bytes", "count": "bytes", "unit": "hour", "value": BUDGET}
    config = config_data(
        backend_url,
        keys,
        rate_limit={
            "store": "redis",
            "redis": {"timeout": 2, **redis_section},
            "byte_slice": SLICE,
            "rules": [rule],
        },
    )
    urls = await start(config, GATEWAYS)
    tok = token("project-a", "uploader", ["admin"])
    headers = {"X-Auth-Token": tok, "Content-Type": "application/octet-stream"}
    start_line = asyncio.Event()

    async def uploader(i: int, session: aiohttp.ClientSession) -> int:
        await start_line.wait()
        url = f"{urls[i % GATEWAYS]}/v2/images/{uuid.uuid4()}/file"
        try:
            async with session.put(url, data=_blocks(UPLOAD // (32 * KiB)), headers=headers) as r:
                await r.read()
                return r.status
        except aiohttp.ClientError:
            return 0  # cut while it was still sending: it could not be told

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        uploads = [asyncio.create_task(uploader(i, session)) for i in range(UPLOADERS)]
        start_line.set()
        async with asyncio.timeout(120):
            statuses = await asyncio.gather(*uploads)
        used = await settled_use(session, urls, tok)
    whole = [u for u in backend.uploads if u.whole]
    received = sum(u.received for u in backend.uploads)
    # An uploader that came once the budget was spent was refused before a byte went.
    assert len(backend.uploads) <= UPLOADERS
    # Never more than the budget, whichever gateway each byte went through,
    # and within a slice of it: the slices reserved and not moved came back.
    assert received <= used <= BUDGET
    assert used > BUDGET - SLICE
    # The uploads that were not cut arrived whole; the others never completed.
    assert all(u.received == UPLOAD for u in whole)
    assert statuses.count(204) == len(whole)
    assert set(statuses) <= {204, 413, 0}


async def test_four_processes_on_one_redis_hold_eight_uploaders_to_one_byte_budget(
    gateway_processes: GatewayFleet,
    image_backend: tuple[ImageDataBackend, str],
    keys: Keys,
    token: TokenFactory,
    redis_url: str,
) -> None:
    backend, url = image_backend
    await _uploads_meet_one_budget(gateway_processes, backend, url, keys, token, {"url": redis_url})


async def test_four_processes_on_a_redis_cluster_hold_eight_uploaders_to_one_byte_budget(
    gateway_processes: GatewayFleet,
    image_backend: tuple[ImageDataBackend, str],
    keys: Keys,
    token: TokenFactory,
    redis_cluster: Cluster,
) -> None:
    backend, url = image_backend
    section = {"cluster_nodes": redis_cluster.nodes, "key_prefix": f"bytes{uuid.uuid4().hex[:6]}"}
    await _uploads_meet_one_budget(gateway_processes, backend, url, keys, token, section)
