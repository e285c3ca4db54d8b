"""The fault envelope's bytes: text kept exact for a JSON reader, no markup for a browser."""

from __future__ import annotations

import json

from gateway.http.faults import GatewayFault, fault_body, fault_json, render_fault


def test_fault_json_escapes_what_a_browser_reads_as_markup() -> None:
    body = fault_body(404, "<b>x</b> & <script>", details="a > b")
    raw = fault_json(body)
    assert not {ord("<"), ord(">"), ord("&")} & set(raw)
    assert b"\\u003cb\\u003e" in raw
    assert json.loads(raw) == body


def test_a_rendered_fault_is_escaped_too() -> None:
    response = render_fault(GatewayFault(400, "size < 10 & name <img>"))
    assert isinstance(response.body, bytes)
    assert b"<" not in response.body
    assert json.loads(response.body)["badRequest"]["message"] == "size < 10 & name <img>"
