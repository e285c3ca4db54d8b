"""The rate-limit step when Redis is gone: fail open by default, 503 by option."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import GATEWAY
from gateway.demo_backend.image_store import RECEIVED, add_image
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory


def _url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def limited(
    make_gateway: GatewayFactory, store_server: TestServer, limiter_section: dict[str, Any]
) -> Callable[[list[dict[str, Any]]], Awaitable[Client]]:
    """A gateway with these rules, on each limiter store."""

    def make(rules: list[dict[str, Any]]) -> Awaitable[Client]:
        return make_gateway(_url(store_server), rate_limit={**limiter_section, "rules": rules})

    return make


def _dead_redis(**extra: Any) -> dict[str, Any]:
    rule = {"name": "deletes", "unit": "minute", "value": 2}
    return {
        "store": "redis",
        "redis": {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 0.2},
        "rules": [rule],
        **extra,
    }


async def test_redis_down_fails_open_and_counts_locally(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_gateway(_url(store_server), rate_limit=_dead_redis())
    tok = token()
    statuses = []
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        for _ in range(3):
            image = add_image(store_app, owner="project-a")
            response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
            statuses.append(response.status)
    # The in-process fallback still enforces the limit in this process.
    assert statuses == [204, 204, 413]
    assert client.app is not None
    assert client.app[GATEWAY].limiter.fail_open_events == 3
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1, "logged once per interval, not once per request"


async def test_redis_down_fails_closed_with_503_by_option(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    client = await make_gateway(_url(store_server), rate_limit=_dead_redis(failure_mode="closed"))
    image = add_image(store_app, owner="project-a")
    response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": token()})
    body = await assert_fault(response, 503, "serviceUnavailable")
    assert "Rate limiting" in body["details"]
    assert len(store_app[RECEIVED]) == 0


async def test_limits_count_the_project_not_the_user(
    limited: Callable[[list[dict[str, Any]]], Awaitable[Client]],
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    client = await limited([{"name": "deletes", "unit": "minute", "value": 1}])
    first = add_image(store_app, owner="project-a")
    second = add_image(store_app, owner="project-a")
    alice, carol = token(user="alice"), token(user="carol")
    ok = await client.delete(f"/v2/images/{first.id}", headers={"X-Auth-Token": alice})
    assert ok.status == 204
    refused = await client.delete(f"/v2/images/{second.id}", headers={"X-Auth-Token": carol})
    await assert_fault(refused, 413, "overLimit")


async def test_tightest_rule_sets_retry_after_and_headers(
    limited: Callable[[list[dict[str, Any]]], Awaitable[Client]],
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    rules = [
        {"name": "per-minute", "unit": "minute", "value": 1},
        {"name": "per-hour", "unit": "hour", "value": 1},
        {"name": "other-route", "path": "^/nothing", "unit": "second", "value": 1},
    ]
    client = await limited(rules)
    tok = token()
    image = add_image(store_app, owner="project-a")
    ok = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    assert ok.headers["RateLimit-Policy"] == '"per-minute";q=1;w=60, "per-hour";q=1;w=3600'
    assert ok.headers["RateLimit"].startswith('"per-hour";r=0;t=')
    image = add_image(store_app, owner="project-a")
    refused = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    await assert_fault(refused, 413, "overLimit")
    # The hour-long limit is the one that decides when to come back.
    assert 3000 < int(refused.headers["Retry-After"]) <= 3600


async def test_ratelimit_reset_is_rounded_up_never_down(
    limited: Callable[[list[dict[str, Any]]], Awaitable[Client]],
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    """The window of a request counted a moment ago resets in just under an hour:
    ``t=`` says 3600, so that a client waiting ``t`` seconds finds the place free."""
    client = await limited([{"name": "per-hour", "unit": "hour", "value": 5}])
    tok = token()
    seen = []
    for remaining in (4, 3):
        image = add_image(store_app, owner="project-a")
        response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
        assert response.status == 204
        seen.append(response.headers["RateLimit"])
        assert response.headers["RateLimit"] == f'"per-hour";r={remaining};t=3600'
    assert len(seen) == 2
