"""The rate-limit step when Redis is gone: fail open by default, 503 by option."""

from __future__ import annotations

import logging
import re
import uuid
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
from tests.support.upstreams import ImageDataBackend


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


# Byte rules: the upload's reservation is made here, before the chain goes on.

UPLOAD_BYTES = {
    "name": "upload-bytes",
    "count": "bytes",
    "unit": "hour",
    "value": "1MiB",
    "routes": ["upload_image"],
}


def _upload(client: Client, tok: str, data: bytes, image: str | None = None) -> Any:
    return client.put(
        f"/v2/images/{image or uuid.uuid4()}/file",
        data=data,
        headers={"X-Auth-Token": tok, "Content-Type": "application/octet-stream"},
    )


async def test_request_and_byte_rules_are_both_in_the_headers(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    uploads = {"name": "uploads", "routes": ["upload_image"], "unit": "minute", "value": 10}
    rules = [uploads, UPLOAD_BYTES]
    client = await make_gateway(image_backend[1], rate_limit={**limiter_section, "rules": rules})
    response = await _upload(client, token(roles=["admin"]), b"x" * 1000)
    assert response.status == 204
    assert response.headers["RateLimit-Policy"] == (
        '"uploads";q=10;w=60, "upload-bytes";q=1048576;qu="content-bytes";w=3600'
    )
    # The tightest of each kind.
    assert re.fullmatch(
        r'"uploads";r=9;t=60, "upload-bytes";r=1047576;t=360\d', response.headers["RateLimit"]
    )


async def test_an_upload_over_budget_is_refused_before_authorization_looks_up_its_owner(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    client = await make_gateway(
        _url(store_server), rate_limit={**limiter_section, "rules": [UPLOAD_BYTES]}
    )
    image = add_image(store_app, owner="project-a")
    response = await _upload(client, token(), b"x" * (2 << 20), image.id)
    await assert_fault(response, 413, "overLimit")
    # No owner look-up, nothing forwarded.
    assert len(store_app[RECEIVED]) == 0


async def test_a_byte_reservation_with_redis_down_follows_the_failure_mode(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
) -> None:
    backend, url = image_backend
    tok = token(roles=["admin"])
    open_ = await make_gateway(url, rate_limit=_dead_redis(rules=[UPLOAD_BYTES]))
    # Counted in this process instead: 600 KiB fit once, not twice.
    assert (await _upload(open_, tok, b"x" * (600 << 10))).status == 204
    await assert_fault(await _upload(open_, tok, b"x" * (600 << 10)), 413, "overLimit")
    assert open_.app is not None
    assert open_.app[GATEWAY].limiter.fail_open_events == 2
    closed = await make_gateway(
        url, rate_limit=_dead_redis(rules=[UPLOAD_BYTES], failure_mode="closed")
    )
    body = await assert_fault(await _upload(closed, tok, b"x" * 1000), 503, "serviceUnavailable")
    assert "Rate limiting" in body["details"]
    assert [u.received for u in backend.uploads] == [600 << 10]


async def test_a_global_byte_rule_over_budget_is_503(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    everyone = {**UPLOAD_BYTES, "by": "global"}
    client = await make_gateway(
        image_backend[1], rate_limit={**limiter_section, "rules": [everyone]}
    )
    assert (await _upload(client, token("p1", roles=["admin"]), b"x" * (600 << 10))).status == 204
    response = await _upload(client, token("p2", roles=["admin"]), b"x" * (600 << 10))
    body = await assert_fault(response, 503, "serviceUnavailable")
    assert body["details"].startswith("A global byte limit is reached.")
    assert "Retry-After" in response.headers


async def test_a_route_no_byte_rule_counts_opens_no_account(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
) -> None:
    client = await make_gateway(image_backend[1], rate_limit={"rules": [UPLOAD_BYTES]})
    assert client.app is not None
    limiter = client.app[GATEWAY].limiter
    # Worked out at start-up: only the routes the rule names.
    assert set(limiter.byte_rules) == {"upload_image"}
    response = await client.put(
        f"/v2/images/{uuid.uuid4()}/stage",
        data=b"x" * (2 << 20),
        headers={
            "X-Auth-Token": token(roles=["admin"]),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status == 204
    assert "RateLimit" not in response.headers
