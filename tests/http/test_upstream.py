"""Extracting the message from a backend's error body."""

from __future__ import annotations

import pytest

from gateway.http.upstream import upstream_message

GLANCE_404 = (
    b"<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n"
    b"  <h1>404 Not Found</h1>\n  No image found with ID abc<br /><br />\n\n\n </body>\n</html>"
)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (GLANCE_404, "text/html; charset=UTF-8", "No image found with ID abc"),
        (b'{"itemNotFound": {"code": 404, "message": "gone"}}', "application/json", "gone"),
        (b'{"message": "top"}', "application/json", "top"),
        (b'{"error": {"message": "nested"}}', "application/json", "nested"),
        (b"{not json", "application/json", "{not json"),
        (b"plain &lt;text&gt;", "text/plain", "plain"),
        (
            b"min_disk must be &lt; 10 &amp;&amp; &gt;= 0",
            "text/plain",
            "min_disk must be < 10 && >= 0",
        ),
        (b"&lt;img src=x onerror=alert(1)&gt;gone", "text/html", "gone"),
        (b"&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;gone", "text/plain", "gone"),
        (b"<scr<script>ipt>alert(1)</script>gone", "text/html", "scr gone"),
        (b"gone <img src=x onerror=alert(1)//", "text/plain", "gone img src=x onerror=alert(1)//"),
        (b"gone <<<a href=x", "text/plain", "gone a href=x"),
        (b"gone </ <! <? <", "text/plain", "gone / ! ? <"),
        (b"<script>alert(1)</script>ok", "text/html", "ok"),
    ],
)
def test_upstream_message(body: bytes, content_type: str, message: str) -> None:
    assert upstream_message(body, content_type) == message


def test_long_messages_are_cut() -> None:
    assert len(upstream_message(b"x" * 5000, "text/plain")) == 500
