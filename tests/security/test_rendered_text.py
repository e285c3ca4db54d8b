"""Text the gateway did not write is rendered safe wherever it goes.

A backend's error message is kept in the fault, but unescaped, stripped of
tags and escaped again on the way out, so no markup it carried, however
encoded, is live in the fault or in the log. A request body whose framing
breaks mid-upload is refused without quoting a byte of it, in the answer
or in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

import pytest

from tests.http.conftest import RACKSPACE_POLICY
from tests.security.conftest import LiveGateway, parse_response
from tests.support.gateway_app import GatewayFactory
from tests.support.tokens import TokenFactory
from tests.support.upstreams import ScriptedUpstream
from tests.support.waiting import until

ServeGateway = Callable[..., Awaitable[LiveGateway]]
# Something a browser would take for the start of a tag.
TAG_OPEN = re.compile(r"<[A-Za-z/!?]")

HOSTILE_BODIES = {
    "escaped tag": (b"&lt;img src=x onerror=alert(1)&gt;Image not found", "text/html"),
    "tag split by a tag": (b"<scr<script>ipt>alert(1)</script> Image not found", "text/html"),
    "double-escaped": (
        b"&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;Image not found",
        "text/plain",
    ),
    "escaped in JSON": (
        b'{"message": "&lt;img src=x onerror=alert(1)&gt;Image not found"}',
        "application/json",
    ),
    "JSON unicode escapes": (
        b'{"message": "\\u003cimg src=x onerror=alert(1)\\u003eImage not found"}',
        "application/json",
    ),
    "an unclosed tag": (b"Image not found <img src=x onerror=alert(1)//", "text/plain"),
    "webob's page": (
        b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1>"
        b"&lt;svg/onload=alert(1)&gt;Image not found<br /></body></html>",
        "text/html",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
async def test_markup_in_a_backend_error_is_live_neither_in_the_fault_nor_the_log(
    make_gateway: GatewayFactory,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    upstream, url = scripted
    client = await make_gateway(url, authorization={"policy_file": str(RACKSPACE_POLICY)})
    upstream.status = 404
    upstream.body, upstream.content_type = HOSTILE_BODIES[case]
    with caplog.at_level(logging.INFO):
        response = await client.get(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token()})
    raw = await response.read()
    assert response.status == 404
    assert b"<" not in raw
    assert b">" not in raw
    message = json.loads(raw)["itemNotFound"]["message"]
    assert "Image not found" in message
    assert not TAG_OPEN.search(message), message
    [line] = [r.getMessage() for r in caplog.records if r.name == "gateway.http.faults"]
    assert "Image not found" in line
    assert not TAG_OPEN.search(line), line


async def test_a_less_than_sign_in_a_message_is_kept_and_escaped_on_the_way_out(
    make_gateway: GatewayFactory, scripted: tuple[ScriptedUpstream, str], token: TokenFactory
) -> None:
    upstream, url = scripted
    client = await make_gateway(url, authorization={"policy_file": str(RACKSPACE_POLICY)})
    upstream.status, upstream.content_type = 400, "application/json"
    upstream.body = b'{"message": "min_disk must be < 10 &amp; >= 0"}'
    response = await client.get(f"/v2/images/{uuid.uuid4()}", headers={"X-Auth-Token": token()})
    raw = await response.read()
    for markup in (b"<", b">", b"&"):
        assert markup not in raw
    assert b"\\u003c" in raw
    assert json.loads(raw)["badRequest"]["message"] == "min_disk must be < 10 & >= 0"


# Stands for what an attacker sends in the bad chunk: none of it may come back.
ATTACKER = "ATTACKER-TEXT-7c1e"


# What follows a good first chunk (5 bytes, "hello").
BAD_CHUNKS = {
    "a chunk size that is not hex": f"{ATTACKER}\r\n{ATTACKER}\r\n0\r\n\r\n",
    "a chunk size with text after it": f"5 {ATTACKER}\r\nhello\r\n0\r\n\r\n",
    "a chunk longer than its size": f"3\r\nabc{ATTACKER}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_CHUNKS))
async def test_a_bad_chunk_mid_upload_is_refused_without_quoting_it(
    serve_gateway: ServeGateway,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    upstream, url = scripted
    gateway = await serve_gateway(
        url,
        authorization={"policy_file": str(RACKSPACE_POLICY), "owner_check": "backend"},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = (
        f"PUT /v2/images/{uuid.uuid4()}/file HTTP/1.1\r\nHost: gateway\r\n"
        "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
        f"X-Auth-Token: {token()}\r\n\r\n"
    )
    with caplog.at_level(logging.DEBUG):
        try:
            # The head and a good chunk first; the bad bytes once the upload
            # is under way at the backend.
            writer.write(head.encode() + b"5\r\nhello\r\n")
            await writer.drain()
            await until(
                lambda: bool(upstream.received),
                "the upload to reach the backend",
                deadline=5.0,
                interval=0.005,
            )
            writer.write(BAD_CHUNKS[case].encode())
            await writer.drain()
            async with asyncio.timeout(10):
                raw = await reader.read(-1)
        finally:
            writer.close()
    assert ATTACKER.encode() not in raw
    response = parse_response(raw)
    assert response.status == 400, raw
    fault = json.loads(response.body)["badRequest"]
    assert fault["message"]
    for record in caplog.records:
        assert ATTACKER not in record.getMessage(), record.getMessage()
        assert ATTACKER not in str(record.__dict__), record.__dict__
        assert record.exc_info is None, record.getMessage()
