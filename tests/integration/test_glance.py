"""The gateway in front of real OpenStack Glance.

The gateway runs Glance's own default rule for deleting an image, from a
policy file; tokens carry the roles Glance's defaults want (member, reader).
Where the gateway refuses, Glance asked directly with the same identity
refuses the same way: the two policies agree, and the gateway answers
without the DELETE reaching Glance.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientResponse

from gateway.app import GATEWAY
from tests.integration.glance import ADMIN, Caller, Glance
from tests.support import REPO
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory

# Glance's default (enforce_new_defaults) for delete_image, in the gateway's language.
GLANCE_POLICY = REPO / "config" / "glance-policy.yaml"

ALICE = Caller("project-a", "alice", ("member", "reader"))
BOB = Caller("project-b", "bob", ("member", "reader"))
OLIVIA = Caller("project-a", "olivia", ("reader",))


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, glance: Glance) -> Client:
    return await make_gateway(glance.url, authorization={"policy_file": str(GLANCE_POLICY)})


def token_of(token: TokenFactory, caller: Caller) -> str:
    return token(caller.project, caller.user, list(caller.roles))


async def delete(
    gateway: Client, token: TokenFactory, caller: Caller, image_id: str, **headers: str
) -> ClientResponse:
    headers["X-Auth-Token"] = token_of(token, caller)
    return await gateway.delete(f"/v2/images/{image_id}", headers=headers)


@pytest.mark.parametrize(
    ("owner", "deleter"), [(ALICE, ALICE), (BOB, ADMIN)], ids=["owner", "global admin"]
)
async def test_delete_then_the_image_is_gone(
    gateway: Client, glance: Glance, token: TokenFactory, owner: Caller, deleter: Caller
) -> None:
    image = await glance.create_image(owner)
    response = await delete(gateway, token, deleter, image)
    assert response.status == 204, await response.text()
    assert not await glance.exists(image)
    again = await delete(gateway, token, deleter, image)
    await assert_fault(again, 404, "itemNotFound")


@pytest.mark.parametrize(
    ("caller", "visibility", "status", "fault"),
    [
        (BOB, "private", 404, "itemNotFound"),
        (BOB, "shared", 403, "forbidden"),
        (OLIVIA, "private", 403, "forbidden"),
    ],
    ids=["other project, private", "other project, shared with it", "observer (reader only)"],
)
async def test_refusals_agree_with_glance(
    gateway: Client,
    glance: Glance,
    token: TokenFactory,
    caller: Caller,
    visibility: str,
    status: int,
    fault: str,
) -> None:
    image = await glance.create_image(ALICE, visibility=visibility)
    if visibility == "shared":
        await glance.share(image, ALICE, BOB.project)
    response = await delete(gateway, token, caller, image)
    await assert_fault(response, status, fault)
    assert await glance.exists(image)
    glance_status, _ = await glance.request("DELETE", f"/v2/images/{image}", caller)
    assert glance_status == status, "Glance's own policy decides the same"
    assert await glance.exists(image)


async def test_protected_image_is_refused_by_glance(
    gateway: Client, glance: Glance, token: TokenFactory
) -> None:
    image = await glance.create_image(ALICE, protected=True)
    response = await delete(gateway, token, ALICE, image)
    body = await assert_fault(response, 403, "forbidden")
    assert "protected" in body["message"].lower()
    assert await glance.exists(image)


async def test_spoofed_identity_headers_never_arrive(
    gateway: Client, glance: Glance, token: TokenFactory
) -> None:
    image = await glance.create_image(ALICE)
    spoofed = {
        "X-Roles": "admin",
        "X-Project-Id": ALICE.project,
        "X-Tenant-Id": ALICE.project,
        "X-Identity-Status": "Confirmed",
        "X-User-Id": "alice",
    }
    response = await delete(gateway, token, BOB, image, **spoofed)
    await assert_fault(response, 404, "itemNotFound")
    assert await glance.exists(image)
    # Had the headers arrived, Glance would have obeyed them:
    as_spoofed = Caller(ALICE.project, "alice", ("admin",))
    status, _ = await glance.request("DELETE", f"/v2/images/{image}", as_spoofed)
    assert status == 204


def test_explain_against_glance_forwards_nothing(
    glance: Glance, keys: Keys, token: TokenFactory, tmp_path: Path
) -> None:
    """`explain` looks the owner up in Glance read-only and leaves the image alone."""
    image = asyncio.run(glance.create_image(ALICE))
    config = tmp_path / "gateway.yaml"
    data = config_data(glance.url, keys, authorization={"policy_file": str(GLANCE_POLICY)})
    config.write_text(yaml.safe_dump(data))

    def explain(caller: Caller) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "explain",
                "--config",
                str(config),
                "--token",
                token_of(token, caller),
                "DELETE",
                f"/v2/images/{image}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )

    bob = explain(BOB)
    assert bob.returncode == 1, bob.stderr
    assert "authorization   STOP  404: rule delete_image" in bob.stdout
    assert "belongs to project project-a, visibility private" in bob.stdout
    alice = explain(ALICE)
    assert alice.returncode == 0, alice.stderr
    assert "project project-a owns the image" in alice.stdout
    assert f"proxy           ok    DELETE {glance.url}/v2/images/{image}" in alice.stdout
    assert asyncio.run(glance.exists(image))


@pytest.mark.parametrize("owner_check", ["gateway", "backend"])
@pytest.mark.parametrize(
    ("visibility", "status", "fault"),
    [("private", 404, "itemNotFound"), ("public", 403, "forbidden")],
)
async def test_another_projects_image_in_each_owner_check_mode(
    make_gateway: GatewayFactory,
    glance: Glance,
    token: TokenFactory,
    owner_check: str,
    visibility: str,
    status: int,
    fault: str,
) -> None:
    """Whoever checks the owner, Glance's visibility rule decides 404 or 403."""
    authorization = {"policy_file": str(GLANCE_POLICY), "owner_check": owner_check}
    gateway = await make_gateway(glance.url, authorization=authorization)
    # Only an admin may make an image public in Glance; it is project operations'.
    image = await glance.create_image(ADMIN, visibility=visibility)
    response = await delete(gateway, token, BOB, image)
    await assert_fault(response, status, fault)
    assert await glance.exists(image)
    looked_up = len(gateway.app[GATEWAY].owners.cache)
    assert looked_up == (1 if owner_check == "gateway" else 0)
    own = await glance.create_image(BOB)
    assert (await delete(gateway, token, BOB, own)).status == 204
    assert not await glance.exists(own)
