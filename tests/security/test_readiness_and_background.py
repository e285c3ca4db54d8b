"""Readiness tells the truth, background tasks outlive any exception, metrics are
exact on an idle gateway, and one caller going away costs the others nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.authn.jwks import JwksKeySet
from gateway.authn.revocation import RedisRevocationStore
from gateway.authz.ownership import ImageOwners
from gateway.config import JwksConfig, RedisConfig, UpstreamConfig
from gateway.http.upstream import UpstreamClient
from gateway.observability.readiness import RevocationSynced
from tests.authn.test_jwks import serving
from tests.support.gateway_process import GatewayProcess
from tests.support.observed import ObservedFactory
from tests.support.ports import free_port
from tests.support.tokens import Keys
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import until


async def test_a_worker_without_keys_makes_the_supervisor_unready(
    keys: Keys, tmp_path: Path
) -> None:
    """Two workers, one issuer known only by a JWKS nobody serves: the supervisor
    counts no configured key, it asks the workers, and they have none."""
    port, admin_port = free_port(), free_port()
    data: dict[str, Any] = {
        "upstream": {"url": "http://127.0.0.1:1"},
        "auth": {
            "issuer": "https://idp",
            "audience": "a",
            "jwks": {"url": f"http://127.0.0.1:{free_port()}/jwks", "timeout": 0.5},
        },
        "listen": {"host": "127.0.0.1", "port": port, "workers": 2, "shutdown_timeout": 2},
        "admin": {"port": admin_port},
    }
    process = await GatewayProcess.run(data, tmp_path).start()
    try:
        async with aiohttp.ClientSession() as session:

            async def reported() -> dict[str, Any] | None:
                try:
                    async with session.get(f"http://127.0.0.1:{admin_port}/readyz") as r:
                        report: dict[str, Any] = await r.json()
                except aiohttp.ClientError:
                    return None
                checks = report["checks"]
                waiting = "no report yet" in checks["worker_checks"]["detail"]
                return None if waiting else report

            report = await until(reported, "both workers to report")
        assert report["ready"] is False
        detail = report["checks"]["worker_checks"]["detail"]
        assert report["checks"]["worker_checks"]["ok"] is False
        assert detail.count("keys: 0 verification key(s) loaded") == 2, detail
    finally:
        await process.stop()


async def test_revocations_not_synced_fail_their_check(redis_url: str) -> None:
    # Whether that fails readiness is revocation.failure_mode's (tests/observability).
    dead = RedisRevocationStore(RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
    await dead.open()
    try:
        result = await RevocationSynced(dead)()
        assert not result.ok
        assert "not synced" in result.detail
    finally:
        await dead.close()
    live = RedisRevocationStore(RedisConfig(url=redis_url))
    await live.open()
    try:
        assert (await RevocationSynced(live)()).ok
    finally:
        await live.close()


@pytest.fixture
async def nested_jwks() -> AsyncIterator[tuple[dict[str, bool], str]]:
    """A key server that sends JSON nested past the recursion limit, until told not to."""
    state = {"hostile": True}
    async with serving("k1") as good:

        async def handle(request: web.Request) -> web.StreamResponse:
            if state["hostile"]:
                return web.Response(
                    body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json"
                )
            async with aiohttp.ClientSession() as session, session.get(good.url) as r:
                return web.json_response(await r.json())

        app = web.Application()
        app.router.add_get("/jwks", handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        yield state, str(server.make_url("/jwks"))
        await server.close()


async def test_the_jwks_refresher_survives_a_hostile_key_set(
    nested_jwks: tuple[dict[str, bool], str],
) -> None:
    state, url = nested_jwks
    key_set = JwksKeySet(JwksConfig(url=url, cache_ttl=0.05, max_bytes=1_000_000))
    await key_set.open()  # start-up goes on
    try:
        assert key_set.key_count == 0
        assert key_set.fetch_failures >= 1
        state["hostile"] = False
        await until(lambda: key_set.key_count == 1, "the refresher to load the keys")
    finally:
        await key_set.close()


async def test_counts_reach_metrics_on_an_idle_gateway(
    make_observed: ObservedFactory, redis_url: str, scripted: tuple[ScriptedUpstream, str]
) -> None:
    rule = {"name": "deletes", "unit": "minute", "value": 10}
    observed = await make_observed(
        scripted[1],
        rate_limit={
            "store": "redis",
            "redis": {"url": redis_url, "overrides_refresh": 0.05},
            "rules": [rule],
        },
    )
    redis.Redis.from_url(redis_url).hset("igw:overrides", "deletes|p", "-1")

    async def counted() -> bool:
        return await observed.sample("gateway_ratelimit_overrides_refused_total") == 1

    # No request goes to the gateway: the count must get there on its own.
    await until(counted, "the refused override on /metrics")


async def test_a_cancelled_owner_look_up_leaves_the_others_their_answer(
    scripted: tuple[ScriptedUpstream, str],
) -> None:
    upstream, url = scripted
    upstream.status, upstream.hang = 200, True
    upstream.body = json.dumps({"owner": "project-a", "visibility": "private"}).encode()
    config = UpstreamConfig(url=url, read_timeout=10)
    client = UpstreamClient(config)
    await client.open()
    try:
        owners = ImageOwners(client, config)
        image = str(uuid.uuid4())
        first = asyncio.create_task(owners.record(image, "req-1"))
        second = asyncio.create_task(owners.record(image, "req-2"))
        await until(lambda: upstream.received, "the look-up to reach the backend")
        first.cancel()
        upstream.release.set()
        record = await asyncio.wait_for(second, 10)
        assert record is not None
        assert record.owner == "project-a"
        assert first.cancelled()
        assert len(upstream.received) == 1
    finally:
        await client.close()
