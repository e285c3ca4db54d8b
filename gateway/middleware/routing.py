"""5. Route and method: only well-formed requests for known operations go on."""

from __future__ import annotations

from aiohttp import web

from gateway.http.faults import GatewayFault
from gateway.http.routes import UUID_PATTERN, Handler, RouteTable
from gateway.middleware.base import Middleware
from gateway.middleware.context import context_of


class RoutingMiddleware(Middleware):
    def __init__(self, table: RouteTable) -> None:
        self.table = table

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        ctx.step = "route"
        error = request.match_info.http_exception
        if isinstance(error, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(error.allowed_methods))
            raise GatewayFault(
                405,
                f"Method {request.method} is not allowed on this resource.",
                details=f"Allowed: {allowed}.",
                headers={"Allow": allowed},
            )
        if error is not None:
            raise GatewayFault(404, "The resource could not be found.")
        route = self.table.route_of(request)
        if route is not None:
            ctx.route = route
            for name in route.uuid_params:
                value = request.match_info[name]
                if not UUID_PATTERN.fullmatch(value):
                    raise GatewayFault(
                        400,
                        f"Invalid {name}: must be a UUID.",
                        details="Expected 8-4-4-4-12 hexadecimal digits.",
                    )
                ctx.params[name] = value.lower()
            if not route.accepts_body and request.body_exists:
                raise GatewayFault(400, "This operation does not accept a request body.")
        return await handler(request)
