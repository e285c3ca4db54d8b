"""The admin listener answers only to its own names (DNS rebinding).

A page on any web site can point a DNS name of its own at 127.0.0.1 and have
the browser read the dashboard through it, as same-origin; the Host header
then carries that name. Refusing Host names other than the configured ones
closes that door; the probes stay open to any Host.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.admin.auth import OPEN_PATHS
from gateway.http.faults import GatewayFault, render_fault
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.admin")


def host_name(host: str) -> str:
    """The name in a Host header, port and IPv6 brackets aside, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class AdminHostMiddleware(Middleware):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or host_name(request.host) in self.names:
            return await handler(request)
        log.warning(
            "admin request refused: Host %r is not one of admin.allowed_hosts",
            request.host[:100],
            extra={"request_id": context_of(request).request_id},
        )
        return render_fault(
            GatewayFault(
                403,
                "The admin listener does not answer to this host name.",
                details="Add it to admin.allowed_hosts.",
            )
        )
