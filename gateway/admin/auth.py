"""The optional admin token.

Machines send ``Authorization: Bearer <token>``. A browser opens any page
once with ``?token=<token>``: the token goes into an HttpOnly, SameSite
cookie and the browser is sent to the same page without it, so the token
does not stay in the address bar or the history. Probes (``/healthz``,
``/readyz``) need no token: they reveal no tenant's data.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from gateway.http.faults import GatewayFault, render_fault
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import context_of

log = logging.getLogger("gateway.admin")

COOKIE = "igw_admin"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class AdminTokenMiddleware(Middleware):
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def _is_token(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        offered = request.query.get("token")
        if offered is not None and request.method == "GET" and self._is_token(offered):
            query = {k: v for k, v in request.query.items() if k != "token"}
            location = str(request.rel_url.with_query(query))
            response = web.Response(status=303, headers={"Location": location})
            response.set_cookie(COOKIE, offered, httponly=True, samesite="Strict", path="/")
            return response
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        presented = bearer.strip() if scheme.lower() == "bearer" else None
        if self._is_token(presented) or self._is_token(request.cookies.get(COOKIE)):
            return await handler(request)
        log.warning(
            "admin request refused: %s %s from %s (%s)",
            request.method,
            request.path,
            request.remote,
            "wrong token" if presented or offered or COOKIE in request.cookies else "no token",
            extra={"request_id": context_of(request).request_id},
        )
        return render_fault(
            GatewayFault(
                401,
                "The admin listener requires its token.",
                details="Send Authorization: Bearer <admin.token>, or open a page with ?token=.",
                headers={"WWW-Authenticate": 'Bearer realm="image-gateway-admin"'},
            )
        )
