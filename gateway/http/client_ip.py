"""The client's address, for limits counted by IP.

The peer is the client unless it is one of our trusted proxies; then the
client is the right-most ``X-Forwarded-For`` hop that is not itself a
trusted proxy. Hops to the left of that one were written by the client and
prove nothing. A trusted proxy that sends a hop which is not an address is
misconfigured or being abused, and the request is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadForwardedFor(ValueError):
    """An X-Forwarded-For hop from a trusted proxy that is not an IP address."""


def is_trusted_proxy(address: str, proxies: Sequence[IPNetwork]) -> bool:
    if not proxies:
        # The shipped set-up trusts none: no address to parse per request.
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(peer: str, forwarded_for: Sequence[str], proxies: Sequence[IPNetwork]) -> str:
    if not is_trusted_proxy(peer, proxies):
        return peer
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
    client = peer
    for hop in reversed(hops):
        try:
            client = str(ipaddress.ip_address(hop))
        except ValueError:
            message = f"X-Forwarded-For hop {hop[:64]!r} is not an IP address"
            raise BadForwardedFor(message) from None
        if not is_trusted_proxy(client, proxies):
            return client
    # Every hop is a proxy of ours: the left-most is as close as we get.
    return client
