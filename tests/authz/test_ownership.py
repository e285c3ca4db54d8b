"""Owner look-ups: cached, shared between concurrent requests, forgotten on delete."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.demo_backend.image_store import RECEIVED, add_image
from tests.support.gateway_app import Client
from tests.support.tokens import TokenFactory


def _gets(store_app: web.Application, image_id: str) -> int:
    return sum(
        1 for r in store_app[RECEIVED] if r.method == "GET" and r.path == f"/v2/images/{image_id}"
    )


async def test_concurrent_lookups_share_one_upstream_get(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-b", visibility="public")
    tok = token()
    responses = await asyncio.gather(
        *(
            gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
            for _ in range(20)
        )
    )
    assert {r.status for r in responses} == {403}
    assert _gets(store_app, image.id) == 1
    # Cached: a later request asks nobody.
    again = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    assert again.status == 403
    assert _gets(store_app, image.id) == 1


async def test_owner_is_forgotten_after_delete(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    tok = token()
    assert (
        await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    ).status == 204
    # Recreated under the same id by another project: the old owner must not stick.
    add_image(store_app, owner="project-b", image_id=image.id)
    response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": tok})
    assert response.status == 404
    assert _gets(store_app, image.id) == 2
