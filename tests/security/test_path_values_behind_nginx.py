"""A path value a normalizing hop would read as another resource, against
real Glance behind a real nginx (``proxy_pass http://127.0.0.1:PORT/;``).

The caller may remove members of its images but not delete images. Straight
to nginx, ``DELETE /v2/images/A/members/..%2F..%2FB`` deletes image B: nginx
decodes ``%2F`` and resolves the steps up. Through the gateway the same
request is a 400, refused before authorization, and nothing reaches nginx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import glance  # noqa: F401  (real Glance, the session's)
from tests.integration.glance import Caller, Glance
from tests.integration.test_glance import GLANCE_POLICY, token_of
from tests.security.conftest import LiveGateway, ServeGateway, exchange, parse_response
from tests.security.normalizing_hop import NormalizingHop, normalizing_hop
from tests.support.tokens import TokenFactory

# A member of project-a: Glance would let it delete project-a's images; the
# gateway's policy lets it manage members only.
CAROL = Caller("project-a", "carol", ("member", "reader"))


@pytest.fixture
def hop(glance: Glance, tmp_path: Path) -> Iterator[NormalizingHop]:  # noqa: F811
    port = int(glance.url.rsplit(":", 1)[1])
    with normalizing_hop(tmp_path, port) as nginx:
        yield nginx


@dataclass
class Setup:
    gateway: LiveGateway
    hop: NormalizingHop
    token: str


@pytest.fixture
async def behind_nginx(
    serve_gateway: ServeGateway, hop: NormalizingHop, token: TokenFactory, tmp_path: Path
) -> Setup:
    rules = yaml.safe_load(GLANCE_POLICY.read_text())
    rules["delete_image"] = "rule:context_is_admin"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(rules))
    gateway = await serve_gateway(
        hop.url,
        upstream={"read_timeout": 30},
        authorization={"policy_file": str(policy)},
        rate_limit={"rules": []},
    )
    return Setup(gateway, hop, token_of(token, CAROL))


async def send(port: int, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    raw = await exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    response = parse_response(raw)
    return response.status, response.body


async def test_a_path_value_that_nginx_would_read_as_another_image_is_refused(
    behind_nginx: Setup,
    glance: Glance,  # noqa: F811
) -> None:
    image_a = await glance.create_image(CAROL)
    image_b = await glance.create_image(CAROL)
    auth = {"X-Auth-Token": behind_nginx.token}
    port = behind_nginx.gateway.port

    # The caller's own DELETE of image B is refused by the gateway's policy.
    status, _ = await send(port, "DELETE", f"/v2/images/{image_b}", auth)
    assert status == 403

    before = len(behind_nginx.hop.requests())
    status, body = await send(
        port, "DELETE", f"/v2/images/{image_a}/members/..%2F..%2F{image_b}", auth
    )
    assert status == 400, body
    assert b'"badRequest"' in body
    assert b"Invalid member_id: must be a project id." in body
    assert await glance.exists(image_b)
    assert await glance.exists(image_a)
    # Refused before authorization: not even the owner look-up reached nginx.
    assert behind_nginx.hop.requests()[before:] == []


async def test_the_hop_does_read_it_as_another_image(
    hop: NormalizingHop,
    glance: Glance,  # noqa: F811
) -> None:
    """Without the gateway's grammar the attack works: nginx sends the DELETE
    to image B, and Glance, trusting the identity headers, deletes it."""
    image_a = await glance.create_image(CAROL)
    image_b = await glance.create_image(CAROL)
    port = int(hop.url.rsplit(":", 1)[1])
    status, _ = await send(
        port, "DELETE", f"/v2/images/{image_a}/members/..%2F..%2F{image_b}", CAROL.headers()
    )
    assert status == 204
    assert not await glance.exists(image_b)
    assert await glance.exists(image_a)
    assert hop.requests()[-1] == f"DELETE /v2/images/{image_a}/members/..%2F..%2F{image_b} HTTP/1.1"


async def test_members_are_still_managed_through_the_hop(
    behind_nginx: Setup,
    glance: Glance,  # noqa: F811
) -> None:
    shared = await glance.create_image(CAROL, visibility="shared")
    member = uuid.uuid4().hex
    await glance.share(shared, CAROL, member)
    auth = {"X-Auth-Token": behind_nginx.token}
    status, body = await send(
        behind_nginx.gateway.port, "DELETE", f"/v2/images/{shared}/members/{member}", auth
    )
    assert status == 204, body
    status, _ = await glance.request("GET", f"/v2/images/{shared}/members/{member}", CAROL)
    assert status == 404
