"""The proxy against a scripted upstream: faults of every kind, streamed bodies."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.app import GATEWAY
from gateway.demo_backend.image_store import RECEIVED, add_image
from tests.support.faults import OUR_VIA, assert_fault, assert_request_id
from tests.support.gateway_app import GatewayFactory
from tests.support.ports import free_port
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ImageDataBackend, ScriptedUpstream
from tests.support.waiting import until


def admin(token: TokenFactory) -> str:
    """A global admin's token: no owner look-up, straight to the backend."""
    return token("operations", "root", ["admin"])


async def admin_delete(
    make_gateway: GatewayFactory, url: str, token: TokenFactory, **sections: Any
) -> ClientResponse:
    """One admin DELETE of a random image through a gateway in front of ``url``."""
    client = await make_gateway(url, **sections)
    return await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": admin(token)})


# Every error status, 4xx as well as 5xx, reaches the client as a fault body.
@pytest.mark.parametrize(
    ("status", "fault"), [(500, "apiFault"), (400, "badRequest"), (404, "itemNotFound")]
)
async def test_upstream_html_errors_are_rewritten_to_faults(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    status: int,
    fault: str,
) -> None:
    upstream, url = scripted
    upstream.status = status
    upstream.content_type = "text/html"
    upstream.body = (
        b"<html><head><title>500 Internal Server Error</title></head><body>"
        b"<h1>500 Internal Server Error</h1>The store &amp; its disk failed.<br /></body></html>"
    )
    response = await admin_delete(make_gateway, url, token)
    body = await assert_fault(response, status, fault)
    assert body["message"] == "The store & its disk failed."
    # The error crossed our hop, so the response records it.
    assert response.headers["Via"] == OUR_VIA


async def test_upstream_json_error_message_is_kept(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    upstream, url = scripted
    upstream.status = 409
    upstream.body = b'{"conflictingRequest": {"code": 409, "message": "Image is in use."}}'
    response = await admin_delete(make_gateway, url, token)
    body = await assert_fault(response, 409, "conflictingRequest")
    assert body["message"] == "Image is in use."


async def test_pass_through_errors_keeps_the_upstream_body(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    upstream, url = scripted
    upstream.status = 409
    upstream.content_type = "text/plain"
    upstream.body = b"busy"
    response = await admin_delete(make_gateway, url, token, upstream={"pass_through_errors": True})
    assert response.status == 409
    assert await response.text() == "busy"
    assert_request_id(response)


@pytest.mark.parametrize(("status", "passed"), [(502, 502), (504, 504), (503, 503)])
async def test_upstream_gateway_errors_are_503_unless_passed(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    status: int,
    passed: int,
) -> None:
    upstream, url = scripted
    upstream.status = status
    upstream.body = b"{}"
    client = await make_gateway(url)
    path = f"/v2/images/{uuid.uuid4()}"
    tok = admin(token)
    await assert_fault(
        await client.delete(path, headers={"X-Auth-Token": tok}), 503, "serviceUnavailable"
    )
    passing = await make_gateway(url, upstream={"pass_gateway_errors": True})
    response = await passing.delete(path, headers={"X-Auth-Token": tok})
    await assert_fault(response, passed, "serviceUnavailable")


async def test_upstream_refused_is_503(
    make_gateway: GatewayFactory, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_gateway(f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, logger="gateway.handlers.proxy"):
        response = await client.delete(
            f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": admin(token)}
        )
    body = await assert_fault(response, 503, "serviceUnavailable")
    assert "failed" in body["details"]
    request_id = response.headers["X-Compute-Request-Id"]
    assert any(getattr(r, "request_id", None) == request_id for r in caplog.records)


async def test_upstream_refused_during_owner_lookup_is_503(
    make_gateway: GatewayFactory, token: TokenFactory
) -> None:
    client = await make_gateway(f"http://127.0.0.1:{free_port()}")
    response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token()})
    await assert_fault(response, 503, "serviceUnavailable")


async def test_upstream_timeout_is_503_or_504_when_passed(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    upstream, url = scripted
    upstream.hang = True
    fast: dict[str, Any] = {"read_timeout": 0.2}
    client = await make_gateway(url, upstream=fast)
    path = f"/v2/images/{uuid.uuid4()}"
    response = await client.delete(path, headers={"X-Auth-Token": admin(token)})
    body = await assert_fault(response, 503, "serviceUnavailable")
    assert body["details"] == "The image service timed out."
    passing = await make_gateway(url, upstream={**fast, "pass_gateway_errors": True})
    response = await passing.delete(path, headers={"X-Auth-Token": admin(token)})
    await assert_fault(response, 504, "serviceUnavailable")


async def test_owner_lookup_refused_by_upstream_is_503_not_404(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    """The gateway's own identity refused is a deployment fault, not the caller's."""
    upstream, url = scripted
    upstream.status = 401
    client = await make_gateway(url)
    response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token()})
    body = await assert_fault(response, 503, "serviceUnavailable")
    assert "401" in body["details"]
    assert [r.method for r in upstream.received] == ["GET"]


async def test_success_headers_are_relayed_without_hop_by_hop(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    upstream, url = scripted
    upstream.status = 204
    upstream.headers = {"X-Backend": "glance-1", "Via": "1.1 glance", "Keep-Alive": "timeout=5"}
    client = await make_gateway(url)
    response = await client.delete(
        f"/v2/images/{uuid.uuid4()}?force=1", headers={"X-Auth-Token": admin(token)}
    )
    assert response.status == 204
    assert response.headers["X-Backend"] == "glance-1"
    assert response.headers["Via"] == f"1.1 glance, {OUR_VIA}"
    assert "Keep-Alive" not in response.headers
    assert upstream.received[-1].query_string == "force=1"


async def test_upstream_body_cut_short_truncates_the_client_response(
    make_gateway: GatewayFactory, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Headers promise 100 bytes, the backend sends 10 and hangs up."""

    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await make_gateway(f"http://127.0.0.1:{port}")
        with caplog.at_level(logging.WARNING, logger="gateway.handlers.proxy"):
            response = await client.delete(
                f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": admin(token)}
            )
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert any("cut short" in r.getMessage() for r in caplog.records)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("method", "rest"),
    [
        ("DELETE", "?name=a%20b&path=%2Fx%3Fy"),
        # A path value (the tag "a b=c+d@e&f") goes as one quoted segment.
        # One holding "?", "#" or ";" never goes at all: its grammar refuses
        # it (tests/http/test_path_grammar.py).
        ("PUT", "/tags/a%20b%3Dc%2Bd%40e%26f"),
        ("PUT", "/tags/x%2By%3Dz"),
    ],
)
async def test_the_target_is_forwarded_as_the_client_encoded_it(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    method: str,
    rest: str,
) -> None:
    upstream, url = scripted
    client = await make_gateway(url)
    target = f"/v2/images/{uuid.uuid4()}{rest}"
    response = await client.request(
        method, URL(target, encoded=True), headers={"X-Auth-Token": admin(token)}
    )
    assert response.status == 204
    (received,) = upstream.received
    assert (received.method, received.raw_path) == (method, target)


async def test_lookups_and_forwarding_share_one_kept_connection(
    make_gateway: GatewayFactory, store_server: TestServer, token: TokenFactory
) -> None:
    """Owner GET, then DELETE, for several requests: all on one upstream connection."""
    client = await make_gateway(str(store_server.make_url("")).rstrip("/"))
    store_app = store_server.app
    images = [add_image(store_app, owner="project-a") for _ in range(3)]
    for image in images:
        response = await client.delete(f"/v2/images/{image.id}", headers={"X-Auth-Token": token()})
        assert response.status == 204
    http = client.app[GATEWAY].upstream.http
    assert http.open_connections == http.idle_connections == 1
    methods = [r.method for r in store_app[RECEIVED] if r.path.startswith("/v2/images/")]
    assert methods == ["GET", "DELETE"] * 3


async def test_a_backend_outage_is_logged_as_it_begins_and_as_it_ends(
    make_gateway: GatewayFactory,
    store_app: web.Application,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.upstream")
    port = free_port()  # the backend is not there yet
    client = await make_gateway(f"http://127.0.0.1:{port}")
    headers = {"X-Auth-Token": admin(token)}
    for _ in range(3):
        response = await client.delete(f"/v2/images/{uuid.uuid4()}", headers=headers)
        await assert_fault(response, 503, "serviceUnavailable")
    backend = TestServer(store_app, host="127.0.0.1", port=port)
    await backend.start_server()
    try:
        image = add_image(store_app, owner="project-a")
        assert (await client.delete(f"/v2/images/{image.id}", headers=headers)).status == 204
        gone = await client.delete(f"/v2/images/{image.id}", headers=headers)
        assert gone.status == 404
    finally:
        await backend.close()

    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.upstream"]
    where = f"the image service (http://127.0.0.1:{port})"
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{where} unavailable: DELETE /v2/images/")
    assert "Connect call failed" in lines[0] or "refused" in lines[0]
    assert lines[1].startswith(f"{where} recovered after ")
    assert lines[1].endswith("s down, 3 failure(s)")


# Image bytes against byte rules: reserved before they move, refunded when they did not.

KiB, MiB = 1 << 10, 1 << 20
UPLOAD_BUDGET = 1 * MiB


def byte_rules(limiter_section: dict[str, Any], **rule: Any) -> dict[str, Any]:
    """A rate_limit section with one byte rule of 1 MiB an hour, slices of 64 KiB."""
    budget = {"name": "image-bytes", "count": "bytes", "unit": "hour", "value": "1MiB", **rule}
    return {**limiter_section, "byte_slice": "64KiB", "rules": [budget]}


async def bytes_used(client: Any, tok: str, rule: str = "image-bytes") -> int:
    response = await client.get("/limits", headers={"X-Auth-Token": tok})
    [entry] = [e for e in (await response.json())["limits"]["rate"] if e["name"] == rule]
    limit = entry["limit"][0]
    return int(limit["value"]) - int(limit["remaining"])


async def settles_at(client: Any, tok: str, used: int) -> None:
    """Refunds run after the answer: wait for the budget to show ``used``."""

    async def there() -> bool:
        return await bytes_used(client, tok) == used

    await until(there, f"{used} bytes used", deadline=5, interval=0.01)


async def bytes_before_the_cut(response: ClientResponse) -> int:
    """How much of a body arrived before it was cut (it must be)."""
    received = 0
    try:
        async for piece in response.content.iter_any():
            received += len(piece)
    except aiohttp.ClientPayloadError:
        return received
    raise AssertionError(f"the body ended whole after {received} bytes")


def upload_path() -> str:
    return f"/v2/images/{uuid.uuid4()}/file"


def image_headers(tok: str, **more: str) -> dict[str, str]:
    return {"X-Auth-Token": tok, "Content-Type": "application/octet-stream", **more}


async def blocks(count: int, size: int = 32 * KiB) -> Any:
    for _ in range(count):
        yield b"\x5a" * size


async def test_a_declared_upload_over_budget_is_refused_before_a_byte_is_forwarded(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    client = await make_gateway(url, rate_limit=byte_rules(limiter_section))
    tok = admin(token)
    fits = await client.put(upload_path(), data=b"x" * (600 * KiB), headers=image_headers(tok))
    assert fits.status == 204
    assert 'qu="content-bytes"' in fits.headers["RateLimit-Policy"]
    assert fits.headers["RateLimit"].startswith(f'"image-bytes";r={UPLOAD_BUDGET - 600 * KiB};t=')
    over = await client.put(upload_path(), data=b"x" * (500 * KiB), headers=image_headers(tok))
    body = await assert_fault(over, 413, "overLimit")
    assert (
        "Over byte limit image-bytes: 512000 bytes asked, 434176 of 1048576 left"
        in (body["details"])
    )
    assert 3500 < int(over.headers["Retry-After"]) <= 3600
    assert over.headers["Connection"] == "close"
    # Nothing of it reached the backend, and it took nothing from the budget.
    assert [u.received for u in backend.uploads] == [600 * KiB]
    assert await bytes_used(client, tok) == 600 * KiB


async def test_more_than_the_whole_budget_is_refused_without_a_retry_after(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    client = await make_gateway(url, rate_limit=byte_rules(limiter_section))
    response = await client.put(
        upload_path(), data=b"x" * (2 * MiB), headers=image_headers(admin(token))
    )
    body = await assert_fault(response, 413, "overLimit")
    assert "it will never fit" in body["details"]
    assert "Retry-After" not in response.headers
    assert backend.uploads == []


async def test_a_chunked_upload_reserves_slices_and_pays_what_it_moved(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    client = await make_gateway(url, rate_limit=byte_rules(limiter_section))
    tok = admin(token)
    # 10 blocks of 32 KiB: five 64 KiB slices.
    response = await client.put(upload_path(), data=blocks(10), headers=image_headers(tok))
    assert response.status == 204
    assert [(u.received, u.whole) for u in backend.uploads] == [(320 * KiB, True)]
    await settles_at(client, tok, 320 * KiB)
    # A small one: its first slice is mostly given back.
    response = await client.put(upload_path(), data=blocks(1, 1000), headers=image_headers(tok))
    assert response.status == 204
    await settles_at(client, tok, 320 * KiB + 1000)


async def test_a_chunked_upload_past_the_budget_is_cut_and_never_completes(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    client = await make_gateway(url, rate_limit=byte_rules(limiter_section))
    tok = admin(token)
    try:
        response = await client.put(upload_path(), data=blocks(64), headers=image_headers(tok))
        # Told, when the client still reads the answer.
        await assert_fault(response, 413, "overLimit")
    except aiohttp.ClientError:
        pass  # the connection closed while it was still sending: it cannot be told
    (upload,) = backend.uploads
    assert not upload.whole
    assert upload.received <= UPLOAD_BUDGET
    # What moved is paid, to the last byte of the budget at most, and the
    # slice reserved beyond it is given back.
    used = await bytes_used(client, tok)
    assert upload.received <= used <= UPLOAD_BUDGET
    await settles_at(client, tok, used)


async def test_a_client_that_hangs_up_mid_upload_gets_its_unmoved_bytes_back(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    client = await make_gateway(url, rate_limit=byte_rules(limiter_section))
    tok = admin(token)
    host, port = client.server.host, client.server.port
    _, writer = await asyncio.open_connection(host, port)
    head = (
        f"PUT {upload_path()} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Auth-Token: {tok}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {800 * KiB}\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * (200 * KiB))
    await writer.drain()
    await backend.upload_started.wait()
    # All 800 KiB were reserved before the first byte moved.
    assert await bytes_used(client, tok) == 800 * KiB
    writer.close()
    await writer.wait_closed()

    async def given_back() -> bool:
        return await bytes_used(client, tok) <= 200 * KiB

    await until(given_back, "the unmoved bytes to come back", deadline=5, interval=0.01)
    (upload,) = backend.uploads
    assert not upload.whole
    assert upload.received <= await bytes_used(client, tok)


async def test_a_backend_that_refuses_an_upload_costs_it_nothing(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    backend.refuse_uploads = 409
    client = await make_gateway(url, rate_limit=byte_rules(limiter_section))
    tok = admin(token)
    response = await client.put(upload_path(), data=b"x" * (300 * KiB), headers=image_headers(tok))
    assert response.status == 409
    await settles_at(client, tok, 0)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_download_is_reserved_before_it_starts(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
    chunked: bool,
) -> None:
    backend, url = image_backend
    backend.image = bytes(range(256)) * (600 * 4)  # 600 KiB
    backend.chunked_downloads = chunked
    rules = byte_rules(limiter_section, routes=["download_image"])
    client = await make_gateway(url, rate_limit=rules)
    tok = admin(token)
    path = upload_path()
    first = await client.get(path, headers={"X-Auth-Token": tok})
    assert first.status == 200
    assert await first.read() == backend.image
    await settles_at(client, tok, 600 * KiB)
    second = await client.get(path, headers={"X-Auth-Token": tok})
    if chunked:
        # No length to reserve: slices as it goes, cut when the budget holds no more.
        assert second.status == 200
        received = await bytes_before_the_cut(second)
        # Paid: what was relayed, the chunk that did not fit never sent.
        used = await bytes_used(client, tok)
        assert 600 * KiB + received <= used <= UPLOAD_BUDGET
        assert received < 600 * KiB
        await settles_at(client, tok, used)
    else:
        # Over budget: the 413 goes instead of the body.
        await assert_fault(second, 413, "overLimit")
        await settles_at(client, tok, 600 * KiB)


async def test_a_client_that_leaves_mid_download_gets_the_rest_back(
    make_gateway: GatewayFactory,
    image_backend: tuple[ImageDataBackend, str],
    token: TokenFactory,
    limiter_section: dict[str, Any],
) -> None:
    backend, url = image_backend
    # Larger than what the sockets between can buffer.
    backend.image = b"y" * (32 * MiB)
    rules = byte_rules(limiter_section, routes=["download_image"], value="64MiB")
    client = await make_gateway(url, rate_limit=rules)
    tok = admin(token)
    response = await client.get(upload_path(), headers={"X-Auth-Token": tok})
    assert response.status == 200
    await response.content.readexactly(64 * KiB)
    assert await bytes_used(client, tok) == 32 * MiB
    response.close()

    async def rest_given_back() -> int | None:
        used = await bytes_used(client, tok)
        return used if used < 32 * MiB else None

    used = await until(rest_given_back, "the rest to come back", deadline=5, interval=0.01)
    assert used >= 64 * KiB
