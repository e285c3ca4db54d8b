"""The limiter's counts on /metrics: refusals by rule, shadow refusals, breaker openings."""

from __future__ import annotations

from aiohttp import web

from tests.support.observed import ObservedFactory, delete_new_image
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory

RULES = [
    {"name": "trial", "unit": "minute", "value": 1, "shadow": True},
    {"name": "deletes", "unit": "minute", "value": 2},
]


async def test_refusals_and_shadow_refusals_are_exported_by_rule(
    observe_standin: ObservedFactory, store_app: web.Application, token: TokenFactory
) -> None:
    observed = await observe_standin(rate_limit={"rules": RULES})
    statuses = [(await delete_new_image(observed, store_app, token())).status for _ in range(4)]
    assert statuses == [204, 204, 413, 413]
    rejections = "gateway_ratelimit_rejections_total"
    assert await observed.sample(rejections, rule="deletes") == 2
    assert await observed.sample(rejections, rule="trial") == 0
    # The shadow rule would have refused every request after its first,
    # whether or not an enforced rule refused it too.
    shadow = "gateway_ratelimit_shadow_rejections_total"
    assert await observed.sample(shadow, rule="trial") == 3
    assert await observed.sample("gateway_ratelimit_breaker_opened_total") == 0


async def test_breaker_openings_are_exported(
    observe_standin: ObservedFactory, store_app: web.Application, token: TokenFactory
) -> None:
    dead = {
        "url": f"redis://127.0.0.1:{free_port()}/0",
        "timeout": 0.2,
        "probe_interval": 60,
        "breaker_failures": 1,
    }
    observed = await observe_standin(
        rate_limit={"store": "redis", "redis": dead, "rules": RULES[1:]}
    )
    for _ in range(2):
        assert (await delete_new_image(observed, store_app, token())).status == 204
    # One failure opens the breaker; the next request does not ask Redis.
    assert await observed.sample("gateway_ratelimit_breaker_opened_total") == 1
    assert await observed.sample("gateway_ratelimit_fail_open_total") == 2
