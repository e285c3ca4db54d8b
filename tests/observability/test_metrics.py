"""Every metric, read from the admin listener's /metrics after real traffic.

The gateway runs in front of the stand-in store or a scripted upstream on
real sockets; the values asserted are exact counts of what each test sent.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY

from gateway.demo_backend.image_store import add_image
from gateway.observability.metrics import GatewayMetrics
from tests.support.faults import delete
from tests.support.observed import ObservedFactory, delete_new_image, sample_value
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream

DELETE_ROUTE = {"route": "delete_image", "method": "DELETE"}


async def test_requests_are_counted_by_route_method_status_and_decision(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    observed = await observe_standin(rate_limit=limiter_section)
    mine = add_image(store_app, owner="project-a")
    private = add_image(store_app, owner="project-b")
    assert (await delete(observed.gateway, mine.id, token())).status == 204
    assert (await delete(observed.gateway, private.id, token())).status == 404
    assert (await delete(observed.gateway, mine.id, None)).status == 401
    assert (await delete(observed.gateway, "not-a-uuid", token())).status == 400
    assert (await observed.gateway.put(f"/v2/images/{mine.id}")).status == 405

    exposition = await observed.metrics()

    def count(**labels: str) -> float:
        return sample_value(exposition, "gateway_requests_total", **labels)

    assert count(**DELETE_ROUTE, status="204", decision="forwarded") == 1
    assert count(**DELETE_ROUTE, status="404", decision="denied") == 1
    assert count(**DELETE_ROUTE, status="401", decision="unauthenticated") == 1
    assert count(**DELETE_ROUTE, status="400", decision="rejected") == 1
    assert count(route="none", method="PUT", status="405", decision="rejected") == 1
    assert count() == 5


async def test_latency_histograms_cover_every_request_and_the_upstream_alone(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    observed = await observe_standin()
    for _ in range(3):
        image = add_image(store_app, owner="project-a")
        assert (await delete(observed.gateway, image.id, token(roles=["admin"]))).status == 204
    assert (await delete(observed.gateway, image.id, None)).status == 401

    whole = "gateway_request_duration_seconds"
    upstream = "gateway_upstream_duration_seconds"
    assert await observed.sample(f"{whole}_count", **DELETE_ROUTE) == 4
    # Only the three forwarded requests reached the backend.
    assert await observed.sample(f"{upstream}_count", **DELETE_ROUTE) == 3
    upstream_sum = await observed.sample(f"{upstream}_sum", **DELETE_ROUTE)
    assert 0 < upstream_sum < await observed.sample(f"{whole}_sum", **DELETE_ROUTE)
    assert await observed.sample(f"{whole}_bucket", le="+Inf", **DELETE_ROUTE) == 4


async def test_limiter_decisions_count_allowed_and_limited(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    rules = [{"name": "tight", "path": "^/(v2/)?images/", "unit": "minute", "value": 2}]
    observed = await observe_standin(rate_limit={**limiter_section, "rules": rules})
    statuses = []
    for _ in range(3):
        image = add_image(store_app, owner="project-a")
        statuses.append((await delete(observed.gateway, image.id, token())).status)
    assert statuses == [204, 204, 413]
    assert await observed.sample("gateway_ratelimit_decisions_total", outcome="allowed") == 2
    assert await observed.sample("gateway_ratelimit_decisions_total", outcome="limited") == 1
    limited = {**DELETE_ROUTE, "status": "413", "decision": "limited"}
    assert await observed.sample("gateway_requests_total", **limited) == 1
    assert await observed.sample("gateway_ratelimit_fail_open_total") == 0


def dead_redis(failure_mode: str) -> dict[str, Any]:
    """A rate_limit section whose Redis nothing listens for."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    return {"store": "redis", "redis": {"url": url}, "failure_mode": failure_mode}


async def test_redis_down_fails_open_and_each_event_is_counted(
    observe_standin: ObservedFactory, store_app: web.Application, token: TokenFactory
) -> None:
    observed = await observe_standin(rate_limit=dead_redis("open"))
    for _ in range(2):
        assert (await delete_new_image(observed, store_app, token())).status == 204
    assert await observed.sample("gateway_ratelimit_fail_open_total") == 2
    # Counted in-process instead, and allowed.
    assert await observed.sample("gateway_ratelimit_decisions_total", outcome="allowed") == 2


async def test_redis_down_failing_closed_is_its_own_outcome(
    observe_standin: ObservedFactory, store_app: web.Application, token: TokenFactory
) -> None:
    observed = await observe_standin(rate_limit=dead_redis("closed"))
    assert (await delete_new_image(observed, store_app, token())).status == 503
    assert await observed.sample("gateway_ratelimit_decisions_total", outcome="unavailable") == 1
    assert await observed.sample("gateway_ratelimit_fail_open_total") == 0
    refused = {**DELETE_ROUTE, "status": "503", "decision": "limiter_unavailable"}
    assert await observed.sample("gateway_requests_total", **refused) == 1
    assert await observed.sample("gateway_upstream_errors_total") == 0


async def test_token_cache_hits_and_misses(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    observed = await observe_standin()
    alice, bob = token(), token(user="bob")
    for tok in (alice, alice, alice, bob):
        image = add_image(store_app, owner="project-a")
        assert (await delete(observed.gateway, image.id, tok)).status == 204
    assert await observed.sample("gateway_token_cache_lookups_total", result="hit") == 2
    assert await observed.sample("gateway_token_cache_lookups_total", result="miss") == 2


async def test_upstream_errors_are_counted_by_kind(
    make_observed: ObservedFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
) -> None:
    upstream, url = scripted
    admin = token(roles=["admin"])  # no owner look-up: one backend call each
    image = "3f1a4f9e-5d8a-4c55-9a55-5d9b6f7c0a11"

    answering = await make_observed(url, upstream={"url": url, "read_timeout": 0.3})
    upstream.status, upstream.body = 500, b'{"message": "boom"}'
    assert (await delete(answering.gateway, image, admin)).status == 500
    upstream.status, upstream.hang = 204, True
    assert (await delete(answering.gateway, image, admin)).status == 503
    upstream.release.set()
    assert await answering.sample("gateway_upstream_errors_total", kind="http_5xx") == 1
    assert await answering.sample("gateway_upstream_errors_total", kind="timeout") == 1
    unavailable = {**DELETE_ROUTE, "status": "503", "decision": "upstream_unavailable"}
    assert await answering.sample("gateway_requests_total", **unavailable) == 1

    dead = f"http://127.0.0.1:{free_port()}"
    refused = await make_observed(dead)
    assert (await delete(refused.gateway, image, admin)).status == 503
    assert await refused.sample("gateway_upstream_errors_total", kind="connect") == 1
    assert await refused.sample("gateway_upstream_errors_total", kind="timeout") == 0


async def test_no_metric_lands_in_the_global_registry(
    observe_standin: ObservedFactory,
) -> None:
    await observe_standin()
    await observe_standin()
    names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("gateway_") for name in names)


def test_a_request_counts_its_labels_and_its_limiter_verdict_in_one_call() -> None:
    metrics = GatewayMetrics()
    for method, limiter in (("BREW", None), ("WHEN", "limited"), ("DELETE", "limited")):
        metrics.record_request(
            route=None,
            method=method,
            status=404,
            decision="rejected",
            seconds=0.001,
            upstream_seconds=None,
            limiter=limiter,
        )
    counters = metrics.snapshot().counters
    # Methods a client invents share one label, whatever it sends.
    assert counters["gateway_requests"] == {
        ("none", "OTHER", "404", "rejected"): 2.0,
        ("none", "DELETE", "404", "rejected"): 1.0,
    }
    assert counters["gateway_ratelimit_decisions"] == {("limited",): 2.0}
