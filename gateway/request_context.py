"""Per-request state: what the chain's steps settle about a request, for the
steps after them, the handler at the end and the request's record.

aiohttp prepares (sends the headers of) a streamed response inside the proxy,
below every middleware, so a middleware that must add a response header
puts it in ``response_headers`` (or, when it depends on how the request
went, registers a callback) instead of editing the response after the fact.
Whoever sends headers first sets them: the proxy before it streams, the
request-id step for any other answer. Not aiohttp's on_response_prepare
signal: that costs every request an async signal dispatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict

from gateway.authn.identity import Identity
from gateway.authn.verifier import InspectedToken
from gateway.authz.policy import PolicyDecision
from gateway.http.faults import GatewayFault
from gateway.http.routes import Route
from gateway.ratelimit.byte_budget import ByteBudget
from gateway.ratelimit.limiter import LimitDecision

ResponseHook = Callable[[web.StreamResponse], None]


@dataclass(slots=True)
class RequestContext:
    request_id: str
    # An inbound X-OpenStack-Request-Id, kept for correlation, never trusted
    # as our own id.
    global_request_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    route: Route | None = None
    params: dict[str, str] = field(default_factory=dict)
    identity: Identity | None = None
    # The verified token the identity came from, and the policy's decision:
    # what ``explain`` reports of the authentication and authorization steps.
    token: InspectedToken | None = None
    policy: PolicyDecision | None = None
    # The last step of the chain the request entered: a fault raised on the
    # way in came from there.
    step: str = ""
    # The client's headers minus hop-by-hop, credentials and identity
    # headers: the only client headers the proxy may forward.
    forward_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    # Headers the chain adds to the upstream request (request id, Via).
    upstream_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    # A JSON body the routing step read and checked; image data is never
    # read here but streamed by the proxy.
    body: bytes | None = None
    upstream_status: int | None = None
    # What the observability middleware reports once the request is done:
    # the limiter's verdict, the fault the chain answered with, and how long
    # the backend took to answer (seconds, headers received).
    rate_limit: LimitDecision | None = None
    # The request's image bytes against its route's byte rules; None when
    # its route meets none.
    byte_budget: ByteBudget | None = None
    fault: GatewayFault | None = None
    upstream_seconds: float | None = None
    # Headers every answer to the client carries (request ids, rate limits).
    response_headers: dict[str, str] = field(default_factory=dict)
    # Headers that depend on how the request went (Via), set by a callback.
    before_send: list[ResponseHook] = field(default_factory=list)


CONTEXT = web.RequestKey("image_gateway_context", RequestContext)


def context_of(request: web.Request) -> RequestContext:
    return request[CONTEXT]


def append_header_value(headers: CIMultiDict[str], name: str, value: str) -> None:
    """Append to a list-valued header (RFC 9110 §5.3) as one comma-joined line."""
    existing = headers.getall(name, [])
    headers[name] = ", ".join([*existing, value])


def run_before_send(ctx: RequestContext, response: web.StreamResponse) -> None:
    """Set the chain's response headers and apply every registered hook, once,
    before the response's headers go."""
    headers, ctx.response_headers = ctx.response_headers, {}
    if headers:
        response.headers.update(headers)
    hooks, ctx.before_send = ctx.before_send, []
    for hook in hooks:
        hook(response)
