"""Every status of the seed, through the whole chain, against both limiter stores.

The upstream is the stand-in store on a real socket; each test asserts the
status, the fault body and the headers the contract promises.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from gateway.demo_backend.image_store import IMAGES, RECEIVED, add_image
from tests.support.faults import OUR_VIA, assert_fault, assert_request_id, delete
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.tokens import TokenFactory


async def test_owner_deletes_image_204_with_via_and_request_ids(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    response = await delete(gateway, image.id, token())
    assert response.status == 204
    assert await response.read() == b""
    request_id = assert_request_id(response)
    assert response.headers["Via"] == OUR_VIA
    sent = store_app[RECEIVED][-1]
    assert (sent.method, sent.path) == ("DELETE", f"/v2/images/{image.id}")
    assert sent.headers["X-OpenStack-Request-Id"] == request_id
    assert sent.headers["Via"] == OUR_VIA
    assert sent.headers["X-Identity-Status"] == "Confirmed"
    assert sent.headers["X-Project-Id"] == sent.headers["X-Tenant-Id"] == "project-a"
    assert sent.headers["X-User-Id"] == "alice"
    assert sent.headers["X-Roles"] == "cloudimages:admin"
    assert "X-Auth-Token" not in sent.headers


async def test_seed_path_without_version_reaches_v2(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    response = await gateway.delete(f"/images/{image.id}", headers={"X-Auth-Token": token()})
    assert response.status == 204
    assert store_app[RECEIVED][-1].path == f"/v2/images/{image.id}"


async def test_bearer_header_is_accepted(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    response = await gateway.delete(
        f"/v2/images/{image.id}", headers={"Authorization": f"Bearer {token(kid='ec')}"}
    )
    assert response.status == 204
    assert image.id not in store_app[IMAGES]
    sent = store_app[RECEIVED][-1]
    assert sent.method == "DELETE"
    # The credential is the gateway's to read, never the backend's: the
    # backend sees the identity it proved instead.
    assert "Authorization" not in sent.headers
    assert "X-Auth-Token" not in sent.headers
    assert sent.headers["X-Identity-Status"] == "Confirmed"
    assert sent.headers["X-Project-Id"] == "project-a"
    assert sent.headers["X-User-Id"] == "alice"


async def test_deleted_image_is_404_the_second_time(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    tok = token()
    assert (await delete(gateway, image.id, tok)).status == 204
    body = await assert_fault(await delete(gateway, image.id, tok), 404, "itemNotFound")
    assert image.id in body["message"]


@pytest.mark.parametrize(
    "image_id",
    ["not-a-uuid", "1234", f"{{{uuid.uuid4()}}}", f"{uuid.uuid4()}%0a", f"{uuid.uuid4()}%0A"],
)
async def test_malformed_image_id_is_400_and_never_forwarded(
    gateway: Client, store_app: web.Application, token: TokenFactory, image_id: str
) -> None:
    response = await delete(gateway, image_id, token())
    body = await assert_fault(response, 400, "badRequest")
    assert "UUID" in body["message"]
    assert body["details"] == "Expected 8-4-4-4-12 hexadecimal digits."
    # What the client sent is not echoed.
    assert image_id.split("%")[0] not in await response.text()
    assert len(store_app[RECEIVED]) == 0


async def test_body_on_delete_is_400(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    response = await gateway.delete(
        f"/v2/images/{image.id}", headers={"X-Auth-Token": token()}, data=b'{"force": true}'
    )
    body = await assert_fault(response, 400, "badRequest")
    assert "body" in body["message"]
    assert image.id in store_app[IMAGES]
    assert len(store_app[RECEIVED]) == 0


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer")],
        [("Authorization", "Bearer a b")],
        [("Authorization", "Bearer tok%en")],
        [("Authorization", "Bearer <script>")],
        [("X-Auth-Token", "{tok}"), ("Authorization", "Bearer {tok}")],
        [("X-Auth-Token", "{tok}"), ("X-Auth-Token", "{tok}")],
    ],
    ids=["empty", "two-parts", "bad-chars", "markup", "two-methods", "repeated"],
)
async def test_malformed_credentials_are_400(
    gateway: Client,
    store_app: web.Application,
    token: TokenFactory,
    headers: list[tuple[str, str]],
) -> None:
    image = add_image(store_app, owner="project-a")
    tok = token()
    sent = CIMultiDict((name, value.format(tok=tok)) for name, value in headers)
    response = await gateway.delete(f"/v2/images/{image.id}", headers=sent)
    await assert_fault(response, 400, "badRequest")
    assert len(store_app[RECEIVED]) == 0


async def test_malformed_via_is_400_and_a_loop_is_508(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    await assert_fault(await delete(gateway, image.id, token(), Via="garbage"), 400, "badRequest")
    looped = await delete(gateway, image.id, token(), Via=f"1.0 edge, {OUR_VIA}")
    await assert_fault(looped, 508, "loopDetected")
    assert len(store_app[RECEIVED]) == 0


async def test_missing_token_is_401_with_challenge(
    gateway: Client, store_app: web.Application
) -> None:
    image = add_image(store_app, owner="project-a")
    await assert_fault(await delete(gateway, image.id, None), 401, "unauthorized")
    response = await delete(gateway, image.id, None)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="image-gateway"'
    assert len(store_app[RECEIVED]) == 0


async def test_expired_token_is_401_invalid_token(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    response = await delete(gateway, image.id, token(ttl=-60))
    body = await assert_fault(response, 401, "unauthorized")
    assert body["details"] == "The token has expired."
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert len(store_app[RECEIVED]) == 0


async def test_observer_role_is_403(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    response = await delete(gateway, image.id, token(roles=["cloudImages:observer"]))
    await assert_fault(response, 403, "forbidden")
    assert len(store_app[RECEIVED]) == 0
    assert image.id in store_app[IMAGES]


async def test_another_projects_visible_image_is_403_private_is_404(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    public = add_image(store_app, owner="project-b", visibility="public")
    shared = add_image(store_app, owner="project-b", visibility="shared", members=["project-a"])
    private = add_image(store_app, owner="project-b")
    tok = token()
    await assert_fault(await delete(gateway, public.id, tok), 403, "forbidden")
    await assert_fault(await delete(gateway, shared.id, tok), 403, "forbidden")
    body = await assert_fault(await delete(gateway, private.id, tok), 404, "itemNotFound")
    assert "another project" not in body["message"]
    # Only the owner look-ups reached the store, never a DELETE.
    assert {r.method for r in store_app[RECEIVED]} == {"GET"}


async def test_protected_image_403_passed_from_upstream(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a", protected=True)
    body = await assert_fault(await delete(gateway, image.id, token()), 403, "forbidden")
    assert body["message"] == f"Image {image.id} is protected and cannot be deleted."


async def test_global_admin_deletes_any_tenants_image(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-b")
    response = await delete(gateway, image.id, token("operations", "root", ["admin"]))
    assert response.status == 204
    assert [r.method for r in store_app[RECEIVED]] == ["DELETE"]


async def test_other_methods_are_405_with_allow(gateway: Client, token: TokenFactory) -> None:
    response = await gateway.put(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token()})
    body = await assert_fault(response, 405, "badMethod")
    assert response.headers["Allow"] == "DELETE, GET, PATCH"
    assert "PUT" in body["message"]


async def test_unknown_path_is_404(gateway: Client) -> None:
    await assert_fault(await gateway.get("/v2/flavors"), 404, "itemNotFound")


async def test_conflict_409_is_passed_from_upstream(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a", status="importing")
    body = await assert_fault(await delete(gateway, image.id, token()), 409, "conflictingRequest")
    assert "<" not in body["message"]
    assert image.id in body["message"]


async def test_over_limit_is_413_with_retry_after(
    make_gateway: GatewayFactory,
    store_server: Any,
    store_app: web.Application,
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    rule = {"name": "deletes", "path": "^/", "methods": ["DELETE"], "unit": "minute", "value": 2}
    client = await make_gateway(
        str(store_server.make_url("")).rstrip("/"),
        rate_limit={**limiter_section, "rules": [rule]},
    )
    images = [add_image(store_app, owner="project-a") for _ in range(3)]
    tok = token()
    first = await delete(client, images[0].id, tok)
    assert first.status == 204
    assert first.headers["RateLimit-Policy"] == '"deletes";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"deletes";r=1;t=')
    assert (await delete(client, images[1].id, tok)).status == 204
    response = await delete(client, images[2].id, tok)
    body = await assert_fault(response, 413, "overLimit")
    # The first admission leaves the one-minute window a minute after it was
    # made; Retry-After is whole seconds, rounded up.
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body["retryAfter"])
    assert response.headers["RateLimit"].startswith('"deletes";r=0;')
    # The refused request reached nothing, not even the owner look-up.
    assert [r.method for r in store_app[RECEIVED]].count("DELETE") == 2
    assert images[2].id in store_app[IMAGES]
    # Another project has its own budget.
    other = add_image(store_app, owner="project-b")
    assert (await delete(client, other.id, token("project-b", "bob"))).status == 204


async def test_429_instead_of_413_by_option(
    make_gateway: GatewayFactory, store_server: Any, token: TokenFactory
) -> None:
    rule = {"name": "d", "unit": "hour", "value": 1}
    client = await make_gateway(
        str(store_server.make_url("")).rstrip("/"),
        rate_limit={"over_limit_status": 429, "headers": False, "rules": [rule]},
    )
    tok = token()
    await delete(client, str(uuid.uuid4()), tok)
    response = await delete(client, str(uuid.uuid4()), tok)
    await assert_fault(response, 429, "overLimit")
    assert "RateLimit" not in response.headers
    assert "Retry-After" in response.headers


async def test_client_identity_headers_never_reach_upstream(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    """A caller spoofing the owner's project and an admin role with its own token."""
    image = add_image(store_app, owner="project-a")
    spoofed = {
        "X-Roles": "admin",
        "X-Project-Id": "project-a",
        "X-Tenant-Id": "project-a",
        "X-Identity-Status": "Confirmed",
        "X-User-Id": "alice",
        "X-Service-Roles": "admin",
        "Connection": "close, X-Custom-Hop",
        "X-Custom-Hop": "1",
        "Accept-Language": "kept",
        "X-Trace": "not on the allow-list",
    }
    response = await delete(gateway, image.id, token("project-b", "mallory"), **spoofed)
    await assert_fault(response, 404, "itemNotFound")
    assert all(r.method == "GET" for r in store_app[RECEIVED])
    mine = add_image(store_app, owner="project-b")
    assert (await delete(gateway, mine.id, token("project-b", "mallory"), **spoofed)).status == 204
    sent = store_app[RECEIVED][-1]
    assert sent.method == "DELETE"
    assert sent.headers.getall("X-Project-Id") == ["project-b"]
    assert sent.headers.getall("X-Roles") == ["cloudimages:admin"]
    assert sent.headers.getall("X-User-Id") == ["mallory"]
    assert "X-Service-Roles" not in sent.headers
    assert "X-Custom-Hop" not in sent.headers
    assert sent.headers["Accept-Language"] == "kept"
    assert "X-Trace" not in sent.headers


async def test_inbound_global_request_id_never_replaces_ours(
    gateway: Client, store_app: web.Application, token: TokenFactory
) -> None:
    image = add_image(store_app, owner="project-a")
    theirs = f"req-{uuid.uuid4()}"
    response = await delete(gateway, image.id, token(), **{"X-OpenStack-Request-Id": theirs})
    ours = assert_request_id(response)
    assert ours != theirs
    assert store_app[RECEIVED][-1].headers.getall("X-OpenStack-Request-Id") == [ours]
