"""Real Glance under gunicorn ``header_map=dangerous``, with ownership left to Glance.

gunicorn in that mode (as before version 22, and as wsgiref always does)
reads ``X_Roles`` as ``X-Roles`` and joins it with ours, so a client header
that reached Glance would make a project member an admin. The gateway's
policy here checks roles only and leaves ownership to the backend, as a
deployment may: only the header boundary stands between the spoof and Glance.
"""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.integration.glance import Caller, Glance, run_glance
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory

ALICE = Caller("project-a", "alice", ("member", "reader"))
BOB = Caller("project-b", "bob", ("member", "reader"))
SPOOF = {"X_Roles": "admin", "X_Project_Id": ALICE.project, "X_Tenant_Id": ALICE.project}


@pytest.fixture(scope="module")
def dangerous_glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glance]:
    yield from run_glance(
        tmp_path_factory.mktemp("glance-dangerous"), free_port(), ["--header-map", "dangerous"]
    )


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, dangerous_glance: Glance) -> Client:
    return await make_gateway(
        dangerous_glance.url, authorization={"rules": {"image:delete": "role:member"}}
    )


async def direct_delete(glance: Glance, image: str, caller: Caller) -> int:
    headers = {**caller.headers(), **SPOOF}
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{glance.url}/v2/images/{image}", headers=headers) as response,
    ):
        return response.status


async def test_underscore_identity_headers_do_not_make_a_member_admin(
    gateway: Client, dangerous_glance: Glance, token: TokenFactory
) -> None:
    # The danger is real: sent straight to this Glance, the spoof deletes
    # another project's image.
    victim = await dangerous_glance.create_image(ALICE)
    assert await direct_delete(dangerous_glance, victim, BOB) == 204
    assert not await dangerous_glance.exists(victim)

    image = await dangerous_glance.create_image(ALICE)
    headers = {"X-Auth-Token": token(BOB.project, BOB.user, list(BOB.roles)), **SPOOF}
    response = await gateway.delete(f"/v2/images/{image}", headers=headers)
    # Glance saw Bob as Bob: another project's private image is not found.
    await assert_fault(response, 404, "itemNotFound")
    assert await dangerous_glance.exists(image)
