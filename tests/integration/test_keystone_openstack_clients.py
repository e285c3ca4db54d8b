"""The way an OpenStack user works: the `openstack` CLI and openstacksdk with
password auth at a real Keystone, a `clouds.yaml` whose image endpoint is the
gateway, in front of real Glance. The gateway validates the Keystone tokens
the clients obtained at Keystone itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.integration.glance import Caller, Glance
from tests.integration.keystone import BOOTSTRAP_ADMIN, Keystone, User
from tests.integration.openstack_clients import client_binary, run_client
from tests.integration.test_keystone_glance import gateway
from tests.integration.test_openstack_clients import UNCLEAN, Cli
from tests.support.gateway_app import Client

ROLES = ("member", "reader")

__all__ = ["gateway"]


def clouds_yaml(
    tmp_path: Path, keystone: Keystone, gateway: Client, users: dict[str, User]
) -> Path:
    """One cloud per user: password auth at Keystone, images at the gateway."""
    clouds = {
        name: {
            "auth": {
                "auth_url": f"{keystone.url}/v3",
                "username": user.name,
                "password": user.password,
                "project_name": user.project_name,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "identity_api_version": 3,
            "region_name": "RegionOne",
            "image_endpoint_override": str(gateway.make_url("/")),
        }
        for name, user in users.items()
    }
    path = tmp_path / f"clouds-{'-'.join(users)}.yaml"
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    return path


def openstack(cloud: str, clouds: Path) -> Cli:
    argv = [str(client_binary("openstack")), "--os-cloud", cloud]
    return Cli(argv, {"OS_CLIENT_CONFIG_FILE": str(clouds)})


async def test_openstack_cli_with_keystone_password_auth(
    gateway: Client, glance: Glance, keystone: Keystone, tmp_path: Path
) -> None:
    project = keystone.create_project()
    users = {
        "owner": keystone.create_user(project, ROLES),
        "reader": keystone.create_user(project, ("reader",)),
        "other": keystone.create_user(keystone.create_project(), ROLES),
    }
    clouds = clouds_yaml(tmp_path, keystone, gateway, users)
    owner_caller = Caller(project["id"], users["owner"].id, ROLES)
    images = [await glance.create_image(owner_caller) for _ in range(4)]
    validations = keystone.validations()

    shown = json.loads(
        await openstack("owner", clouds).ok("image", "show", images[0], "-f", "json")
    )
    assert shown["owner"] == project["id"]
    await openstack("owner", clouds).ok("image", "delete", images[0])
    assert not await glance.exists(images[0])
    # Each CLI run logs in anew: one validation per run, not per request.
    assert keystone.validations() - validations == 2

    other = await openstack("other", clouds).refused("image", "show", images[1])
    assert f"No Image found for {images[1]}" in other
    await openstack("other", clouds).refused("image", "delete", images[1])
    reader = await openstack("reader", clouds).refused("image", "delete", images[1])
    assert "Policy does not allow" in reader
    assert await glance.exists(images[1])

    # `openstack token revoke` at Keystone, then the revoked token at the gateway.
    token = keystone.token_of(users["owner"])
    admin_clouds = clouds_yaml(tmp_path, keystone, gateway, {"admin": BOOTSTRAP_ADMIN})
    await openstack("admin", admin_clouds).ok("token", "revoke", token)
    revoked = Cli(
        [
            str(client_binary("openstack")),
            "--os-auth-type",
            "admin_token",
            "--os-endpoint",
            str(gateway.make_url("/")),
            "--os-token",
            token,
        ],
        {"OS_IMAGE_ENDPOINT_OVERRIDE": str(gateway.make_url("/"))},
    )
    refused = await revoked.refused("image", "delete", images[1])
    assert "401" in refused, refused
    assert await glance.exists(images[1])

    # Over the limit: the project's third delete (the reader's refused one
    # counted) passes, the fourth is refused.
    await openstack("owner", clouds).ok("image", "delete", images[1])
    over = await openstack("owner", clouds).refused("image", "delete", images[2])
    assert "413" in over, over
    assert await glance.exists(images[2])
    for message in (other, reader, refused, over):
        assert not UNCLEAN.search(message), message


SDK_PROGRAM = """
import json, sys
import openstack
from openstack import exceptions
settings = json.loads(sys.argv[1])
seen = {}
owner = openstack.connect(cloud="owner")
owner.image.delete_image(settings["owned"], ignore_missing=False)
seen["deleted"] = True
other = openstack.connect(cloud="other")
try:
    other.image.delete_image(settings["not_owned"], ignore_missing=False)
    seen["refused"] = None
except exceptions.SDKException as exc:
    seen["refused"] = [type(exc).__name__, getattr(exc, "status_code", None)]
print(json.dumps(seen))
"""


async def test_openstacksdk_with_keystone_password_auth(
    gateway: Client, glance: Glance, keystone: Keystone, tmp_path: Path
) -> None:
    project = keystone.create_project()
    users = {
        "owner": keystone.create_user(project, ROLES),
        "other": keystone.create_user(keystone.create_project(), ROLES),
    }
    clouds = clouds_yaml(tmp_path, keystone, gateway, users)
    owner_caller = Caller(project["id"], users["owner"].id, ROLES)
    owned = await glance.create_image(owner_caller)
    not_owned = await glance.create_image(owner_caller)
    settings: dict[str, Any] = {"owned": owned, "not_owned": not_owned}
    finished = await run_client(
        client_binary("python"),
        "-c",
        SDK_PROGRAM,
        json.dumps(settings),
        env={"OS_CLIENT_CONFIG_FILE": str(clouds)},
    )
    seen = finished.json()
    assert seen["deleted"] is True
    assert not await glance.exists(owned)
    assert seen["refused"] == ["NotFoundException", 404]
    assert await glance.exists(not_owned)
