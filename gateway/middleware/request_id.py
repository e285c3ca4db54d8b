"""1. Request id: every request gets ``req-<uuid4>``, echoed and sent upstream."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.middleware.context import CONTEXT, RequestContext

GLOBAL_REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
RESPONSE_HEADERS = ("X-Compute-Request-Id", "X-OpenStack-Request-Id")


class RequestIdMiddleware(Middleware):
    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = RequestContext(request_id=f"req-{uuid.uuid4()}")
        inbound = request.headers.get("X-OpenStack-Request-Id")
        if inbound is not None and GLOBAL_REQUEST_ID.match(inbound):
            ctx.global_request_id = inbound
        ctx.upstream_headers["X-OpenStack-Request-Id"] = ctx.request_id

        def set_ids(response: web.StreamResponse) -> None:
            for name in RESPONSE_HEADERS:
                response.headers[name] = ctx.request_id

        ctx.before_send.append(set_ids)
        request[CONTEXT] = ctx
        return await handler(request)
