"""Request id: every request gets ``req-<uuid4>``, echoed and sent upstream."""

from __future__ import annotations

from aiohttp import web

from gateway.http.request_ids import GLOBAL_REQUEST_ID, RESPONSE_HEADERS, RequestIds
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.request_context import CONTEXT, RequestContext, run_before_send


class RequestIdMiddleware(Middleware):
    def __init__(self) -> None:
        self.new_request_id = RequestIds()

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = self.new_request_id()
        ctx = RequestContext(
            request_id, response_headers=dict.fromkeys(RESPONSE_HEADERS, request_id)
        )
        inbound = request.headers.get("X-OpenStack-Request-Id")
        if inbound is not None and GLOBAL_REQUEST_ID.match(inbound):
            ctx.global_request_id = inbound
        ctx.upstream_headers["X-OpenStack-Request-Id"] = request_id
        request[CONTEXT] = ctx
        response = await handler(request)
        if not response.prepared:
            # Outermost step: every hook the chain registered is set by now.
            run_before_send(ctx, response)
        return response
