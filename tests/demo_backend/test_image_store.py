"""Tests for the stand-in Glance v2 image store, over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.demo_backend.image_store import IMAGES, RECEIVED, add_image, create_standin_store_app

Client = TestClient[web.Request, web.Application]


def ident(project: str | None = "proj-a", roles: str = "member", **extra: str) -> dict[str, str]:
    headers = {"X-Identity-Status": "Confirmed", "X-Roles": roles, **extra}
    if project is not None:
        headers["X-Project-Id"] = project
    return headers


ADMIN = ident("proj-admin", roles="reader, Admin ")


@pytest.fixture
def app() -> web.Application:
    return create_standin_store_app()


@pytest.fixture
async def client(
    app: web.Application, aiohttp_client: Callable[[web.Application], Awaitable[Client]]
) -> Client:
    return await aiohttp_client(app)


async def status_of(client: Client, method: str, path: str, **kw: Any) -> int:
    async with client.request(method, path, **kw) as resp:
        return resp.status


async def test_create_sets_owner_from_header_and_location(
    client: Client, app: web.Application
) -> None:
    resp = await client.post("/v2/images", json={"name": "cirros"}, headers=ident("proj-a"))
    assert resp.status == 201
    body = await resp.json()
    assert body["owner"] == "proj-a"
    assert body["name"] == "cirros"
    assert body["visibility"] == "private"
    assert body["protected"] is False
    assert body["status"] == "active"
    assert body["self"] == f"/v2/images/{body['id']}"
    assert body["schema"] == "/v2/schemas/image"
    assert resp.headers["Location"] == f"/v2/images/{body['id']}"
    assert app[IMAGES][body["id"]].owner == "proj-a"


async def test_create_falls_back_to_tenant_id_and_honours_fields(client: Client) -> None:
    image_id = str(uuid.uuid4())
    headers = ident(None, **{"X-Tenant-Id": "legacy-tenant"})
    body = {"id": image_id, "visibility": "public", "protected": True}
    resp = await client.post("/v2/images", json=body, headers=headers)
    assert resp.status == 201
    got = await resp.json()
    assert (got["id"], got["owner"]) == (image_id, "legacy-tenant")
    assert (got["visibility"], got["protected"]) == ("public", True)
    again = await client.post("/v2/images", json={"id": image_id}, headers=ident())
    assert again.status == 409


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b"",
        b'{"visibility": "everyone"}',
        b'{"protected": "yes"}',
        b'{"name": 7}',
        b'{"id": "not-a-uuid"}',
    ],
)
async def test_create_rejects_bad_bodies(client: Client, app: web.Application, body: bytes) -> None:
    resp = await client.post("/v2/images", data=body, headers=ident())
    assert resp.status == 400
    assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert "<title>400 Bad Request</title>" in await resp.text()
    assert app[IMAGES] == {}


@pytest.mark.parametrize("status", [None, "Invalid", "confirmed"])
async def test_unconfirmed_identity_is_401(
    client: Client, app: web.Application, status: str | None
) -> None:
    image = add_image(app, owner="proj-a", visibility="public")
    headers = ident()
    del headers["X-Identity-Status"]
    if status is not None:
        headers["X-Identity-Status"] = status
    resp = await client.get(f"/v2/images/{image.id}", headers=headers)
    assert resp.status == 401
    assert "<h1>401 Unauthorized</h1>" in await resp.text()
    assert await status_of(client, "POST", "/v2/images", json={}, headers=headers) == 401
    assert await status_of(client, "DELETE", f"/v2/images/{image.id}", headers=headers) == 401
    assert image.id in app[IMAGES]


async def test_confirmed_but_projectless_caller_is_401(client: Client) -> None:
    headers = ident(None, roles="admin")
    assert await status_of(client, "POST", "/v2/images", json={}, headers=headers) == 401


async def test_get_owner_sees_private_image_others_get_glance_404(
    client: Client, app: web.Application
) -> None:
    image = add_image(app, owner="proj-a", name="secret")
    resp = await client.get(f"/v2/images/{image.id}", headers=ident("proj-a"))
    assert resp.status == 200
    assert (await resp.json())["name"] == "secret"

    resp = await client.get(f"/v2/images/{image.id}", headers=ident("proj-b"))
    assert resp.status == 404
    assert resp.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert await resp.text() == (
        "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n"
        f"  <h1>404 Not Found</h1>\n  No image found with ID {image.id}<br /><br />\n\n\n"
        " </body>\n</html>"
    )


@pytest.mark.parametrize("visibility", ["public", "community"])
async def test_get_public_and_community_visible_to_all(
    client: Client, app: web.Application, visibility: str
) -> None:
    image = add_image(app, owner="proj-a", visibility=visibility)
    assert await status_of(client, "GET", f"/v2/images/{image.id}", headers=ident("x")) == 200


async def test_get_shared_visible_to_members_only(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a", visibility="shared", members=["proj-m"])
    path = f"/v2/images/{image.id}"
    assert await status_of(client, "GET", path, headers=ident("proj-m")) == 200
    assert await status_of(client, "GET", path, headers=ident("proj-x")) == 404


async def test_admin_sees_any_image(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a")
    resp = await client.get(f"/v2/images/{image.id}", headers=ADMIN)
    assert resp.status == 200
    assert (await resp.json())["owner"] == "proj-a"


async def test_malformed_and_unknown_ids_are_404(client: Client) -> None:
    for image_id in ("not-a-uuid", str(uuid.uuid4())):
        resp = await client.get(f"/v2/images/{image_id}", headers=ADMIN)
        assert resp.status == 404
        assert f"No image found with ID {image_id}" in await resp.text()


async def test_delete_then_gone(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a")
    resp = await client.delete(f"/v2/images/{image.id}", headers=ident("proj-a"))
    assert resp.status == 204
    assert await resp.read() == b""
    assert image.id not in app[IMAGES]
    path = f"/v2/images/{image.id}"
    assert await status_of(client, "GET", path, headers=ident("proj-a")) == 404
    assert await status_of(client, "DELETE", path, headers=ident("proj-a")) == 404


async def test_delete_invisible_is_404_visible_foreign_is_403(
    client: Client, app: web.Application
) -> None:
    private = add_image(app, owner="proj-a")
    public = add_image(app, owner="proj-a", visibility="public")
    assert (
        await status_of(client, "DELETE", f"/v2/images/{private.id}", headers=ident("proj-b"))
        == 404
    )
    resp = await client.delete(f"/v2/images/{public.id}", headers=ident("proj-b"))
    assert resp.status == 403
    assert "<title>403 Forbidden</title>" in await resp.text()
    assert {private.id, public.id} <= app[IMAGES].keys()


async def test_delete_protected_is_403_even_for_admin(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a", protected=True)
    for headers in (ident("proj-a"), ADMIN):
        resp = await client.delete(f"/v2/images/{image.id}", headers=headers)
        assert resp.status == 403
        assert f"Image {image.id} is protected and cannot be deleted." in await resp.text()
    assert image.id in app[IMAGES]


async def test_delete_importing_is_409(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a", status="importing")
    resp = await client.delete(f"/v2/images/{image.id}", headers=ident("proj-a"))
    assert resp.status == 409
    text = await resp.text()
    assert "<title>409 Conflict</title>" in text
    assert f"Image {image.id} could not be deleted because it is being imported." in text
    assert image.id in app[IMAGES]


async def test_admin_deletes_any_image(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a")
    assert await status_of(client, "DELETE", f"/v2/images/{image.id}", headers=ADMIN) == 204
    assert image.id not in app[IMAGES]


async def test_members_add_then_get(client: Client, app: web.Application) -> None:
    image = add_image(app, owner="proj-a", visibility="shared")
    members = f"/v2/images/{image.id}/members"
    assert await status_of(client, "GET", f"/v2/images/{image.id}", headers=ident("proj-m")) == 404

    resp = await client.post(members, json={"member": "proj-m"}, headers=ident("proj-a"))
    assert resp.status == 200
    body = await resp.json()
    assert body["image_id"] == image.id
    assert (body["member_id"], body["status"]) == ("proj-m", "pending")
    assert body["schema"] == "/v2/schemas/member"
    assert image.members == {"proj-m"}
    dup = await client.post(members, json={"member": "proj-m"}, headers=ident("proj-a"))
    assert dup.status == 409

    resp = await client.get(f"{members}/proj-m", headers=ident("proj-m"))
    assert resp.status == 200
    assert (await resp.json())["member_id"] == "proj-m"
    assert await status_of(client, "GET", f"/v2/images/{image.id}", headers=ident("proj-m")) == 200
    assert await status_of(client, "GET", f"{members}/proj-m", headers=ident("proj-a")) == 200
    assert await status_of(client, "GET", f"{members}/proj-z", headers=ident("proj-a")) == 404
    assert await status_of(client, "GET", f"{members}/proj-m", headers=ident("proj-x")) == 404


async def test_members_refused_for_non_owner_non_shared_and_bad_body(
    client: Client, app: web.Application
) -> None:
    shared = add_image(app, owner="proj-a", visibility="shared", members=["proj-m"])
    private = add_image(app, owner="proj-a")
    body = {"member": "proj-z"}
    post = f"/v2/images/{shared.id}/members"
    assert await status_of(client, "POST", post, json=body, headers=ident("proj-m")) == 403
    resp = await client.post(f"/v2/images/{private.id}/members", json=body, headers=ident())
    assert resp.status == 403
    assert "Only shared images have members." in await resp.text()
    assert await status_of(client, "POST", post, json={"member": 3}, headers=ident()) == 400
    assert await status_of(client, "POST", post, data=b"{", headers=ident()) == 400
    assert await status_of(client, "POST", post, json=body, headers=ADMIN) == 200
    assert shared.members == {"proj-m", "proj-z"}
    # A member sees its own membership but not other members of the same image.
    assert await status_of(client, "GET", f"{post}/proj-z", headers=ident("proj-z")) == 200
    assert await status_of(client, "GET", f"{post}/proj-z", headers=ident("proj-m")) == 404
    assert private.members == set()


async def test_received_records_every_request_before_deciding(
    client: Client, app: web.Application
) -> None:
    image = add_image(app, owner="proj-a")
    await status_of(
        client,
        "POST",
        "/v2/images",
        data=b'{"name": "x"}',
        headers=ident("proj-a", **{"X-Custom": "1"}),
    )
    await status_of(client, "DELETE", f"/v2/images/{image.id}", headers={"X-Custom": "2"})
    await status_of(client, "GET", "/nowhere", headers={"X-Custom": "3"})

    first, second, third = app[RECEIVED]
    assert (first.method, first.path, first.body) == ("POST", "/v2/images", b'{"name": "x"}')
    assert first.headers["x-project-id"] == "proj-a"
    assert first.headers["X-Custom"] == "1"
    assert (second.method, second.path, second.body) == ("DELETE", f"/v2/images/{image.id}", b"")
    assert second.headers["X-Custom"] == "2"
    assert image.id in app[IMAGES]
    assert (third.method, third.path, third.headers["X-Custom"]) == ("GET", "/nowhere", "3")
    with pytest.raises(TypeError):
        first.headers["X-Custom"] = "changed"  # type: ignore[index]


def test_received_is_bounded_and_state_is_per_app() -> None:
    one, two = create_standin_store_app(), create_standin_store_app()
    assert one[RECEIVED].maxlen == 1000
    add_image(one, owner="p")
    assert len(one[IMAGES]) == 1
    assert two[IMAGES] == {}
    with pytest.raises(ValueError, match="visibility"):
        add_image(one, owner="p", visibility="everyone")
