"""7. Rate limit: count the caller against every matching limit.

It sits before authorization so that an over-limit caller costs no upstream
ownership look-up.
"""

from __future__ import annotations

import math

from aiohttp import web

from gateway.context import context_of
from gateway.faults import GatewayFault
from gateway.middleware.base import Middleware
from gateway.ratelimit.limiter import Decision, RateLimiter
from gateway.routes import Handler


def ratelimit_headers(decision: Decision) -> dict[str, str]:
    """``RateLimit`` and ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers).

    The policy header lists every limit; ``RateLimit`` reports the one
    closest to running out, which is the one a client should pace itself by.
    """
    pairs = list(zip(decision.rules, decision.verdict.results, strict=True))
    policy = ", ".join(f'"{r.name}";q={r.value};w={r.period_seconds}' for r, _ in pairs)
    rule, result = min(pairs, key=lambda p: (p[1].remaining, -p[1].reset_after))
    reset = math.ceil(result.reset_after)
    current = f'"{rule.name}";r={result.remaining};t={reset}'
    return {"RateLimit-Policy": policy, "RateLimit": current}


class RateLimitMiddleware(Middleware):
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.over_limit_status = limiter.config.over_limit_status
        self.send_headers = limiter.config.headers

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        if ctx.route is None or ctx.identity is None:
            return await handler(request)
        decision = await self.limiter.decide(
            request.method, request.path, ctx.identity, request.remote or "", ctx.request_id
        )
        ctx.rate_limit = decision
        if decision is None:
            return await handler(request)
        headers = ratelimit_headers(decision) if self.send_headers else {}
        if not decision.verdict.allowed:
            raise GatewayFault(
                self.over_limit_status,
                "This request was rate-limited.",
                details=f"Limit {headers.get('RateLimit-Policy') or decision.rules[0].name}.",
                headers=headers,
                retry_after=decision.verdict.retry_after,
            )
        if headers:

            def set_headers(response: web.StreamResponse) -> None:
                response.headers.update(headers)

            ctx.before_send.append(set_headers)
        return await handler(request)
