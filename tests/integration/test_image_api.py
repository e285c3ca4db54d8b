"""The image API through the gateway against real Glance, beyond DELETE:
discovery as Glance serves it, an upload cut short by the client, backend
errors for every Accept, and the gateway's own owner check on calls that
change one image."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.glance import ADMIN, Caller, Glance
from tests.integration.test_glance import ALICE, BOB, GLANCE_POLICY, token_of
from tests.support.faults import assert_fault
from tests.support.gateway_app import Client, GatewayFactory
from tests.support.tokens import TokenFactory
from tests.support.waiting import until


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, glance: Glance) -> Client:
    return await make_gateway(
        glance.url,
        upstream={"read_timeout": 30},
        authorization={"policy_file": str(GLANCE_POLICY)},
    )


async def uploadable_image(glance: Glance, owner: Caller) -> str:
    body = {"name": "upload", "disk_format": "raw", "container_format": "bare"}
    status, image = await glance.request("POST", "/v2/images", owner, body)
    assert status == 201, image
    return str(image["id"])


async def image_status(glance: Glance, image_id: str) -> str:
    status, body = await glance.request("GET", f"/v2/images/{image_id}", ADMIN)
    assert status == 200, body
    return str(body["status"])


async def test_version_discovery_is_glances_with_links_to_the_gateway(
    gateway: Client, glance: Glance, token: TokenFactory
) -> None:
    own = str(gateway.make_url("")).rstrip("/")
    response = await gateway.get("/")
    assert response.status == 300
    versions = (await response.json())["versions"]
    assert {v["id"] for v in versions} >= {"v2.0", "v2.17"}
    assert {link["href"] for v in versions for link in v["links"]} == {f"{own}/v2/"}
    # /v2 is Glance's redirect to /v2/, with a token as Glance wants one.
    redirect = await gateway.get(
        "/v2", headers={"X-Auth-Token": token_of(token, ALICE)}, allow_redirects=False
    )
    assert redirect.status == 302
    assert redirect.headers["Location"] == f"{own}/v2/"


async def upload_partly(
    gateway: Client, glance: Glance, image_id: str, tok: str, total: int, sent: int
) -> asyncio.StreamWriter:
    """An upload that declares ``total`` bytes and has sent ``sent``, once
    Glance is receiving it; the caller closes it."""
    _, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(
        f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: gateway\r\nX-Auth-Token: {tok}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n".encode()
    )
    writer.write(b"\1" * sent)
    await writer.drain()

    async def saving() -> bool:
        return await image_status(glance, image_id) == "saving"

    await until(saving, "Glance to be receiving the upload")
    return writer


async def test_an_upload_the_client_abandons_leaves_no_active_image(
    gateway: Client, glance: Glance, token: TokenFactory
) -> None:
    image_id = await uploadable_image(glance, ALICE)
    writer = await upload_partly(
        gateway, glance, image_id, token_of(token, ALICE), 64 << 20, 8 << 20
    )
    writer.close()  # the client goes away mid-upload
    await writer.wait_closed()

    async def back_to_queued() -> bool:
        return await image_status(glance, image_id) == "queued"

    # The gateway cut the upstream upload short: Glance drops the partial data.
    await until(back_to_queued, "Glance to give up the partial upload")
    data = b"\2" * (1 << 20)
    retry = await gateway.put(
        f"/v2/images/{image_id}/file",
        data=data,
        headers={
            "X-Auth-Token": token_of(token, ALICE),
            "Content-Type": "application/octet-stream",
        },
    )
    assert retry.status == 204, await retry.text()
    _, body = await glance.request("GET", f"/v2/images/{image_id}", ADMIN)
    assert (body["status"], body["size"]) == ("active", len(data))
    assert body["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.mark.parametrize("accept", ["application/json", "*/*", None], ids=["json", "any", "none"])
async def test_glance_errors_reach_the_client_clean_for_every_accept(
    gateway: Client, glance: Glance, token: TokenFactory, accept: str | None
) -> None:
    """Glance answers HTML, JSON or text by Accept; the client gets Glance's sentence."""
    image_id = await glance.create_image(ALICE)
    headers = {
        "X-Auth-Token": token_of(token, ALICE),
        "Content-Type": "application/openstack-images-v2.1-json-patch",
    }
    if accept is not None:
        headers["Accept"] = accept
    # Glance's own refusal: os_glance_* properties are reserved.
    response = await gateway.patch(
        f"/v2/images/{image_id}",
        data=b'[{"op": "add", "path": "/os_glance_x", "value": "y"}]',
        headers=headers,
    )
    fault = await assert_fault(response, 403, "forbidden")
    assert "os_glance" in fault["message"]
    for unclean in ("<br", "<html", "403 Forbidden"):
        assert unclean not in fault["message"], fault


MUTATIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "modify_image": (
        "PATCH",
        "",
        {
            "data": b'[{"op": "replace", "path": "/name", "value": "x"}]',
            "content_type": "application/openstack-images-v2.1-json-patch",
        },
    ),
    "upload_image": (
        "PUT",
        "/file",
        {"data": b"\0" * 1024, "content_type": "application/octet-stream"},
    ),
    "add_member": (
        "POST",
        "/members",
        {"data": b'{"member": "project-b"}', "content_type": "application/json"},
    ),
    "deactivate": ("POST", "/actions/deactivate", {}),
    "add_tag": ("PUT", "/tags/gold", {}),
}


@pytest.mark.parametrize(("method", "suffix", "body"), MUTATIONS.values(), ids=MUTATIONS.keys())
async def test_the_gateway_hides_another_tenants_private_image_from_every_change(
    gateway: Client,
    glance: Glance,
    token: TokenFactory,
    method: str,
    suffix: str,
    body: dict[str, Any],
) -> None:
    image_id = await uploadable_image(glance, ALICE)
    before = await glance.request("GET", f"/v2/images/{image_id}", ADMIN)
    headers = {"X-Auth-Token": token_of(token, BOB)}
    if "content_type" in body:
        headers["Content-Type"] = body["content_type"]
    response = await gateway.request(
        method, f"/v2/images/{image_id}{suffix}", data=body.get("data"), headers=headers
    )
    fault = await assert_fault(response, 404, "itemNotFound")
    assert fault["message"] == f"No image found with ID {image_id}."
    assert await glance.request("GET", f"/v2/images/{image_id}", ADMIN) == before
    # The owner's same call reaches Glance, which decides it.
    headers["X-Auth-Token"] = token_of(token, ALICE)
    own = await gateway.request(
        method, f"/v2/images/{image_id}{suffix}", data=body.get("data"), headers=headers
    )
    if method == "POST" and suffix == "/actions/deactivate":
        fault = await assert_fault(own, 403, "forbidden")
        assert fault["message"] == "Not allowed to deactivate image in status 'queued'"
    else:
        assert own.status < 300, await own.text()


OBSERVER = Caller("project-a", "olivia", ("reader",))


async def test_a_reader_may_list_and_show_but_not_change(
    gateway: Client, glance: Glance, token: TokenFactory
) -> None:
    image_id = await glance.create_image(ALICE)
    headers = {"X-Auth-Token": token_of(token, OBSERVER)}
    listed = await gateway.get("/v2/images", headers=headers)
    assert listed.status == 200
    assert image_id in [i["id"] for i in (await listed.json())["images"]]
    shown = await gateway.get(f"/v2/images/{image_id}", headers=headers)
    assert shown.status == 200
    renamed = await gateway.patch(
        f"/v2/images/{image_id}",
        data=b'[{"op": "replace", "path": "/name", "value": "x"}]',
        headers={**headers, "Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    await assert_fault(renamed, 403, "forbidden")
    # Another project's private image is not in the reader's list: Glance filters.
    other = await glance.create_image(BOB)
    listed = await gateway.get("/v2/images", headers=headers)
    assert other not in [i["id"] for i in (await listed.json())["images"]]


async def test_stage_and_import_through_the_gateway(
    gateway: Client, glance: Glance, token: TokenFactory
) -> None:
    """Glance's interoperable import: discover the methods, stage the data,
    import it with glance-direct; the image becomes active with the bytes sent."""
    headers = {"X-Auth-Token": token_of(token, ALICE)}
    methods = await gateway.get("/v2/info/import", headers=headers)
    assert methods.status == 200
    assert "glance-direct" in (await methods.json())["import-methods"]["value"]
    stores = await gateway.get("/v2/info/stores", headers=headers)
    assert [s["id"] for s in (await stores.json())["stores"]] == ["fs"]

    image_id = await uploadable_image(glance, ALICE)
    data = bytes(range(256)) * 4096
    staged = await gateway.put(
        f"/v2/images/{image_id}/stage",
        data=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert staged.status == 204, await staged.text()
    imported = await gateway.post(
        f"/v2/images/{image_id}/import",
        json={"method": {"name": "glance-direct"}},
        headers=headers,
    )
    assert imported.status == 202, await imported.text()

    async def active() -> bool:
        return await image_status(glance, image_id) == "active"

    await until(active, "Glance to import the staged data")
    downloaded = await gateway.get(f"/v2/images/{image_id}/file", headers=headers)
    assert await downloaded.read() == data


async def test_a_chunked_upload_over_the_cap_never_makes_an_image_active(
    make_gateway: GatewayFactory, glance: Glance, token: TokenFactory
) -> None:
    """Three times routes.max_image_bytes, chunked as glanceclient sends it:
    the client gets 413 and Glance never receives the whole body, so the
    image stays queued (the owner's next upload is taken, not a 409)."""
    cap = 1 << 20
    gateway = await make_gateway(
        glance.url,
        upstream={"read_timeout": 30},
        authorization={"policy_file": str(GLANCE_POLICY)},
        routes={"max_image_bytes": cap},
    )
    image_id = await uploadable_image(glance, ALICE)
    headers = {"X-Auth-Token": token_of(token, ALICE),
               "Content-Type": "application/octet-stream"}  # fmt: skip

    async def three_caps() -> AsyncIterator[bytes]:
        for _ in range(3 * 16):
            yield b"\3" * (cap // 16)

    over = await gateway.put(f"/v2/images/{image_id}/file", data=three_caps(), headers=headers)
    fault = await assert_fault(over, 413, "overLimit")
    assert fault["details"] == f"More than {cap} bytes; the limit is {cap}."

    # Glance logs under the gateway's request id that the body never ended,
    # once it has put the image back in the queue.
    request_id = over.headers["X-OpenStack-Request-Id"]

    async def failed_at_glance() -> list[str]:
        return [line for line in glance.log.read_text().splitlines()
                if request_id in line and "Caught error" in line]  # fmt: skip

    [failure] = await until(failed_at_glance, "Glance to fail the cut upload")
    assert "NoMoreData" in failure  # gunicorn: the chunked body stopped before its end
    assert await image_status(glance, image_id) == "queued"
    data = b"\4" * (cap // 2)
    retry = await gateway.put(f"/v2/images/{image_id}/file", data=data, headers=headers)
    assert retry.status == 204, await retry.text()
    _, body = await glance.request("GET", f"/v2/images/{image_id}", ADMIN)
    assert (body["status"], body["size"]) == ("active", len(data))
    assert body["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
