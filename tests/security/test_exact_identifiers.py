"""Identifiers mean one thing: ids matched whole and canonical, the query passed
byte for byte, and token values quoted wherever they go into a URL."""

from __future__ import annotations

import uuid

import pytest

from gateway.authz.ownership import ImageOwners
from gateway.config import UpstreamConfig
from gateway.http.upstream import UpstreamClient
from tests.security.conftest import RawBackend, exchange, header_lines, parse_response
from tests.support.faults import assert_fault
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory


def request_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


async def test_an_id_with_a_trailing_newline_is_refused_not_forwarded(
    make_gateway: GatewayFactory, raw_backend: RawBackend, token: TokenFactory
) -> None:
    gateway = await make_gateway(raw_backend.url)
    image = uuid.uuid4()
    response = await gateway.delete(f"/v2/images/{image}%0a", headers={"X-Auth-Token": token()})
    await assert_fault(response, 400, "badRequest")
    assert raw_backend.heads == []


async def test_an_upper_case_id_goes_upstream_in_canonical_form(
    make_gateway: GatewayFactory, raw_backend: RawBackend, token: TokenFactory
) -> None:
    gateway = await make_gateway(raw_backend.url)
    image = str(uuid.uuid4())
    response = await gateway.delete(
        f"/v2/images/{image.upper()}", headers={"X-Auth-Token": token()}
    )
    assert response.status == 204
    lines = [request_line(h) for h in raw_backend.heads]
    assert lines == [
        f"GET /v2/images/{image} HTTP/1.1".encode(),
        f"DELETE /v2/images/{image} HTTP/1.1".encode(),
    ]


@pytest.mark.parametrize("query", ["x=%23y", "a=%2B+b&c=%zz&d", "q=%C3%A9&q=%2f%2F;x"])
async def test_the_query_string_is_forwarded_byte_for_byte(
    make_gateway: GatewayFactory, raw_backend: RawBackend, token: TokenFactory, query: str
) -> None:
    gateway = await make_gateway(raw_backend.url)
    image = uuid.uuid4()
    request = (
        f"DELETE /v2/images/{image}?{query} HTTP/1.1\r\nHost: g\r\n"
        f"X-Auth-Token: {token()}\r\nConnection: close\r\n\r\n"
    )
    assert parse_response(await exchange(gateway.port, request.encode())).status == 204
    [head] = raw_backend.requests("DELETE")
    assert request_line(head) == f"DELETE /v2/images/{image}?{query} HTTP/1.1".encode()


@pytest.mark.parametrize(
    "project", ["../../../../v2/images?x=", "p/q", "a b", "p%2F", "..", ".hidden", "p,q", "p#x"]
)
async def test_a_project_outside_the_documented_charset_is_refused(
    make_gateway: GatewayFactory, raw_backend: RawBackend, token: TokenFactory, project: str
) -> None:
    gateway = await make_gateway(raw_backend.url)
    response = await gateway.delete(
        f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token(project=project)}
    )
    body = await assert_fault(response, 401, "unauthorized")
    assert "project or user id" in body["details"]
    assert raw_backend.heads == []


@pytest.mark.parametrize(
    "project",
    ["0123456789abcdef0123456789abcdef", "alice@example.com", "proj_a:b+c=d~e.f"],
)
async def test_ids_inside_the_charset_are_accepted(
    make_gateway: GatewayFactory, raw_backend: RawBackend, token: TokenFactory, project: str
) -> None:
    raw_backend.owner = project
    gateway = await make_gateway(raw_backend.url)
    image = uuid.uuid4()
    response = await gateway.delete(
        f"/v2/images/{image}", headers={"X-Auth-Token": token(project=project)}
    )
    assert response.status == 204
    # The id goes upstream exactly as the token has it: the backend's owner
    # check compares it with the image's owner byte for byte.
    [head] = raw_backend.requests("DELETE")
    assert request_line(head) == f"DELETE /v2/images/{image} HTTP/1.1".encode()
    sent = {name: value.strip() for name, value in header_lines(head)}
    assert sent[b"X-Project-Id"] == project.encode()
    assert sent[b"X-Tenant-Id"] == project.encode()


async def test_a_token_value_in_a_look_up_url_is_one_quoted_segment(
    raw_backend: RawBackend,
) -> None:
    config = UpstreamConfig(url=raw_backend.url)
    upstream = UpstreamClient(config)
    await upstream.open()
    try:
        owners = ImageOwners(upstream, config)
        image = str(uuid.uuid4())
        await owners.is_member(image, "a/../../b?c=#d", "req-1")
    finally:
        await upstream.close()
    [head] = raw_backend.heads
    assert request_line(head) == (
        f"GET /v2/images/{image}/members/a%2F..%2F..%2Fb%3Fc%3D%23d HTTP/1.1".encode()
    )
