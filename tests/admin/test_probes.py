"""/healthz, /readyz (each dependency separately) and readiness on shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.admin.app import build_admin_app, local_sources
from gateway.app import build_app
from gateway.config import ConfigError, parse_config
from gateway.runtime.server import start_site
from tests.support.gateway_config import config_data
from tests.support.observed import ObservedFactory
from tests.support.ports import free_port
from tests.support.tokens import Keys, TokenFactory


async def readyz(observed_admin: Any) -> tuple[int, dict[str, Any]]:
    response = await observed_admin.get("/readyz")
    return response.status, await response.json()


async def test_healthz_answers_while_the_process_lives(
    observe_standin: ObservedFactory,
) -> None:
    observed = await observe_standin()
    response = await observed.admin.get("/healthz")
    assert response.status == 200
    assert (await response.json())["alive"] is True


async def test_readyz_reports_each_dependency(
    observe_standin: ObservedFactory, redis_url: str
) -> None:
    observed = await observe_standin(rate_limit={"store": "redis", "redis": {"url": redis_url}})
    status, body = await readyz(observed.admin)
    assert status == 200
    assert body["ready"] is True
    assert (body["status"], body["draining"]) == ("ready", False)
    assert set(body["checks"]) == {"config", "keys", "upstream", "redis"}
    assert all(check["ok"] for check in body["checks"].values())
    assert {check["status"] for check in body["checks"].values()} == {"ok"}
    assert body["checks"]["keys"]["detail"] == "3 verification key(s) loaded"


async def test_readyz_without_redis_has_no_redis_check(
    observe_standin: ObservedFactory,
) -> None:
    observed = await observe_standin()
    status, body = await readyz(observed.admin)
    assert status == 200
    assert set(body["checks"]) == {"config", "keys", "upstream"}


async def test_redis_down_failing_open_is_degraded_and_ready(
    observe_standin: ObservedFactory,
) -> None:
    """Every replica shares the Redis: its outage must not make them all unready."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    observed = await observe_standin(rate_limit={"store": "redis", "redis": {"url": dead}})
    status, body = await readyz(observed.admin)
    assert status == 200
    assert (body["ready"], body["status"]) == (True, "degraded")
    redis_check = body["checks"]["redis"]
    assert (redis_check["ok"], redis_check["status"]) == (False, "degraded")
    assert "Connection" in redis_check["detail"]
    assert body["checks"]["upstream"]["status"] == "ok"


@pytest.mark.parametrize(
    "sections",
    [
        {"rate_limit": {"failure_mode": "closed"}},
        {"admin": {"readiness": {"required": ["redis"]}}},
    ],
    ids=["failure_mode-closed", "required"],
)
async def test_redis_down_is_not_ready_when_failing_closed_or_required(
    observe_standin: ObservedFactory, sections: dict[str, Any]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    rate_limit = {"store": "redis", "redis": {"url": dead}, **sections.get("rate_limit", {})}
    observed = await observe_standin(rate_limit=rate_limit, admin=sections.get("admin", {}))
    status, body = await readyz(observed.admin)
    assert status == 503
    assert (body["ready"], body["status"]) == (False, "unready")
    assert body["checks"]["redis"]["status"] == "failed"
    assert body["checks"]["upstream"]["status"] == "ok"


async def test_upstream_down_is_not_ready_and_says_so(make_observed: ObservedFactory) -> None:
    observed = await make_observed(f"http://127.0.0.1:{free_port()}")
    status, body = await readyz(observed.admin)
    assert status == 503
    assert body["checks"]["upstream"]["ok"] is False
    assert "ConnectError" in body["checks"]["upstream"]["detail"]
    assert body["checks"]["config"]["ok"] is True


async def test_readiness_goes_false_before_in_flight_requests_finish(
    keys: Keys, token: TokenFactory
) -> None:
    # A backend that is up (its root answers) but holds one delete open.
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_delete(_request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(status=204)

    backend_app = web.Application()
    backend_app.router.add_get("/", versions)
    backend_app.router.add_delete("/v2/images/{image_id}", slow_delete)
    backend = await start_site(backend_app, "127.0.0.1", 0)
    backend_url = f"http://127.0.0.1:{backend.addresses[0][1]}"

    config = parse_config(config_data(backend_url, keys))
    app = build_app(config)
    proxy = await start_site(app, "127.0.0.1", 0, shutdown_timeout=5)
    admin = await start_site(build_admin_app(config.admin, local_sources(app)), "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxy.addresses[0][1]}"
    readyz_url = f"http://127.0.0.1:{admin.addresses[0][1]}/readyz"
    image = "0b6f3c52-0d55-4e0c-9a43-0b3c5e1f2a77"
    async with aiohttp.ClientSession() as client:
        assert (await client.get(readyz_url)).status == 200
        in_flight = asyncio.ensure_future(
            client.delete(
                f"{proxy_url}/v2/images/{image}", headers={"X-Auth-Token": token(roles=["admin"])}
            )
        )
        await asyncio.wait_for(arrived.wait(), 5)

        shutting_down = asyncio.ensure_future(proxy.cleanup())
        ready = await poll_until_unready(client, readyz_url)
        assert (await ready.json())["draining"] is True
        # Still draining: the request that was already here is not cut off.
        assert not in_flight.done()
        assert not shutting_down.done()
        release.set()
        response = await in_flight
        assert response.status == 204
        await asyncio.wait_for(shutting_down, 5)
    await admin.cleanup()
    await backend.cleanup()


async def versions(_request: web.Request) -> web.Response:
    return web.json_response({"versions": []})


async def poll_until_unready(client: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        response = await client.get(url)
        if response.status == 503:
            return response
        assert asyncio.get_running_loop().time() < deadline, "readiness never went false"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"admin": {"token": "short"}}, r"admin\.token: must be at least 16 characters"),
        ({"admin": {"port": 8080}}, r"admin\.port must differ from listen\.port"),
        ({"admin": {"port": 70000}}, r"admin\.port: Input should be less than or equal"),
        ({"admin": {"refresh": 1}}, r"admin\.refresh: Extra inputs are not permitted"),
        ({"logging": {"format": "xml"}}, r"logging\.format: Input should be 'json' or 'text'"),
    ],
)
def test_bad_admin_config_names_the_key(keys: Keys, section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_data("http://127.0.0.1:9292", keys, **section))


def test_the_admin_app_of_a_worker_is_refused(keys: Keys, tmp_path: Any) -> None:
    from gateway.observability.feed import SocketFeed

    config = parse_config(config_data("http://127.0.0.1:9292", keys))
    app = build_app(config, feed=SocketFeed(tmp_path / "feed.sock"))
    with pytest.raises(ValueError, match="another process"):
        local_sources(app)


async def test_admin_listener_is_not_reachable_through_the_proxy(
    observe_standin: ObservedFactory,
) -> None:
    observed = await observe_standin()
    for path in ("/healthz", "/readyz", "/metrics", "/api/decisions"):
        response = await observed.gateway.get(path)
        assert response.status == 404
        assert list(await response.json()) == ["itemNotFound"]
