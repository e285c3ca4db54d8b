"""Version discovery passes through with links at the gateway's address, and
the backend learns the address the client used."""

from __future__ import annotations

import json

import pytest

from gateway.http.public_links import check_public_url, valid_host
from tests.http.conftest import RoutedFactory
from tests.support.faults import assert_fault
from tests.support.tokens import TokenFactory


def versions_document(base: str) -> bytes:
    return json.dumps(
        {
            "versions": [
                {
                    "id": "v2.17",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": f"{base}/v2/"}],
                },
                {
                    "id": "v2.0",
                    "status": "SUPPORTED",
                    "links": [{"rel": "self", "href": "https://elsewhere.example/v2/"}],
                },
            ]
        }
    ).encode()


async def test_the_version_list_needs_no_token_and_links_to_the_gateway(
    routed: RoutedFactory,
) -> None:
    gateway = await routed()
    gateway.upstream.status = 300
    gateway.upstream.body = versions_document(gateway.upstream_url)
    for path in ("/", "/versions"):
        response = await gateway.client.get(path)
        assert response.status == 300
        document = await response.json()
        own = str(gateway.client.make_url("")).rstrip("/")
        hrefs = [v["links"][0]["href"] for v in document["versions"]]
        assert hrefs == [f"{own}/v2/", "https://elsewhere.example/v2/"]
        assert int(response.headers["Content-Length"]) == len(await response.read())
    assert [r.path for r in gateway.upstream.received] == ["/", "/versions"]
    sent = gateway.upstream.received[0].headers
    assert "X-Roles" not in sent
    assert "X-Identity-Status" not in sent
    # Discovery is not an image API call: no audit record.
    assert gateway.audit_records() == []


async def test_the_configured_public_url_wins_over_the_request_host(
    routed: RoutedFactory,
) -> None:
    gateway = await routed(listen={"public_url": "https://images.example.com/image/"})
    gateway.upstream.status = 300
    gateway.upstream.body = versions_document(gateway.upstream_url)
    response = await gateway.client.get("/", headers={"Host": "internal:8080"})
    document = await response.json()
    assert document["versions"][0]["links"][0]["href"] == "https://images.example.com/image/v2/"
    sent = gateway.upstream.received[0].headers
    assert sent["X-Forwarded-Proto"] == "https"
    assert sent["X-Forwarded-Host"] == "images.example.com"


async def test_v2_needs_a_token_and_its_redirect_points_at_the_gateway(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed()
    await assert_fault(await gateway.client.get("/v2", allow_redirects=False), 401, "unauthorized")
    gateway.upstream.status = 302
    gateway.upstream.headers = {"Location": f"{gateway.upstream_url}/v2/"}
    response = await gateway.client.get(
        "/v2",
        headers={"X-Auth-Token": token(roles=["cloudImages:observer"])},
        allow_redirects=False,
    )
    assert response.status == 302
    assert response.headers["Location"] == str(gateway.client.make_url("/v2/"))


async def test_location_of_a_created_image_points_at_the_gateway(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed()
    gateway.upstream.status, gateway.upstream.body = 201, b'{"id": "x"}'
    gateway.upstream.headers = {"Location": f"{gateway.upstream_url}/v2/images/x"}
    response = await gateway.client.post(
        "/v2/images", json={"name": "n"}, headers={"X-Auth-Token": token()}
    )
    assert response.status == 201
    assert response.headers["Location"] == str(gateway.client.make_url("/v2/images/x"))
    assert await response.json() == {"id": "x"}


async def test_forwarded_headers_are_ours_not_the_clients(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed()
    gateway.upstream.status, gateway.upstream.body = 200, b"{}"
    await gateway.client.get(
        "/v2/images",
        headers={
            "X-Auth-Token": token(),
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "gopher",
            "Forwarded": "for=203.0.113.9;host=evil.example",
        },
    )
    sent = gateway.upstream.received[0].headers
    # The test client's peer is loopback, which is no trusted proxy here.
    assert sent["X-Forwarded-For"] == "127.0.0.1"
    assert sent["X-Forwarded-Host"] == gateway.client.make_url("").authority
    assert sent["X-Forwarded-Proto"] == "http"
    assert "Forwarded" not in sent


async def test_a_trusted_proxys_forwarded_for_is_kept(
    routed: RoutedFactory, token: TokenFactory
) -> None:
    gateway = await routed(rate_limit={"trusted_proxies": ["127.0.0.0/8"]})
    gateway.upstream.status, gateway.upstream.body = 200, b"{}"
    await gateway.client.get(
        "/v2/images", headers={"X-Auth-Token": token(), "X-Forwarded-For": "203.0.113.9"}
    )
    assert gateway.upstream.received[0].headers["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"


@pytest.mark.parametrize(
    "host",
    [
        "images.example.com",
        "images.example.com:8443",
        "IMAGES.Example.COM",
        "localhost",
        "192.0.2.10",
        "192.0.2.10:8080",
        "[::1]",
        "[::1]:8080",
        "[2001:db8::1]:443",
        "[::ffff:192.0.2.1]",
        "glance_internal",
        "a" * 253,
        "h:65535",
        "h:0",
    ],
)
def test_a_plain_host_and_port_is_valid(host: str) -> None:
    assert valid_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "x@evil.example",
        '">',
        "<script>",
        "evil.example/x",
        "evil.example\\x",
        "a b",
        "gateway.example,evil.example",
        "gateway.example;for=evil",
        "%65vil.example",
        "h:80:80",
        "h:8o",
        "h:65536",
        "h:123456",
        "h:",
        ":8080",
        "[::1",
        "::1",
        "[::1]x",
        "[gateway.example]",
        "[fe80::1%25eth0]",
        "[v1.fe]",
        "[::1]:",
        "a" * 254,
        "h\t",
    ],
)
def test_anything_else_is_not(host: str) -> None:
    assert not valid_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com",
        "http://images.example.com:8080/image/",
        "https://[2001:db8::1]:8443/a/b",
        "https://192.0.2.10/v1;x=1/%7Eme",
    ],
)
def test_a_public_url_is_scheme_host_port_and_path(url: str) -> None:
    assert check_public_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://images.example.com", "http:// or https://"),
        ("images.example.com", "http:// or https://"),
        ("https://user:secret@images.example.com", "user name or password"),
        ("https://images.example.com/?x=1", "query"),
        ("https://images.example.com/image#top", "fragment"),
        ("https://", "host"),
        ("https://images.example.com:99999", "host"),
        ('https://">/', "host"),
        ("https://[::1", "host"),
        ("https://images.example.com/a b", "path"),
        ("https://images.example.com/<x>", "path"),
        ("https://images.example.com/%zz", "path"),
        ("https://images.example.com/a/../b", "segment"),
        ("https://images.example.com/.", "segment"),
    ],
)
def test_anything_else_in_a_public_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_public_url(url)
