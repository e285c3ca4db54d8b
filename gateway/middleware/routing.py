"""Route and method: only well-formed requests for known operations go on."""

from __future__ import annotations

from aiohttp import web

from gateway.config import RoutesConfig
from gateway.http.faults import GatewayFault
from gateway.http.request_body import check_declared_size, check_media_type, read_json_body
from gateway.http.routes import Body, Handler, RouteTable
from gateway.middleware.base import Middleware
from gateway.request_context import context_of


class RoutingMiddleware(Middleware):
    def __init__(self, table: RouteTable, config: RoutesConfig) -> None:
        self.table = table
        self.config = config

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
            # Every value, before anything trusts it: authentication, the
            # limiter's keys, the policy's owner look-up, the path sent upstream.
            for name, value in request.match_info.items():
                grammar = route.grammar[name]
                if not grammar.holds(value):
                    message, details = grammar.fault_text()
                    raise GatewayFault(400, message, details=details)
                ctx.params[name] = value.lower() if grammar.lower else value
            check_media_type(route, request)
            if route.body is Body.BINARY:
                check_declared_size(request, self.config.max_image_bytes)
            elif route.accepts_body and request.body_exists:
                ctx.body = await read_json_body(route, request, self.config.max_json_body_bytes)
        return await handler(request)
