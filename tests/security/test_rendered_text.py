"""Text the gateway did not write is rendered safe wherever it goes.

A backend's error message is kept in the fault, but unescaped, stripped of
tags and escaped again on the way out, so no markup it carried, however
encoded, is live in the fault or in the log.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

from tests.conftest import GatewayFactory, ScriptedUpstream, TokenFactory
from tests.http.conftest import RACKSPACE_POLICY

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
