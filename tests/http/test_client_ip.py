"""The client address behind trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.http.client_ip import BadForwardedFor, client_ip

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_ip("203.0.113.9", ["198.51.100.1"], PROXIES) == "203.0.113.9"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip("10.0.0.1", ["198.51.100.1"], []) == "10.0.0.1"


def test_right_most_untrusted_hop_behind_trusted_proxies() -> None:
    # The client wrote "1.1.1.1" itself; our proxies appended the rest.
    forwarded = ["1.1.1.1, 198.51.100.7", "10.1.2.3"]
    assert client_ip("10.0.0.1", forwarded, PROXIES) == "198.51.100.7"


def test_all_hops_trusted_gives_the_left_most() -> None:
    assert client_ip("10.0.0.1", ["10.0.0.5, 10.0.0.6"], PROXIES) == "10.0.0.5"


def test_no_header_from_a_trusted_proxy_is_the_peer() -> None:
    assert client_ip("10.0.0.1", [], PROXIES) == "10.0.0.1"


def test_ipv6_hops_are_normalised() -> None:
    assert client_ip("fd00::1", ["2001:DB8:0::1"], PROXIES) == "2001:db8::1"


def test_garbage_hop_from_a_trusted_proxy_is_refused() -> None:
    with pytest.raises(BadForwardedFor, match="not an IP address"):
        client_ip("10.0.0.1", ["1.1.1.1, bogus"], PROXIES)
