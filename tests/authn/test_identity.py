"""The identity-header contract: what is set, and the token's roles mapped to the
backend's on the way."""

from __future__ import annotations

from multidict import CIMultiDict

from gateway.authn.identity import Identity, IdentityHeaders, caller_headers
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream


def test_identity_headers_as_keystonemiddleware_sets_them() -> None:
    identity = Identity("p1", "u1", frozenset({"member", "reader"}))
    assert dict(caller_headers(identity, {})) == {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": "p1",
        "X-Tenant-Id": "p1",
        "X-User-Id": "u1",
        "X-Roles": "member,reader",
    }


def test_names_and_domains_are_sent_when_known() -> None:
    identity = Identity(
        "p1", "u1", frozenset({"member"}), project_name="Project One", user_domain_id="default"
    )
    headers = CIMultiDict(caller_headers(identity, {}))
    assert headers["X-Project-Name"] == "Project One"
    assert headers["X-User-Domain-Id"] == "default"
    assert "X-User-Name" not in headers
    assert "X-Project-Domain-Id" not in headers


def test_identity_headers_are_made_once_per_identity_with_the_role_mapping() -> None:
    made = IdentityHeaders({"cloudImages:admin": ["member", "reader"]})
    identity = Identity("p1", "u1", frozenset({"cloudImages:admin", "observer"}))
    first = made(identity)
    assert dict(first) == {
        "X-Identity-Status": "Confirmed",
        "X-Project-Id": "p1",
        "X-Tenant-Id": "p1",
        "X-User-Id": "u1",
        "X-Roles": "member,observer,reader",
    }
    # An equal identity (the same token verified again) gets the same headers.
    assert made(Identity("p1", "u1", frozenset({"observer", "cloudImages:admin"}))) is first
    other = made(Identity("p2", "u1", frozenset({"observer"})))
    assert dict(other)["X-Project-Id"] == "p2"
    assert dict(other)["X-Roles"] == "observer"


async def test_token_roles_reach_the_backend_mapped_to_its_roles(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    """Through the whole chain: what the backend reads in X-Roles for each caller."""
    upstream, url = scripted
    mapping = {"cloudImages:admin": ["member", "reader"], "cloudImages:observer": ["reader"]}
    client = await make_gateway(
        url,
        upstream={"role_mapping": mapping},
        authorization={"routes": {"get_images": {"roles": [*mapping, "member"]}}},
    )
    upstream.status, upstream.body = 200, b"{}"
    callers = (["cloudImages:admin"], ["cloudImages:observer"], ["member", "cloudImages:creator"])
    for roles in callers:
        response = await client.get("/v2/images", headers={"X-Auth-Token": token(roles=roles)})
        assert response.status == 200
    sent = [r.headers["X-Roles"] for r in upstream.received]
    # A role with no mapping passes as it is (lower case, as Glance compares).
    assert sent == ["member,reader", "reader", "cloudimages:creator,member"]
