"""A Host that is not a plain host[:port] never becomes a link.

Without ``listen.public_url`` the gateway builds every link it relays, and
the X-Forwarded-Host it sends, from the request's Host: each malformed one
is refused with a 400 before anything reaches the backend. A configured
public_url that is not scheme://host[:port][/path] is refused by
``check-config``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.cli.main import main
from tests.security.conftest import LiveGateway, exchange, parse_response
from tests.support.tokens import HS_SECRET, TokenFactory
from tests.support.upstreams import ScriptedUpstream

ServeGateway = Callable[..., Awaitable[LiveGateway]]

BAD_HOSTS = {
    "user info": "x@evil.example",
    "markup": '"><img src=x onerror=alert(1)>',
    "a path": "evil.example/x",
    "a backslash": "evil.example\\x",
    "a list": "gateway.example,evil.example",
    "a parameter": "gateway.example;for=evil",
    "percent-encoded": "%65vil.example",
    "empty": "",
    "a port alone": ":8080",
    "two ports": "gateway.example:80:80",
    "a port not digits": "gateway.example:8o",
    "a port past 65535": "gateway.example:65536",
    "an empty port": "gateway.example:",
    "an unclosed IPv6 literal": "[::1",
    "a name in brackets": "[gateway.example]",
    "a zone id": "[fe80::1%25eth0]",
    "IPvFuture": "[v1.fe]",
    "text after the literal": "[::1]x",
    "a name over 253 characters": "a" * 254,
    "a space": "gateway example",
}
GOOD_HOSTS = [
    "images.example.com",
    "images.example.com:8443",
    "192.0.2.10:8080",
    "[::1]:8080",
    "[2001:db8::1]",
    "localhost",
]


def request(method: str, target: str, host: str, token: str | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if token is not None:
        lines.append(f"X-Auth-Token: {token}")
    return "\r\n".join([*lines, "", ""]).encode()


def versions_document(base: str) -> bytes:
    link = {"rel": "self", "href": f"{base}/v2/"}
    return json.dumps({"versions": [{"id": "v2.17", "links": [link]}]}).encode()


@pytest.mark.parametrize("case", list(BAD_HOSTS))
async def test_a_malformed_host_is_400_and_nothing_is_forwarded(
    serve_gateway: ServeGateway,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    upstream, url = scripted
    gateway = await serve_gateway(url)
    host = BAD_HOSTS[case]
    targets = [("DELETE", f"/v2/images/{uuid.uuid4()}", token()), ("GET", "/versions", None)]
    for method, target, credential in targets:
        with caplog.at_level(logging.INFO):
            raw = await exchange(gateway.port, request(method, target, host, credential))
        response = parse_response(raw)
        assert response.status == 400, raw
        fault = json.loads(response.body)["badRequest"]
        assert fault["message"] == "The Host header is not a valid host[:port]."
        if host:
            assert host.encode() not in raw
    assert upstream.received == []
    refusals = [r.getMessage() for r in caplog.records if r.name == "gateway.http.faults"]
    assert len(refusals) == 2
    assert all("-> 400 The Host header" in line for line in refusals)


@pytest.mark.parametrize("host", GOOD_HOSTS)
async def test_a_plain_host_still_works_and_links_use_it(
    serve_gateway: ServeGateway,
    scripted: tuple[ScriptedUpstream, str],
    token: TokenFactory,
    host: str,
) -> None:
    upstream, url = scripted
    gateway = await serve_gateway(url, authorization={"owner_check": "backend"})
    upstream.status, upstream.body = 300, versions_document(url)
    response = parse_response(await exchange(gateway.port, request("GET", "/versions", host)))
    assert response.status == 300
    [version] = json.loads(response.body)["versions"]
    assert version["links"][0]["href"] == f"http://{host}/v2/"
    upstream.status, upstream.body = 204, b""
    deleted = await exchange(
        gateway.port, request("DELETE", f"/v2/images/{uuid.uuid4()}", host, token())
    )
    assert parse_response(deleted).status == 204
    assert [r.headers["X-Forwarded-Host"] for r in upstream.received] == [host, host]


async def test_with_a_public_url_the_host_is_not_read(
    serve_gateway: ServeGateway, scripted: tuple[ScriptedUpstream, str]
) -> None:
    upstream, url = scripted
    gateway = await serve_gateway(url, listen={"public_url": "https://images.example.com/image"})
    upstream.status, upstream.body = 300, versions_document(url)
    raw = await exchange(gateway.port, request("GET", "/versions", "x@evil.example"))
    response = parse_response(raw)
    assert response.status == 300
    assert b"evil" not in raw
    [version] = json.loads(response.body)["versions"]
    assert version["links"][0]["href"] == "https://images.example.com/image/v2/"
    assert upstream.received[0].headers["X-Forwarded-Host"] == "images.example.com"


BAD_PUBLIC_URLS = {
    "https://user:secret@images.example.com": "user name or password",
    "https://x@evil.example": "user name or password",
    "https://images.example.com/?next=evil": "query",
    "https://images.example.com/image#top": "fragment",
    "ftp://images.example.com": "http:// or https://",
    "images.example.com": "http:// or https://",
    "https://images.example.com:99999": "host",
    "https://images.example.com:8o": "host",
    "https://images.example.com,evil.example": "host",
    "https://[::1": "host",
    'https://"><b>/': "host",
    "https://images.example.com/a b": "path",
    "https://images.example.com/a/../b": "segment",
}


@pytest.mark.parametrize("public_url", list(BAD_PUBLIC_URLS))
def test_check_config_refuses_a_public_url_that_is_not_a_base_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], public_url: str
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "upstream:\n  url: http://glance.test:9292\n"
        f"auth:\n  keys: [{{algorithm: HS256, secret: {HS_SECRET}}}]\n"
        f"listen:\n  public_url: {json.dumps(public_url)}\n"
    )
    assert main(["check-config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "listen.public_url: " in error
    assert BAD_PUBLIC_URLS[public_url] in error
