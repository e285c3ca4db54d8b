"""Rate limit: count the caller against every matching limit.

It sits before authorization so that an over-limit caller costs no upstream
ownership look-up. On a route that byte rules count it also opens the
request's byte account (gateway/ratelimit/byte_budget.py): an upload
reserves its declared length here (or, chunked, its first slice), so that
an upload over budget is refused before a byte of it is read; the proxy
reserves the rest as bytes move, and what did not move is refunded when
the request is done, however it ended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aiohttp import web

from gateway.http.client_ip import BadForwardedFor, client_ip
from gateway.http.faults import GatewayFault
from gateway.http.routes import IMAGE_UPLOAD_ROUTES, Handler
from gateway.middleware.base import Middleware
from gateway.ratelimit.byte_budget import BudgetRefused, ByteBudget
from gateway.ratelimit.limiter import (
    LIMITER_UNAVAILABLE,
    ByteRules,
    EnforcedLimit,
    LimitDecision,
    LimiterUnavailable,
    RateLimiter,
)
from gateway.request_context import RequestContext, context_of


def ratelimit_headers(
    limits: Sequence[EnforcedLimit], byte_limits: Sequence[EnforcedLimit] = ()
) -> dict[str, str]:
    """``RateLimit`` and ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers).

    The policy header lists every limit, a byte rule's with its quota unit
    (``qu="content-bytes"``); ``RateLimit`` reports, of the request rules and
    of the byte rules, the one closest to running out, which is the one a
    client should pace itself by.
    """
    if not byte_limits:
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
        # The request rules alone: every request of a route no byte rule meets.
        policy = ", ".join(f'"{s.rule.name}";q={s.limit};w={s.rule.period_seconds}' for s in limits)
        return {"RateLimit-Policy": policy, "RateLimit": _tightest(limits)}
    policy = ", ".join(
        [f'"{s.rule.name}";q={s.limit};w={s.rule.period_seconds}' for s in limits]
        + [
            f'"{s.rule.name}";q={s.limit};qu="content-bytes";w={s.rule.period_seconds}'
            for s in byte_limits
        ]
    )
    current = ", ".join([_tightest(kind) for kind in (limits, byte_limits) if kind])
    return {"RateLimit-Policy": policy, "RateLimit": current}


def _tightest(limits: Sequence[EnforcedLimit]) -> str:
    tightest = min(limits, key=lambda s: (s.result.remaining, -s.result.reset_after))
    reset = math.ceil(tightest.result.reset_after)
    return f'"{tightest.rule.name}";r={tightest.result.remaining};t={reset}'


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


def over_budget_fault(refused: BudgetRefused, status: int) -> GatewayFault:
    """A reservation the byte budgets cannot hold: the caller's 413 (429 by
    option), or 503 when the budget is everyone's (a global rule)."""
    decision = refused.decision
    tightest = min(decision.limits, key=lambda s: s.result.remaining)
    names = ", ".join(rule.name for rule in decision.refused)
    details = (
        f"Over byte limit {names}: {refused.amount} bytes asked, "
        f"{tightest.result.remaining} of {tightest.limit} left per {tightest.rule.unit}."
    )
    retry_after: float | None = decision.verdict.retry_after
    if retry_after == math.inf:
        # No wait makes room: more than the whole budget. Retry-After would lie.
        details += " That is more than the whole budget: it will never fit."
        retry_after = None
    if decision.refused_globally:
        return GatewayFault(
            503,
            "The service is temporarily unavailable.",
            details=f"A global byte limit is reached. {details}",
            retry_after=retry_after,
        )
    return GatewayFault(
        status, "This request was rate-limited.", details=details, retry_after=retry_after
    )


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
        self.byte_rules = limiter.byte_rules
        self.byte_slice = limiter.config.byte_slice

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = context_of(request)
        if ctx.route is None or ctx.identity is None or not ctx.route.rate_limited:
            return await handler(request)
        ctx.step = "rate limit"
        ip = request_client_ip(self.limiter, request)
        try:
            decision = await self.limiter.decide(
                request.method, request.path, ctx.identity, ip, ctx.request_id, ctx.route.name
            )
        except LimiterUnavailable:
            raise unavailable_fault() from None
        ctx.rate_limit = decision
        byte_rules = self.byte_rules.get(ctx.route.name)
        if byte_rules is not None:
            return await self._with_budget(request, handler, ctx, decision, byte_rules, ip)
        if decision is None:
            return await handler(request)
        headers = ratelimit_headers(decision.limits) if self.send_headers else {}
        self._refuse_if_over(decision, headers)
        if headers:
            ctx.response_headers.update(headers)
        return await handler(request)

    def _refuse_if_over(self, decision: LimitDecision, headers: dict[str, str]) -> None:
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

    async def _with_budget(
        self,
        request: web.Request,
        handler: Handler,
        ctx: RequestContext,
        decision: LimitDecision | None,
        byte_rules: ByteRules,
        ip: str,
    ) -> web.StreamResponse:
        """The request with its byte account open; what did not move is
        refunded at the end, whatever the end."""
        assert ctx.identity is not None
        assert ctx.route is not None
        limits = () if decision is None else decision.limits
        if decision is not None:
            self._refuse_if_over(decision, ratelimit_headers(limits) if self.send_headers else {})
        checks = self.limiter.byte_checks(byte_rules, ctx.identity, ip)
        budget = ByteBudget(self.limiter, byte_rules, checks, ctx.request_id, self.byte_slice)
        ctx.byte_budget = budget
        if self.send_headers:

            def set_headers(response: web.StreamResponse) -> None:
                # As the budgets stood at the last reservation before the answer.
                response.headers.update(ratelimit_headers(limits, budget.limits))

            ctx.before_send.append(set_headers)
        try:
            if ctx.route.name in IMAGE_UPLOAD_ROUTES and request.body_exists:
                # The declared length, or a chunked body's first slice, before
                # a byte of it is read.
                length = request.content_length
                if length is None:
                    await budget.reserve_slice()
                elif length:
                    await budget.reserve(length)
            return await handler(request)
        except BudgetRefused as refused:
            # Raised here, or by the proxy before it forwards a byte the
            # budgets cannot hold. A body may be left unread: the connection
            # closes after the answer.
            ctx.before_send.append(_close_after)
            raise over_budget_fault(refused, self.over_limit_status) from None
        except LimiterUnavailable:
            raise unavailable_fault() from None
        finally:
            budget.settle()


def _close_after(response: web.StreamResponse) -> None:
    response.force_close()
