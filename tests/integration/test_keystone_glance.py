"""A real Keystone token, password auth at a real Keystone, DELETE through the
gateway in front of real Glance: what an OpenStack user does, over plain HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.glance import Caller, Glance
from tests.integration.keystone import Keystone, User, keystone_section
from tests.integration.test_glance import GLANCE_POLICY
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory


def caller(user: User, roles: tuple[str, ...]) -> Caller:
    return Caller(user.project_id, user.id, roles)


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, glance: Glance, keystone: Keystone, gateway_service_user: User
) -> Client:
    return await make_gateway(
        glance.url,
        auth={"keystone": keystone_section(keystone, gateway_service_user)},
        authorization={"policy_file": str(GLANCE_POLICY)},
        rate_limit={
            "rules": [
                # A project's fourth delete in the hour is over the limit.
                {"name": "deletes", "routes": ["delete_image"], "unit": "hour", "value": 3},
            ]
        },
    )


async def delete(gateway: Client, token: str, image: str) -> Any:
    return await gateway.delete(f"/v2/images/{image}", headers={"X-Auth-Token": token})


async def test_a_member_deletes_its_projects_image(
    gateway: Client, glance: Glance, keystone: Keystone
) -> None:
    alice = keystone.create_user(keystone.create_project(), ("member", "reader"))
    image = await glance.create_image(caller(alice, ("member", "reader")))
    token = keystone.password_token(alice.name, alice.password, alice.project_name)
    response = await delete(gateway, token, image)
    assert response.status == 204, await response.text()
    assert not await glance.exists(image)


@pytest.mark.parametrize(
    ("who", "status", "fault"),
    [
        ("other project", 404, "itemNotFound"),
        ("reader", 403, "forbidden"),
        ("revoked", 401, "unauthorized"),
    ],
)
async def test_refused_and_the_image_stays(
    gateway: Client, glance: Glance, keystone: Keystone, who: str, status: int, fault: str
) -> None:
    project = keystone.create_project()
    owner = keystone.create_user(project, ("member", "reader"))
    image = await glance.create_image(caller(owner, ("member", "reader")))
    user = {
        "other project": lambda: keystone.create_user(keystone.create_project(), ("member",)),
        "reader": lambda: keystone.create_user(project, ("reader",)),
        "revoked": lambda: owner,
    }[who]()
    token = keystone.token_of(user)
    if who == "revoked":
        keystone.revoke(token)  # as `openstack token revoke` does
    await assert_fault(await delete(gateway, token, image), status, fault)
    assert await glance.exists(image)


async def test_over_the_limit_is_413_and_the_image_stays(
    gateway: Client, glance: Glance, keystone: Keystone
) -> None:
    alice = keystone.create_user(keystone.create_project(), ("member", "reader"))
    images = [await glance.create_image(caller(alice, ("member", "reader"))) for _ in range(4)]
    token = keystone.token_of(alice)
    for image in images[:3]:
        assert (await delete(gateway, token, image)).status == 204
    response = await delete(gateway, token, images[3])
    await assert_fault(response, 413, "overLimit")
    assert response.headers["Retry-After"]
    assert await glance.exists(images[3])
