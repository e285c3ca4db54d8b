"""Bad request bodies: a clear fault, logged with the request id, nothing forwarded."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.http.conftest import RoutedFactory
from tests.support.faults import assert_fault
from tests.support.tokens import TokenFactory

IMAGE = f"/v2/images/{uuid.uuid4()}"
PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
# fmt: off
# A table: one case a row, its request first, then the fault it must get.
CASES = {
    "malformed JSON-patch": ("PATCH", IMAGE, PATCH_TYPE, b'[{"op": "rename", "path": "/name"}]',
                             400, "badRequest", "op must be one of add, remove, replace"),
    "JSON-patch that is not a list": ("PATCH", IMAGE, PATCH_TYPE, b'{"name": "x"}',
                                      400, "badRequest", "a list of operations"),
    "JSON-patch path not a pointer": ("PATCH", IMAGE, PATCH_TYPE,
                                      b'[{"op": "remove", "path": "name"}]',
                                      400, "badRequest", "JSON pointer"),
    "not JSON at all": ("POST", "/v2/images", "application/json", b"{name: x",
                        400, "badRequest", "not valid JSON"),
    "JSON that is not an object": ("POST", "/v2/images", "application/json", b"[1, 2]",
                                   400, "badRequest", "must be a JSON object"),
    "PATCH as plain JSON": ("PATCH", IMAGE, "application/json", b"[]",
                            415, "badMediaType", "Unsupported media type"),
    "upload as JSON": ("PUT", f"{IMAGE}/file", "application/json", b"{}",
                       415, "badMediaType", "Unsupported media type"),
    "body where none is taken": ("POST", f"{IMAGE}/actions/deactivate", "application/json",
                                 b"{}", 400, "badRequest", "does not accept a request body"),
    "JSON over the limit": ("POST", "/v2/images", "application/json",
                            b'{"name": "' + b"x" * 2000 + b'"}', 413, "overLimit", "too large"),
    "image over the limit": ("PUT", f"{IMAGE}/file", "application/octet-stream",
                             b"\0" * 5000, 413, "overLimit", "larger than this gateway accepts"),
}
# fmt: on


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "status", "fault", "message"),
    CASES.values(),
    ids=CASES.keys(),
)
async def test_bad_bodies_are_refused_logged_and_not_forwarded(
    routed: RoutedFactory,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    status: int,
    fault: str,
    message: str,
) -> None:
    gateway = await routed(routes={"max_json_body_bytes": 1024, "max_image_bytes": 4096})
    caplog.set_level(logging.INFO, logger="gateway.http.faults")
    response = await gateway.client.request(
        method,
        path,
        data=body,
        headers={
            "X-Auth-Token": token("operations", "root", ["admin"]),
            "Content-Type": content_type,
        },
    )
    detail = await assert_fault(response, status, fault)
    assert message in detail["message"], detail
    assert gateway.upstream.received == []
    request_id = response.headers["X-OpenStack-Request-Id"]
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert logged
    assert str(status) in logged[0].getMessage()


async def test_a_chunked_json_body_over_the_limit_is_refused(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed(routes={"max_json_body_bytes": 1024})

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 200
        yield b"{}"

    response = await gateway.client.post(
        "/v2/images",
        data=chunks(),
        headers={"X-Auth-Token": token(), "Content-Type": "application/json"},
    )
    await assert_fault(response, 413, "overLimit")
    assert gateway.upstream.received == []


async def test_a_json_body_within_the_limit_arrives_byte_for_byte(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed()
    gateway.upstream.status, gateway.upstream.body = 200, b"{}"
    patch = b'[ {"op":"add", "path":"/hw_disk_bus", "value":"scsi"} ]\n'
    response = await gateway.client.patch(
        IMAGE,
        data=patch,
        headers={
            "X-Auth-Token": token("operations", "root", ["admin"]),
            "Content-Type": "application/openstack-images-v2.1-json-patch",
        },
    )
    assert response.status == 200
    assert gateway.upstream.bodies == [patch]
    sent = gateway.upstream.received[0].headers
    assert sent["Content-Type"] == "application/openstack-images-v2.1-json-patch"
