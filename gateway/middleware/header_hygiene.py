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
# Hosts already checked, and their verdicts: clients name the gateway by one
# or two Hosts. A client picks the Host, so the table is bounded; past this
# many it starts again.
_HOSTS_KEPT = 1024


class HeaderHygieneMiddleware(Middleware):
    def __init__(self, boundary: HeaderBoundary, *, check_host: bool = True) -> None:
        self.boundary = boundary
        # Off when listen.public_url is set: links never read the Host then.
        self.check_host = check_host
        self._hosts: dict[str, bool] = {}

    def _valid_host(self, host: str) -> bool:
        valid = self._hosts.get(host)
        if valid is None:
            if len(self._hosts) >= _HOSTS_KEPT:
                self._hosts.clear()
            valid = self._hosts[host] = valid_host(host)
        return valid

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.check_host and not self._valid_host(request.host):
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
