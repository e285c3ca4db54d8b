"""Links the backend writes about itself, pointed at the gateway instead.

Glance builds the ``href`` of its version documents and its ``Location``
headers from the Host it was asked on, which behind the gateway is the
backend's own address: a client that followed one would go around the
gateway, or nowhere. Every such link is rewritten to the gateway's public
base URL (``listen.public_url``, else the scheme and Host of the request).
The ``X-Forwarded-*`` headers let a backend that reads them (oslo's
``http_proxy_to_wsgi``) build the right links itself; the rewrite then finds
nothing to change.

A request's Host is used only when it is a plain ``host[:port]`` (see
``valid_host``): anything else would carry a client's text (``x@evil``,
``">``) into every link and into ``X-Forwarded-Host``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.http.client_ip import IPNetwork, is_trusted_proxy

# Client headers about the path a request took: ours to write, never the
# client's to pass on (a backend that trusts them builds links from them).
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host")

# RFC 9110 §7.2 host[:port], with RFC 3986's host: a reg-name (DNS names and
# dotted IPv4 are both of its form) or a bracketed IPv6 address, checked
# again by ipaddress below. Narrower than RFC 3986's reg-name on purpose: no
# sub-delims or percent-encoding, which no resolvable name holds and which
# ("," ";" "=") would split X-Forwarded-Host or Forwarded at the backend.
# No IPvFuture or zone id either. A port is digits only.
_HOST = re.compile(r"(?:([A-Za-z0-9._~-]{1,253})|\[([0-9A-Fa-f:.]{2,45})\])(?::([0-9]{1,5}))?")
# A public_url's path: RFC 3986 segments of pchars.
_PATH = re.compile(r"(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


def valid_host(host: str) -> bool:
    """Whether ``host`` is an RFC 9110 ``host[:port]`` as the gateway takes one."""
    match = _HOST.fullmatch(host)
    if match is None:
        return False
    _, literal, port = match.groups()
    # Five digits compare as text as they would as numbers; fewer always fit.
    if port is not None and len(port) == 5 and port > "65535":
        return False
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
    return True


def check_public_url(url: str) -> str:
    """``url`` if it is ``scheme://host[:port][/path]`` (http or https); the
    reason otherwise, as a ValueError for the configuration check."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if "@" in authority:
        raise ValueError("must not hold a user name or password (user@)")
    if "?" in url or "#" in url:
        raise ValueError("must not hold a query (?) or a fragment (#)")
    if not valid_host(authority):
        raise ValueError("must name a host as host[:port] (a DNS name, IPv4, or [IPv6])")
    path = slash + path
    if not _PATH.fullmatch(path):
        raise ValueError("has characters a URL path may not hold unencoded")
    if _DOT_SEGMENT.search(path):
        raise ValueError("must not hold a . or .. path segment")
    return url


class PublicLinks:
    def __init__(
        self, public_url: str | None, upstream_url: str, trusted_proxies: Sequence[IPNetwork]
    ) -> None:
        self.public_url = public_url
        self.upstream_url = upstream_url.rstrip("/")
        self.trusted_proxies = trusted_proxies

    def base(self, request: web.Request) -> str:
        """The gateway's address as this client reached it."""
        if self.public_url is not None:
            return self.public_url
        return f"{request.scheme}://{request.host}"

    def rewrite(self, url: str, base: str) -> str:
        """A URL at the backend's address, moved to ``base``; any other unchanged."""
        upstream = self.upstream_url
        if url == upstream or url.startswith(upstream + "/"):
            return base + url[len(upstream) :]
        return url

    def rewrite_document(self, body: bytes, base: str) -> bytes | None:
        """A JSON document with every ``href`` rewritten; None if it is not JSON."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        return json.dumps(self._walk(document, base)).encode()

    def _walk(self, value: Any, base: str) -> Any:
        if isinstance(value, dict):
            return {
                key: self.rewrite(item, base)
                if key == "href" and isinstance(item, str)
                else self._walk(item, base)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._walk(item, base) for item in value]
        return value

    def forwarded_headers(self, request: web.Request, base: str) -> dict[str, str]:
        """X-Forwarded-For/-Proto/-Host for the backend, as the client reached
        us (at ``base``, what ``base(request)`` said).

        The client's own X-Forwarded-For is kept only from a trusted proxy,
        as the rate limiter believes it.
        """
        peer = request.remote or ""
        forwarded_for = peer
        if is_trusted_proxy(peer, self.trusted_proxies):
            forwarded_for = ", ".join([*request.headers.getall("X-Forwarded-For", []), peer])
        proto, _, host = base.partition("://")
        return {
            "X-Forwarded-For": forwarded_for,
            "X-Forwarded-Proto": proto,
            "X-Forwarded-Host": host.split("/", 1)[0],
        }
