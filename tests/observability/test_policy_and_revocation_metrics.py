"""Shadow policy refusals and revocation-list syncs on /metrics."""

from __future__ import annotations

import redis
from aiohttp import web

from tests.support.observed import ObservedFactory, delete_new_image
from tests.support.tokens import TokenFactory
from tests.support.waiting import seconds_until
from tests.test_policy_language import RACKSPACE


async def test_shadow_policy_refusals_are_exported_by_rule(
    observe_standin: ObservedFactory, store_app: web.Application, token: TokenFactory
) -> None:
    rule = {"check": RACKSPACE["delete_image"], "shadow": True}
    observed = await observe_standin(authorization={"rules": {"delete_image": rule}})
    observer = token(roles=["cloudImages:observer"])
    assert (await delete_new_image(observed, store_app, observer)).status == 204
    assert (await delete_new_image(observed, store_app, observer)).status == 204
    assert (await delete_new_image(observed, store_app, token())).status == 204
    name = "gateway_policy_shadow_refusals_total"
    assert await observed.sample(name, rule="delete_image") == 2


async def test_revocation_resyncs_and_failures_are_exported(
    observe_standin: ObservedFactory,
    store_app: web.Application,
    token: TokenFactory,
    redis_url: str,
) -> None:
    observed = await observe_standin(revocation={"store": "redis", "redis": {"url": redis_url}})
    tok = token()
    assert (await delete_new_image(observed, store_app, tok)).status == 204
    assert await observed.sample("gateway_revocation_resyncs_total") == 1
    assert await observed.sample("gateway_revocation_failures_total") == 0
    # Drop the subscription: the follower notices, reconnects and resyncs.
    assert redis.Redis.from_url(redis_url).client_kill_filter(_type="pubsub") == 1

    async def resynced() -> bool:
        await delete_new_image(observed, store_app, tok)
        return await observed.sample("gateway_revocation_resyncs_total") >= 2

    await seconds_until(resynced, "the resync", deadline=5.0)
    assert await observed.sample("gateway_revocation_failures_total") >= 1
