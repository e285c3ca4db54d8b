"""Via (RFC 9110 §7.6.3): record our hop, refuse a request that loops."""

from __future__ import annotations

import re

from aiohttp import web

from gateway import __version__
from gateway.config import ViaConfig
from gateway.http.faults import GatewayFault
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import append_header_value, context_of

# Each Via member: protocol, received-by, optional comment.
_MEMBER = re.compile(r"^\s*(?:[A-Za-z0-9._-]+/)?[A-Za-z0-9._-]+\s+([^\s,()]+)(?:\s+\(.*\))?\s*$")
MAX_HOPS = 30


def received_by(via_values: list[str]) -> list[str]:
    """The received-by of each member; ValueError when a member is malformed."""
    hosts: list[str] = []
    for value in via_values:
        # Comments may contain commas; drop them before splitting members.
        for member in re.sub(r"\([^()]*\)", "()", value).split(","):
            if not member.strip():
                continue
            match = _MEMBER.match(member)
            if match is None:
                raise ValueError(member.strip())
            hosts.append(match.group(1).lower())
    return hosts


class ViaMiddleware(Middleware):
    def __init__(self, config: ViaConfig) -> None:
        self.pseudonym = config.pseudonym
        # As received_by reports a hop: lower case.
        self._hop = config.pseudonym.lower()
        self.entry = f"1.1 {config.pseudonym} (image-gateway/{__version__})"

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        ctx.step = "via"
        try:
            hops = received_by(request.headers.getall("Via", []))
        except ValueError:
            raise GatewayFault(
                400, "Malformed Via header.", details="A member is not 'protocol received-by'."
            ) from None
        if self._hop in hops:
            raise GatewayFault(
                508,
                "Request loop detected.",
                details=f"Via already names {self.pseudonym}; check the upstream URL.",
            )
        if len(hops) >= MAX_HOPS:
            raise GatewayFault(400, "Too many hops in Via.")
        ctx.upstream_headers["Via"] = self.entry

        def append_via(response: web.StreamResponse) -> None:
            # Only a response that crossed us from the upstream has a hop to
            # record; the gateway's own faults originate here.
            if ctx.upstream_status is not None:
                headers = response.headers
                assert not isinstance(headers, tuple)
                append_header_value(headers, "Via", self.entry)

        ctx.before_send.append(append_via)
        return await handler(request)
