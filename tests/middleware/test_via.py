"""Via: parsing members and comments, what counts as malformed, and loops
detected whatever the case of our pseudonym."""

from __future__ import annotations

import uuid

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import __version__
from gateway.demo_backend.image_store import RECEIVED, add_image
from gateway.middleware.via import received_by
from tests.support.faults import assert_fault
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream


def test_members_and_comments() -> None:
    values = ["1.1 edge-a, HTTP/1.1 cache.example:8080 (Squid, v4)", "2 gw"]
    assert received_by(values) == ["edge-a", "cache.example:8080", "gw"]


def test_empty_members_are_ignored() -> None:
    assert received_by([" , 1.0 a ,"]) == ["a"]


@pytest.mark.parametrize("value", ["garbage", "1.1", "1.1 a b", "1.1 a (unclosed"])
def test_malformed(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        received_by([value])


@pytest.mark.parametrize(
    "value", ["1.1 IMAGE-GATEWAY", "HTTP/1.1 Image-Gateway (x)", "2 image-GATEWAY"]
)
def test_received_by_is_reported_in_lower_case(value: str) -> None:
    """Hosts and pseudonyms are case-insensitive: a loop in capitals is still a loop."""
    assert received_by([value]) == ["image-gateway"]


@pytest.mark.parametrize(
    ("pseudonym", "incoming"),
    [
        ("image-gateway", "1.1 IMAGE-GATEWAY"),
        ("Edge-GW", "1.1 edge-gw"),
        ("Edge-GW", "1.0 proxy, 1.1 EDGE-GW (image-gateway/9)"),
    ],
)
async def test_our_pseudonym_in_any_case_is_a_loop_never_forwarded(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    pseudonym: str,
    incoming: str,
) -> None:
    upstream, url = scripted
    client = await make_gateway(url, via={"pseudonym": pseudonym})
    response = await client.delete(
        f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token(), "Via": incoming}
    )
    await assert_fault(response, 508, "loopDetected")
    assert upstream.received == []


async def test_another_hop_in_capitals_is_not_a_loop(
    make_gateway: GatewayFactory,
    store_server: TestServer,
    store_app: web.Application,
    token: TokenFactory,
) -> None:
    client = await make_gateway(
        str(store_server.make_url("")).rstrip("/"), via={"pseudonym": "Edge-GW"}
    )
    image = add_image(store_app, owner="project-a")
    response = await client.delete(
        f"/v2/images/{image.id}", headers={"X-Auth-Token": token(), "Via": "1.1 EDGE-GW2"}
    )
    assert response.status == 204
    sent = store_app[RECEIVED][-1]
    assert sent.method == "DELETE"
    assert sent.headers["Via"].endswith(f"1.1 Edge-GW (image-gateway/{__version__})")
