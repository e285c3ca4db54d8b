"""Header hygiene: decide which client headers may ever reach the backend.

The decision is the header boundary's (gateway.http.header_boundary): an
allow-list of end-to-end headers, names folded for case and ``_``/``-``.
This step applies it before any later step could trust a client header.

Without ``listen.public_url`` the Host is what links and X-Forwarded-Host
are built from, so it is checked here too, before anything is forwarded:
a Host that is not a plain ``host[:port]`` is a 400.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.http.faults import GatewayFault
from gateway.http.header_boundary import HeaderBoundary
from gateway.http.public_links import valid_host
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.headers")

_CREDENTIALS = ("x-auth-token", "authorization", "x-service-token")


class HeaderHygieneMiddleware(Middleware):
    def __init__(self, boundary: HeaderBoundary, *, check_host: bool = True) -> None:
        self.boundary = boundary
        # Off when listen.public_url is set: links never read the Host then.
        self.check_host = check_host

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.check_host and not valid_host(request.host):
            # The fault envelope logs it; the Host itself is not repeated.
            raise GatewayFault(
                400,
                "The Host header is not a valid host[:port].",
                details="Send the name or address the gateway is reached by.",
            )
        ctx = context_of(request)
        ctx.forward_headers, spoofed = self.boundary.forwardable(request.headers)
        if spoofed:
            log.info(
                "dropped client-supplied identity headers: %s",
                ", ".join(spoofed),
                extra={"request_id": ctx.request_id},
            )
        return await handler(request)
