"""4. Header hygiene: decide which client headers may ever reach the backend.

Hop-by-hop headers belong to the client's connection, and identity headers
are ours to set (gateway.authn.identity); anything the client sent of either is
dropped here, before any later step could trust it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.authn.identity import strip_reserved
from gateway.http.hop_by_hop import end_to_end
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.middleware.context import context_of

log = logging.getLogger("gateway.headers")

_CREDENTIALS = ("x-auth-token", "authorization", "x-service-token")


class HeaderHygieneMiddleware(Middleware):
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        headers = end_to_end(request.headers)
        removed = strip_reserved(headers)
        # Credentials are expected; anything else reserved is a client trying
        # to speak for the gateway, which an operator wants to see.
        spoofed = [n for n in removed if n.lower() not in _CREDENTIALS]
        if spoofed:
            log.info(
                "dropped client-supplied identity headers: %s",
                ", ".join(sorted(set(spoofed))),
                extra={"request_id": ctx.request_id},
            )
        ctx.forward_headers = headers
        return await handler(request)
