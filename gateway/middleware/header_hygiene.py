"""4. Header hygiene: decide which client headers may ever reach the backend.

The decision is the header boundary's (gateway.http.header_boundary): an
allow-list of end-to-end headers, names folded for case and ``_``/``-``.
This step applies it before any later step could trust a client header.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.http.header_boundary import HeaderBoundary
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.headers")

_CREDENTIALS = ("x-auth-token", "authorization", "x-service-token")


class HeaderHygieneMiddleware(Middleware):
    def __init__(self, boundary: HeaderBoundary) -> None:
        self.boundary = boundary

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        ctx.forward_headers, spoofed = self.boundary.forwardable(request.headers)
        if spoofed:
            log.info(
                "dropped client-supplied identity headers: %s",
                ", ".join(spoofed),
                extra={"request_id": ctx.request_id},
            )
        return await handler(request)
