"""owner_check: the gateway looks the owner up, or the backend enforces it.

Either way the caller sees the same answers (404 for an image it may not
see, 403 for one it may see but not change); with ``backend`` no look-up is
made. Against the stand-in store, which enforces ownership as Glance does.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import ConfigError, parse_config
from gateway.demo_backend.image_store import IMAGES, RECEIVED, add_image
from tests.config.test_config import assert_names
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.gateway_config import config_data
from tests.support.tokens import Keys, TokenFactory

MODES = ["gateway", "backend"]


@pytest.fixture(params=MODES)
async def checked(
    request: pytest.FixtureRequest, make_gateway: GatewayFactory, store_server: TestServer
) -> tuple[str, Client]:
    mode: str = request.param
    url = str(store_server.make_url("")).rstrip("/")
    return mode, await make_gateway(url, authorization={"owner_check": mode})


def _methods(store_app: web.Application, image_id: str) -> list[str]:
    return [r.method for r in store_app[RECEIVED] if r.path == f"/v2/images/{image_id}"]


@pytest.mark.parametrize(
    ("visibility", "status", "fault"),
    [("private", 404, "itemNotFound"), ("public", 403, "forbidden")],
)
async def test_another_projects_image(
    checked: tuple[str, Client],
    store_app: web.Application,
    token: TokenFactory,
    visibility: str,
    status: int,
    fault: str,
) -> None:
    mode, gateway = checked
    image = add_image(store_app, owner="project-b", visibility=visibility)
    response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": token()})
    await assert_fault(response, status, fault)
    assert image.id in store_app[IMAGES]
    # The gateway refuses before forwarding; the backend refuses the DELETE itself.
    assert _methods(store_app, image.id) == (["GET"] if mode == "gateway" else ["DELETE"])


async def test_own_image_is_deleted_without_a_look_up_in_backend_mode(
    checked: tuple[str, Client], store_app: web.Application, token: TokenFactory
) -> None:
    mode, gateway = checked
    image = add_image(store_app, owner="project-a")
    response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": token()})
    assert response.status == 204
    assert image.id not in store_app[IMAGES]
    expected = ["GET", "DELETE"] if mode == "gateway" else ["DELETE"]
    assert _methods(store_app, image.id) == expected


async def test_roles_are_still_checked_by_the_gateway(
    checked: tuple[str, Client], store_app: web.Application, token: TokenFactory
) -> None:
    """An observer may not delete even its own project's image: refused here, in both modes."""
    _, gateway = checked
    image = add_image(store_app, owner="project-a")
    observer = token(roles=["cloudImages:observer"])
    response = await gateway.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": observer})
    await assert_fault(response, 403, "forbidden")
    assert _methods(store_app, image.id) == []


def test_an_unknown_owner_check_is_refused_with_its_key_path(keys: Keys) -> None:
    data = config_data("http://127.0.0.1:9", keys, authorization={"owner_check": "both"})
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert_names(str(caught.value), "authorization.owner_check")
