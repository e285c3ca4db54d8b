"""Rate limit: count the caller against every matching limit.

It sits before authorization so that an over-limit caller costs no upstream
ownership look-up.
"""

from __future__ import annotations

import math

from aiohttp import web

from gateway.http.client_ip import BadForwardedFor, client_ip
from gateway.http.faults import GatewayFault
from gateway.http.routes import Handler
from gateway.middleware.base import Middleware
from gateway.ratelimit.limiter import (
    LIMITER_UNAVAILABLE,
    EnforcedLimit,
    LimiterUnavailable,
    RateLimiter,
)
from gateway.request_context import context_of


def ratelimit_headers(limits: tuple[EnforcedLimit, ...]) -> dict[str, str]:
    """``RateLimit`` and ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers).

    The policy header lists every limit; ``RateLimit`` reports the one
    closest to running out, which is the one a client should pace itself by.
    """
    if not limits:
        return {}
    if len(limits) == 1:
        # One rule matched (the shipped rules are one per route): no join, no search.
        ((rule, limit, result),) = limits
        name = rule.name
        return {
            "RateLimit-Policy": f'"{name}";q={limit};w={rule.period_seconds}',
            "RateLimit": f'"{name}";r={result.remaining};t={math.ceil(result.reset_after)}',
        }
    policy = ", ".join(f'"{s.rule.name}";q={s.limit};w={s.rule.period_seconds}' for s in limits)
    tightest = min(limits, key=lambda s: (s.result.remaining, -s.result.reset_after))
    reset = math.ceil(tightest.result.reset_after)
    current = f'"{tightest.rule.name}";r={tightest.result.remaining};t={reset}'
    return {"RateLimit-Policy": policy, "RateLimit": current}


def request_client_ip(limiter: RateLimiter, request: web.Request) -> str:
    if not limiter.config.trusted_proxies:
        # No proxy is believed (the shipped set-up): the peer is the client,
        # and no X-Forwarded-For is read, so none can be malformed.
        return request.remote or ""
    try:
        return client_ip(
            request.remote or "",
            request.headers.getall("X-Forwarded-For", []),
            limiter.config.trusted_proxies,
        )
    except BadForwardedFor:
        # The hop is not repeated: whatever a client sent is never echoed.
        raise GatewayFault(
            400, "Malformed X-Forwarded-For header.", details="A hop is not an IP address."
        ) from None


def unavailable_fault() -> GatewayFault:
    """Failing closed: the limiter cannot decide, so nothing goes through."""
    return GatewayFault(
        503,
        "The service is temporarily unavailable.",
        details="Rate limiting cannot be checked right now.",
        cause=LIMITER_UNAVAILABLE,
    )


class RateLimitMiddleware(Middleware):
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.over_limit_status = limiter.config.over_limit_status
        self.send_headers = limiter.config.headers

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        if ctx.route is None or ctx.identity is None or not ctx.route.rate_limited:
            return await handler(request)
        ctx.step = "rate limit"
        try:
            decision = await self.limiter.decide(
                request.method,
                request.path,
                ctx.identity,
                request_client_ip(self.limiter, request),
                ctx.request_id,
                ctx.route.name,
            )
        except LimiterUnavailable:
            raise unavailable_fault() from None
        ctx.rate_limit = decision
        if decision is None:
            return await handler(request)
        headers = ratelimit_headers(decision.limits) if self.send_headers else {}
        if decision.refused_globally:
            # Every caller together is over: the service is busy, not this
            # caller misbehaving (Repose answers global limits with 503).
            raise GatewayFault(
                503,
                "The service is temporarily unavailable.",
                details="A global rate limit is reached.",
                headers=headers,
                retry_after=decision.retry_after,
            )
        if not decision.allowed:
            names = ", ".join(rule.name for rule in decision.refused)
            raise GatewayFault(
                self.over_limit_status,
                "This request was rate-limited.",
                details=f"Over limit {names}.",
                headers=headers,
                retry_after=decision.retry_after,
            )
        if headers:
            ctx.response_headers.update(headers)
        return await handler(request)
